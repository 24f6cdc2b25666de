"""The toolchain's own native programs (the oracle's supports_op probe, the Metal dry run):
configured with CMake + Ninja against a llama.cpp tree and built into the cache.

Every such compile holds the cache's native-build lock (``<cache>/.native-build.lock``), so two
toolchain runs sharing a cache never compile at once (the per-content lock of each program keeps
them from building the same thing twice); a machine-wide lock of the caller's (``extra_lock``,
e.g. a CI host's llama.cpp build lock) can be held as well.

Each program is built once per content (``content_key``: our sources, what it generates from the
tree, the tree's ggml and the tree files it compiles) into ``<cache>/<stage>/<prefix>-<key>/``
(``build_once``); a compile failure is remembered there. What both programs' CMake projects share
(ggml from the tree, test-backend-ops, the profiles file reader) is ``native/`` next to this file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..core.locking import exclusive
from ..core.proc import stream
from ..log import LOG
from .cmake import find_cmake, find_compilers, find_ninja
from .compiler_cache import detect

LOCK_NAME = ".native-build.lock"
LOCK_WAIT = 7200.0  # seconds: a cold dry-run build on 2 busy cores takes minutes, never hours
SHARED = Path(__file__).parents[1] / "native"  # the CMake include and header both programs use


@dataclass(frozen=True)
class NativeProgram:
    """One of the toolchain's native programs: its stage (whose ``native/`` is its CMake project
    and whose folder in the cache holds its builds), its target, and how errors and lock waits
    name it."""

    stage: str  # oracle, dryrun
    target: str  # the executable
    prefix: str  # of its build folders, locks and log: probe, dryrun
    name: str  # in errors: "the probe"
    build_name: str  # while waiting for its lock: "the oracle probe build"

    @property
    def source(self) -> Path:
        return Path(__file__).parents[1] / self.stage / "native"


PROBE = NativeProgram("oracle", "toolchain-metal-oracle", "probe", "the probe", "the oracle probe build")
DRYRUN = NativeProgram("dryrun", "toolchain-metal-dryrun", "dryrun", "the dry run", "the dry-run build")


class NativeBuildFailed(Exception):
    """The program does not configure or compile against this tree content (now or remembered)."""

    def __init__(self, reason: str, log: Path) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log = log


def native_build_lock(cache_dir: Path) -> AbstractContextManager[None]:
    """The cache's native-build lock, held while it is entered."""
    return exclusive(
        cache_dir / LOCK_NAME, wait=LOCK_WAIT, what=f"native builds of the toolchain in {cache_dir}"
    )


def error_lines(tail: Sequence[str]) -> str:
    lines = [line.strip() for line in tail if "error" in line.lower() and "warning" not in line.lower()]
    return " | ".join(lines[:6]) or " | ".join(tail[-6:])


def cmake_build(
    source: Path,
    root: Path,
    target: str,
    defines: Mapping[str, str],
    cache_dir: Path,
    compiler_cache_dir: Path | None,
    *,
    name: str,
    log: Path,
    extra_lock: Path | None = None,
) -> str | None:
    """Configure ``source`` into ``root/build`` and build ``target``, the output going to ``log``.

    None when it built, else why not, e.g. "the probe does not compile against this tree: <errors>"
    (``name``: "the probe")."""
    cmake = find_cmake("3.14")
    ninja = find_ninja()
    env = {**os.environ}
    find_compilers(env)
    build_dir = root / "build"
    all_defines = {**defines, "CMAKE_BUILD_TYPE": "Release", "CMAKE_MAKE_PROGRAM": str(ninja.path)}
    if compiler_cache_dir is not None:
        cc = detect(compiler_cache_dir, root)
        env.update(cc.env)
        all_defines.update(cc.launcher_defines)
    configure = [str(cmake.path), "-S", str(source), "-B", str(build_dir), "-G", "Ninja"]
    configure += [f"-D{k}={v}" for k, v in all_defines.items()]
    with ExitStack() as locks:
        locks.enter_context(native_build_lock(cache_dir))
        if extra_lock is not None:
            locks.enter_context(exclusive(extra_lock, wait=LOCK_WAIT, what=f"the build lock {extra_lock}"))
        LOG.info(f"building {name} for {source} against {defines.get('LLAMA_TREE', '')} (once per content)")
        done = stream(configure, log_path=log, env=env)
        if done.returncode != 0:
            return f"{name}'s CMake configure failed against this tree: {error_lines(done.tail)}"
        done = stream([str(cmake.path), "--build", str(build_dir), "--target", target], log_path=log, env=env)
        if done.returncode != 0:
            return f"{name} does not compile against this tree: {error_lines(done.tail)}"
    return None


def hash_files(digest: hashlib._Hash, paths: Iterable[Path], root: Path) -> None:
    for path in sorted(paths):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())


def content_key(program: NativeProgram, seed: bytes, tree: Path, tree_files: Iterable[Path]) -> str:
    """What goes into ``program`` for ``tree``: ``seed`` (what it generates, e.g. the cut), our
    sources, the tree's ggml and ``tree_files``. Same content, same program; any change, a rebuild."""
    digest = hashlib.sha256(seed)
    hash_files(digest, program.source.iterdir(), program.source)
    hash_files(digest, SHARED.iterdir(), SHARED)
    ggml = tree / "ggml"
    hash_files(digest, [*ggml.glob("*.txt"), *ggml.glob("include/*"), *ggml.glob("src/*.*")], tree)
    hash_files(digest, tree_files, tree)
    return digest.hexdigest()[:16]


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def build_once(
    program: NativeProgram,
    key: str,
    tree: Path,
    cache_dir: Path,
    *,
    generated: Mapping[str, str],
    defines: Mapping[str, str] | None = None,
    compiler_cache_dir: Path | None = None,
    extra_lock: Path | None = None,
) -> tuple[Path, bool]:
    """(executable, built now) of ``program`` for ``tree`` with content ``key``, built now when no
    build of the same content is cached: ``generated`` (file name -> text) is written to the
    ``TOOLCHAIN_GENERATED`` folder, the project configured with it, ``LLAMA_TREE`` and ``defines``.

    Raises :class:`NativeBuildFailed` (also for a failure remembered from an earlier run: a compile
    failure is a property of this content, so it is not retried each run)."""
    root = cache_dir / program.stage / f"{program.prefix}-{key}"
    exe = root / "build" / program.target
    log = root / f"{program.prefix}-build.log"
    lock = root.parent / f".{program.prefix}-{key}.lock"
    with exclusive(lock, wait=3600, what=f"{program.build_name} {root}"):
        if exe.is_file() and (root / "ok").is_file():
            return exe, False
        failed = root / "failed"
        if failed.is_file():
            raise NativeBuildFailed(failed.read_text(encoding="utf-8"), log)
        folder = root / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in generated.items():
            _write_if_changed(folder / name, text)
        all_defines = {"LLAMA_TREE": str(tree), "TOOLCHAIN_GENERATED": str(folder), **(defines or {})}
        problem = cmake_build(
            program.source,
            root,
            program.target,
            all_defines,
            cache_dir,
            compiler_cache_dir,
            name=program.name,
            log=log,
            extra_lock=extra_lock,
        )
        if problem:
            failed.write_text(f"{problem} (log: {log})", encoding="utf-8")
            raise NativeBuildFailed(f"{problem} (log: {log})", log)
        (root / "ok").write_text(key, encoding="utf-8")
    return exe, True
