"""Compiler cache (ccache or sccache), used automatically when one is on PATH.

The cache lives in the toolchain cache (``<cache>/ccache``) so its statistics are ours and hits
carry across build dirs: ``CCACHE_BASEDIR`` = the work dir makes paths relative, and every build
dir sits at the same depth below it. ggml's own ``GGML_CCACHE`` (which silently picks up whatever
is on PATH) is turned off; we set the launcher explicitly, so timings mean something.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.proc import capture

# name -> (zero-stats command, stats command); data, so adding another cache is one entry.
_CACHES = {
    "ccache": (["--zero-stats"], ["--print-stats"]),
    "sccache": (["--zero-stats"], ["--show-stats", "--stats-format=json"]),
}


@dataclass(frozen=True)
class CompilerCache:
    tool: str  # "ccache", "sccache" or "none"
    path: str
    env: dict[str, str]

    @property
    def launcher_defines(self) -> dict[str, str]:
        if self.tool == "none":
            return {}
        return {"CMAKE_C_COMPILER_LAUNCHER": self.path, "CMAKE_CXX_COMPILER_LAUNCHER": self.path}


@dataclass(frozen=True)
class CacheStats:
    tool: str
    hits: int | None = None
    misses: int | None = None


def detect(cache_dir: Path, base_dir: Path, *, enabled: bool = True) -> CompilerCache:
    if enabled:
        for tool in _CACHES:
            path = shutil.which(tool)
            if path:
                env = {}
                if tool == "ccache":
                    env = {
                        "CCACHE_DIR": str(cache_dir),
                        "CCACHE_BASEDIR": str(base_dir),
                        "CCACHE_NOHASHDIR": "1",
                        "CCACHE_COMPILERCHECK": "content",
                    }
                else:
                    env = {"SCCACHE_DIR": str(cache_dir)}
                return CompilerCache(tool, path, env)
    return CompilerCache("none", "", {})


def _run(cache: CompilerCache, args: list[str]) -> str:
    try:
        done = capture([cache.path, *args], env={**os.environ, **cache.env}, timeout=60)
    except OSError:
        return ""
    return done.stdout if done.ok else ""


def zero_stats(cache: CompilerCache) -> None:
    if cache.tool != "none":
        _run(cache, _CACHES[cache.tool][0])


def read_stats(cache: CompilerCache) -> CacheStats:
    if cache.tool == "none":
        return CacheStats("none")
    out = _run(cache, _CACHES[cache.tool][1])
    if cache.tool == "ccache":
        values: dict[str, int] = {}
        for line in out.splitlines():
            key, _, value = line.partition("\t")
            if value.strip().isdigit():
                values[key.strip()] = int(value)
        hits = values.get("direct_cache_hit", 0) + values.get("preprocessed_cache_hit", 0)
        return CacheStats("ccache", hits, values.get("cache_miss", 0)) if values else CacheStats("ccache")
    try:
        stats = json.loads(out)["stats"]
        hits = sum(stats.get("cache_hits", {}).get("counts", {}).values())
        misses = sum(stats.get("cache_misses", {}).get("counts", {}).values())
        return CacheStats("sccache", hits, misses)
    except (ValueError, KeyError, TypeError):
        return CacheStats("sccache")
