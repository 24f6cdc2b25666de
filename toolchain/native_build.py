"""The toolchain's own native programs (the oracle's supports_op probe, the Metal dry run):
configured with CMake + Ninja against a llama.cpp tree and built into the cache.

Every such compile holds the cache's native-build lock (``<cache>/.native-build.lock``), so two
toolchain runs sharing a cache never compile at once (the per-content lock of each program keeps
them from building the same thing twice); a machine-wide lock of the caller's (``extra_lock``,
e.g. a CI host's llama.cpp build lock) can be held as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

from .locking import exclusive
from .log import LOG

LOCK_NAME = ".native-build.lock"
LOCK_WAIT = 7200.0  # seconds: a cold dry-run build on 2 busy cores takes minutes, never hours


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
    from .builder.cmake import find_cmake, find_compilers, find_ninja
    from .builder.compiler_cache import detect
    from .proc import stream

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
