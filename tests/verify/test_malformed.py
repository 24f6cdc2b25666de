"""Issue #32 class B: a malformed Mach-O / ELF is "not a readable binary" (exit 32), never "built
without Metal" and never a pass; also through ``doctor --build`` and ``dryrun shipped``. Each
reproduction is a real fixture binary (fixtures/macho, cross-built) or this machine's own python
ELF, with one header field made to point outside the file."""

from __future__ import annotations

import os
import shutil
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from toolchain.core.binlayout import walk_macho
from toolchain.errors import UnreadableBinaryError
from toolchain.profiles import PROFILES
from toolchain.verify import require_ok, verify_path
from toolchain.verify.binaries import binary_problem

METAL = PROFILES["metal"]


def _load_commands(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, cmd, cmdsize) of each load command of a thin 64-bit little-endian Mach-O."""
    ncmds = struct.unpack_from("<I", data, 16)[0]
    out, pos = [], 32
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, pos)
        out.append((pos, cmd, size))
        pos += size
    return out


def _truncate(data: bytearray) -> bytearray:
    return data[:1000]


def _ncmds_max(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, 16, 2**32 - 1)
    return data


def _symtab_past_eof(data: bytearray) -> bytearray:
    pos = next(p for p, cmd, _ in _load_commands(bytes(data)) if cmd == 0x2)
    struct.pack_into("<I", data, pos + 8, len(data) + 4096)  # symoff
    return data


def _section_at(data: bytearray, segment: str, section: str) -> int:
    """The offset of a section header (64-bit) in the load commands."""
    for pos, cmd, _size in _load_commands(bytes(data)):
        if cmd != 0x19:
            continue
        nsects = struct.unpack_from("<I", data, pos + 64)[0]
        for k in range(nsects):
            at = pos + 72 + k * 80
            if (
                data[at : at + 16].rstrip(b"\0") == section.encode()
                and data[at + 16 : at + 32].rstrip(b"\0") == segment.encode()
            ):
                return at
    raise AssertionError(f"no {segment},{section}")


def _text_past_eof(data: bytearray) -> bytearray:
    at = _section_at(data, "__TEXT", "__text")
    struct.pack_into("<I", data, at + 48, len(data) + 16)  # offset
    return data


def _metallib_2_63(data: bytearray) -> bytearray:
    at = _section_at(data, "__DATA", "__ggml_metallib")
    struct.pack_into("<Q", data, at + 40, 2**63)  # size
    return data


CASES: dict[str, tuple[str, Callable[[bytearray], bytearray], str]] = {
    # name: (fixture file, mutation, words the problem must name)
    "truncated-1000": ("lib", _truncate, "truncated"),
    "ncmds-2^32-1": ("lib", _ncmds_max, "ncmds 4294967295"),
    "symtab-past-eof": ("lib", _symtab_past_eof, "symbol table"),
    "section-past-eof": ("lib", _text_past_eof, "section __TEXT,__text"),
    "ggml-metallib-2^63": ("lib", _metallib_2_63, "section __DATA,__ggml_metallib"),
}


@pytest.fixture(scope="module")
def metal_lib(macho_fixtures: dict[str, Path]) -> Path:
    lib = macho_fixtures["shared"] / "bin" / "libggml-metal.dylib"
    assert walk_macho(lib.read_bytes()).find("__DATA", "__ggml_metallib") is not None
    return lib


def _damaged(src: Path, dest: Path, mutate: Callable[[bytearray], bytearray]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / src.name
    out.write_bytes(bytes(mutate(bytearray(src.read_bytes()))))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_macho_is_not_a_readable_binary(metal_lib: Path, tmp_path: Path, name: str) -> None:
    _which, mutate, words = CASES[name]
    bad = _damaged(metal_lib, tmp_path / name, mutate)
    assert words in binary_problem(bad)
    v = verify_path(bad, METAL, runtime=False)
    assert {c.name for c in v.failures} == {"readable"}, [(c.name, c.found) for c in v.failures]
    assert not any(c.status == "pass" for c in v.checks)
    with pytest.raises(UnreadableBinaryError) as info:
        require_ok(v)
    assert info.value.exit_code == 32
    assert "not a readable binary" in str(info.value) and "GGML_METAL=ON" not in str(info.value)


def test_malformed_in_a_build_dir_is_named(macho_fixtures: dict[str, Path], tmp_path: Path) -> None:
    build = tmp_path / "build"
    shutil.copytree(macho_fixtures["shared"], build, symlinks=True)
    lib = build / "bin" / "libggml-metal.dylib"
    lib.write_bytes(bytes(_metallib_2_63(bytearray(lib.read_bytes()))))
    v = verify_path(build, METAL, runtime=False)
    assert "readable" in {c.name for c in v.failures}
    with pytest.raises(UnreadableBinaryError):
        require_ok(v)


def _elf_needed_past_strtab(data: bytearray) -> bytearray:
    """Point the first DT_NEEDED of a 64-bit little-endian ELF past its .dynstr."""
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    for k in range(shnum):
        at = shoff + k * shentsize
        stype = struct.unpack_from("<I", data, at + 4)[0]
        if stype != 6:
            continue
        off, size, link = struct.unpack_from("<QQI", data, at + 24)
        strsize = struct.unpack_from("<Q", data, shoff + link * shentsize + 32)[0]
        for e in range(size // 16):
            tag = struct.unpack_from("<q", data, off + e * 16)[0]
            if tag == 1:
                struct.pack_into("<Q", data, off + e * 16 + 8, strsize + 1000)
                return data
    raise AssertionError("no DT_NEEDED")


def test_elf_needed_past_the_string_table(tmp_path: Path) -> None:
    real = Path(os.path.realpath(sys.executable))
    assert real.read_bytes()[:4] == b"\x7fELF"
    bad = _damaged(real, tmp_path / "elf", _elf_needed_past_strtab)
    assert "DT_NEEDED string at offset" in binary_problem(bad)
    v = verify_path(bad, PROFILES["cpu"], runtime=False)
    assert {c.name for c in v.failures} == {"readable"}
    with pytest.raises(UnreadableBinaryError):
        require_ok(v)


def test_doctor_build_and_dryrun_shipped_refuse_it(
    metal_lib: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolchain.cli import main

    bad = _damaged(metal_lib, tmp_path / "cut", _truncate)
    for argv in (
        ["doctor", "--build", str(bad), "--work-dir", str(tmp_path / "w1")],
        ["dryrun", "shipped", str(bad), "--work-dir", str(tmp_path / "w2")],
    ):
        assert main(argv) == 32, argv
        err = capsys.readouterr().err
        assert "not a readable binary" in err and "GGML_METAL=ON" not in err


def test_a_binary_larger_than_any_build_is_not_read(metal_lib: Path, tmp_path: Path) -> None:
    """A 3 GiB Mach-O (the fixture, padded sparse) was read whole and handed to LIEF: 6.4 GB
    resident and 44 s for one file. Now it is "not a readable binary" at once, checked in a child
    whose address space is capped at 2 GiB (the old read could not even allocate it)."""
    import resource
    import subprocess

    lib = tmp_path / "big" / "lib" / metal_lib.name
    lib.parent.mkdir(parents=True)
    shutil.copyfile(metal_lib, lib)
    with lib.open("r+b") as fh:
        fh.truncate(3 << 30)
    assert "3.0 GiB, larger than any llama.cpp build" in binary_problem(lib)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolchain",
            "verify",
            str(tmp_path / "big"),
            "--no-runtime",
            "--profile",
            "metal",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=cap,  # no threads here: the limit holds from exec on
    )
    assert done.returncode == UnreadableBinaryError.exit_code, done.stderr[-2000:]
    assert "larger than any llama.cpp build" in done.stderr and "Traceback" not in done.stderr
