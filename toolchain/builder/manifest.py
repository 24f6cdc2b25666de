"""The build stage's record, written as ``reports/build-manifest.json`` (and into the build dir).

It says what was built from what: source and full commit, profile, every CMake option, tool and
compiler versions (from CMake's File API), host and SDK, artifacts with sha256, compiler-cache
hit rate and the time each step took.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..core.proc import capture
from ..profiles import HOST_PROBES, current_platform
from ..records import BUILD_MANIFEST, read_record_if_any
from ..source import ResolvedSource
from .cmake import Compiler, Tool
from .compiler_cache import CacheStats


@dataclass(frozen=True)
class Artifact:
    target: str
    type: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class HostInfo:
    platform: str
    release: str
    machine: str
    python: str
    details: dict[str, str] = field(default_factory=dict)  # macOS version, SDK, Xcode …


@dataclass(frozen=True)
class Tools:
    """What built the tree."""

    cmake: Tool
    ninja: Tool
    generator: str  # CMake's generator, "Ninja"
    compilers: tuple[Compiler, ...]  # one per language the tree enabled


@dataclass(frozen=True)
class BuildManifest:
    status: str  # "built" or "up-to-date"
    source: ResolvedSource
    source_dir: Path
    local_changes: tuple[str, ...]
    profile: str
    build_dir: Path
    cmake_defines: dict[str, str]
    extra_cmake_args: tuple[str, ...]
    # Options we would pass but this tree does not declare (name -> value we would have used).
    skipped_options: dict[str, str]
    missing_targets: dict[str, str]  # purpose -> why
    tools: Tools
    host: HostInfo
    # compilers (resolved path + --version) and, on macOS, SDK and Xcode: part of the build dir key
    toolchain_identity: dict[str, str]
    # what differs from the previous build-manifest.json of this work dir (pin, compiler, SDK …)
    changed_since_last: tuple[str, ...]
    artifacts: tuple[Artifact, ...]
    compiler_cache: CacheStats
    durations: dict[str, float]


def host_info() -> HostInfo:
    plat = current_platform()
    details: dict[str, str] = {}
    for key, command in HOST_PROBES.get(plat.name, {}).items():
        try:
            done = capture(list(command), timeout=20)
        except OSError:
            continue
        if not done.ok:
            continue
        out = done.stdout
        details[key] = " ".join(out.split())
    return HostInfo(plat.name, plat.release, plat.machine, platform.python_version(), details)


def last_build_dir(reports_dir: Path) -> Path | None:
    """The build dir of the work dir's last successful build (``reports/build-manifest.json``),
    None before the first one; a manifest that cannot be read is a ReportError naming it."""
    manifest = read_record_if_any(reports_dir / BUILD_MANIFEST.name, BUILD_MANIFEST, BuildManifest)
    return manifest.build_dir if manifest else None
