"""What the user gave ``verify``: a build dir, an install prefix, an app's Frameworks folder or one
binary, turned into the list of binaries to inspect (and the build dir's CMakeCache.txt)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VerifyError
from .binaries import sniff

CMAKE_CACHE = "CMakeCache.txt"
MAX_CMAKE_CACHE_BYTES = 16 << 20
# Folders llama.cpp builds and installs put programs and libraries in.
BINARY_DIRS = ("bin", "lib")


@dataclass(frozen=True)
class Inputs:
    """What was found at the path the user gave."""

    path: Path
    files: tuple[Path, ...]  # binaries to inspect (resolved)
    cache: Mapping[str, str] = field(default_factory=dict)  # CMakeCache.txt, NAME -> value
    cache_file: Path | None = None


def read_cmake_cache(path: Path) -> dict[str, str]:
    """``NAME:TYPE=VALUE`` lines of a CMakeCache.txt as NAME -> VALUE."""
    out: dict[str, str] = {}
    # bounded (#32 E: a 3 GB file was read whole, MemoryError): a real one is ~100 KB
    with path.open("rb") as fh:
        text = fh.read(MAX_CMAKE_CACHE_BYTES).decode("utf-8", errors="replace")
    for line in text.splitlines():
        if not line or line.startswith(("#", "//")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.split(":", 1)[0]] = value.strip()
    return out


def _kind_of(path: Path) -> str:
    """ "a FIFO", "a socket", "a dangling symlink to X" … for what is neither a file nor a folder."""
    import stat

    if path.is_symlink() and not path.exists():
        return f"a dangling symlink to {os.readlink(path)}"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    for test, what in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a regular file or directory"


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise VerifyError(
            f"{folder}: cannot be listed: {exc.strerror or exc}", "give a folder this user can read"
        ) from exc


def _binaries_in(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in _entries(folder):
        if entry.suffix == ".framework" and entry.is_dir():
            inner = entry / entry.stem
            if inner.exists():
                found.append(inner.resolve())
        elif entry.is_file() and sniff(entry) in ("macho", "fat", "elf"):
            found.append(entry.resolve())
    return list(dict.fromkeys(found))


def discover(path: Path) -> Inputs:
    """A build dir (``bin/``, ``lib/``), an install prefix, a folder of binaries (an app's
    ``Frameworks``) or a single binary."""
    path = path.expanduser()
    if not path.exists():
        why = f"is {_kind_of(path)}" if path.is_symlink() else "does not exist"
        raise VerifyError(f"{path} {why}", "give a build dir, a binary or an app's Frameworks folder")
    if not path.is_file() and not path.is_dir():
        raise VerifyError(
            f"{path} is not a regular file or directory ({_kind_of(path)})",
            "give a build dir, a binary or an app's Frameworks folder",
        )
    cache_file: Path | None = None
    if path.is_file():
        files = [path.resolve()] if _is_binary(path) else []
        if not files:
            raise VerifyError(
                f"{path} is not a Mach-O or ELF binary", "give a program, a library or a build dir"
            )
        for parent in path.resolve().parents[:2]:
            if (parent / CMAKE_CACHE).is_file():
                cache_file = parent / CMAKE_CACHE
                break
    else:
        subdirs = [path / d for d in BINARY_DIRS if (path / d).is_dir()]
        files = [f for d in (subdirs or [path]) for f in _binaries_in(d)]
        if path.name == "Frameworks" and path.parent.name == "Contents" and (path.parent / "MacOS").is_dir():
            files = _binaries_in(path.parent / "MacOS") + files  # the app's programs load these
        if (path / CMAKE_CACHE).is_file():
            cache_file = path / CMAKE_CACHE
        if not files:
            where = ", ".join(str(d) for d in (subdirs or [path]))
            odd = [
                f"{d.name} is {_kind_of(d)}"
                for d in (path / name for name in BINARY_DIRS)
                if (d.is_symlink() or d.exists()) and not d.is_dir()
            ]
            odd += [
                f"{e.name} is {_kind_of(e)}"
                for d in (subdirs or [path])
                for e in _entries(d)
                if not e.is_file() and not e.is_dir()
            ]
            raise VerifyError(
                f"no Mach-O or ELF binaries in {where}" + (f" ({'; '.join(odd[:8])})" if odd else ""),
                "give the build dir (the one holding bin/), a binary, or an app bundle's Contents/Frameworks",
            )
    cache_data = read_cmake_cache(cache_file) if cache_file else {}
    return Inputs(path=path, files=tuple(files), cache=cache_data, cache_file=cache_file)


def _is_binary(path: Path) -> bool:
    return sniff(path) in ("macho", "fat", "elf", "ar")
