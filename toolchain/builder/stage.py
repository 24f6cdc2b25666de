"""Build stage: ``Checkout`` + ``BackendProfile`` -> configured, built tree -> ``BuildManifest``.

One build dir per (commit, profile, options): switching back to an earlier pin is incremental.
Configure runs only when the build dir has not been configured with exactly these options; Ninja
then decides what to rebuild, so a second run with nothing changed is a no-op that says so.
The manifest is removed when a build starts and written (atomically) only when it succeeded: a
killed or failed build never leaves a manifest that claims success.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..core.hashing import sha256_file
from ..core.jsonio import atomic_write_text
from ..core.proc import Completed, stream
from ..errors import (
    BuildError,
    ConfigureError,
    DiskFullError,
    MissingToolError,
    ReportError,
    UnknownOptionError,
)
from ..log import LOG
from ..profiles import COMMON_OPTIONAL_DEFINES, BackendProfile, current_platform
from ..records import BUILD_MANIFEST, read_data, write_report
from ..source import Checkout
from . import compiler_cache
from .capabilities import check_metal_compiler, needs_metal_compiler, read_capabilities
from .cmake import ConfigureReply, find_cmake, find_compilers, find_ninja, read_file_api, request_file_api
from .identity import changes_since, toolchain_identity
from .manifest import Artifact, BuildManifest, Tools, host_info
from .targets import choose_targets

STAMP = ".toolchain-configured.json"
_NINJA_STATUS = re.compile(r"^\[(\d+)/(\d+)\]")
_UNUSED_HEADER = "Manually-specified variables were not used by the project"


@dataclass(frozen=True)
class BuildRequest:
    profile: BackendProfile
    groups: tuple[str, ...] = ("build",)
    extra_targets: tuple[str, ...] = ()
    extra_cmake_args: tuple[str, ...] = ()
    jobs: int | None = None
    compiler_cache: bool = True
    allow_unknown_options: bool = False


def plan_defines(request: BuildRequest, source_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(defines to pass, optional defines this tree does not declare)."""
    caps = read_capabilities(source_dir)
    defines: dict[str, str] = {"CMAKE_BUILD_TYPE": "Release"}
    skipped: dict[str, str] = {}
    for name, value in {**COMMON_OPTIONAL_DEFINES, **request.profile.optional_defines}.items():
        if caps.offers(name):
            defines[name] = value
        else:
            skipped[name] = value
    defines.update(request.profile.defines_for(current_platform().name))
    return defines, skipped


def build_dir_for(
    settings: Settings,
    commit: str,
    request: BuildRequest,
    defines: dict[str, str],
    identity: dict[str, str],
) -> Path:
    """One build dir per (commit, profile, options, toolchain identity)."""
    key = json.dumps(
        {
            "commit": commit,
            "profile": request.profile.name,
            "defines": defines,
            "extra": request.extra_cmake_args,
            "toolchain": identity,
        },
        sort_keys=True,
    )
    return settings.build_root / f"{request.profile.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def user_defines(extra_args: tuple[str, ...]) -> list[str]:
    """Names of the ``-DNAME[:TYPE]=VALUE`` options the user passed through."""
    return [arg[2:].split("=", 1)[0].split(":", 1)[0] for arg in extra_args if arg.startswith("-D")]


def run_build(settings: Settings, checkout: Checkout, request: BuildRequest) -> BuildManifest:
    started = time.monotonic()
    durations: dict[str, float] = {}
    defines, skipped = plan_defines(request, checkout.path)
    # the last manifest is read (to say what changed), then removed before anything can fail
    report_path = settings.reports_dir / BUILD_MANIFEST.name
    try:
        previous = read_data(report_path, BUILD_MANIFEST) if report_path.is_file() else None
    except ReportError as exc:
        LOG.warn(f"{exc.message}: what changed since that build is not known")
        previous = None
    report_path.unlink(missing_ok=True)
    env = dict(os.environ)
    compilers = find_compilers(env)
    identity = toolchain_identity(compilers, env)
    build_dir = build_dir_for(settings, checkout.commit, request, defines, identity)
    if needs_metal_compiler(request.profile, defines, request.extra_cmake_args, checkout.path):
        # before configuring: a missing compiler otherwise shows only deep in the build log
        check_metal_compiler(
            env, build_dir / "toolchain-metal-check.log", request.profile.expectations.embed_option
        )
    changes = changes_since(previous, commit=checkout.commit, identity=identity)
    for change in changes:
        LOG.info(f"changed since the last build: {change}")
    (build_dir / BUILD_MANIFEST.name).unlink(missing_ok=True)

    caps = read_capabilities(checkout.path)
    cmake = find_cmake(caps.cmake_minimum)
    ninja = find_ninja()
    cache = compiler_cache.detect(
        settings.compiler_cache_dir, settings.work_dir, enabled=request.compiler_cache
    )
    env.update(cache.env)
    if cache.tool == "none":
        LOG.info("compiler cache: none (install ccache or sccache to make rebuilds fast)")
    else:
        LOG.info(f"compiler cache: {cache.tool} ({cache.path}, dir {settings.compiler_cache_dir})")
    all_defines = {**defines, **cache.launcher_defines, "CMAKE_MAKE_PROGRAM": str(ninja.path)}

    # What the configuration is made of. CMake and Ninja count by version, not by path: each nox
    # session has its own pip copy of both, and `nox -s build` then `nox -s coverage` must not
    # configure (and relink) the same build dir again each time. The paths that configured it are
    # kept beside: while they exist, the build dir's own rules can rerun them.
    stamp = {
        "commit": checkout.commit,
        "defines": {k: v for k, v in all_defines.items() if k != "CMAKE_MAKE_PROGRAM"},
        "extra": list(request.extra_cmake_args),
        "cmake": cmake.version,
        "ninja": ninja.version,
    }
    tool_paths = {"cmake": str(cmake.path), "ninja": str(ninja.path)}
    kept = _read_stamp(build_dir) or {}
    kept_paths = kept.pop("paths", {})
    configured = (
        kept == stamp
        and isinstance(kept_paths, dict)
        and bool(kept_paths)
        and all(Path(str(path)).is_file() for path in kept_paths.values())
        and (build_dir / "CMakeCache.txt").is_file()
    )
    if configured:
        LOG.info(f"build dir {build_dir.name}: already configured with these options")
        durations["configure"] = 0.0
    else:
        with LOG.step(f"configure ({request.profile.name}) in {build_dir}"):
            durations["configure"] = _configure(
                cmake.path, checkout.path, build_dir, all_defines, request, env
            )
    reply = read_file_api(build_dir)
    if not configured:
        check_user_options(request, reply, checkout.path, build_dir)
        atomic_write_text(
            build_dir / STAMP, json.dumps({**stamp, "paths": tool_paths}, indent=2, sort_keys=True)
        )

    choices = choose_targets(request.groups, reply.targets, request.extra_targets)
    missing = {
        c.purpose: f"none of {', '.join(c.candidates)} exists in this tree" for c in choices if c.name is None
    }
    absent_required = [c for c in choices if c.name is None and c.required]
    if absent_required:
        raise BuildError(
            "this tree has none of the needed targets: "
            + "; ".join(f"{c.purpose} ({', '.join(c.candidates)})" for c in absent_required),
            "the tree may be too old or too new for this toolchain; pin another commit (`llama-toolchain update`)",
        )
    names = sorted({c.name for c in choices if c.name})
    compiler_cache.zero_stats(cache)
    with LOG.step(f"build {', '.join(names)}"):
        result, did_work = _build(cmake.path, build_dir, names, request.jobs, env)
    durations["build"] = round(result.seconds, 3)
    stats = compiler_cache.read_stats(cache) if did_work else compiler_cache.CacheStats(cache.tool, 0, 0)

    artifacts = _artifacts(reply, names)
    manifest = BuildManifest(
        status="built" if (did_work or not configured) else "up-to-date",
        source=checkout.source,
        source_dir=checkout.path,
        local_changes=checkout.local_changes,
        profile=request.profile.name,
        build_dir=build_dir,
        cmake_defines=all_defines,
        extra_cmake_args=request.extra_cmake_args,
        skipped_options=skipped,
        missing_targets=missing,
        tools=Tools(cmake=cmake, ninja=ninja, generator=reply.generator, compilers=reply.compilers),
        host=host_info(),
        toolchain_identity=identity,
        changed_since_last=tuple(changes),
        artifacts=artifacts,
        compiler_cache=stats,
        durations={**durations, "total": round(time.monotonic() - started, 3)},
    )
    write_report(build_dir / BUILD_MANIFEST.name, BUILD_MANIFEST.kind, manifest)
    write_report(report_path, BUILD_MANIFEST.kind, manifest)
    return manifest


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_stamp(build_dir: Path) -> dict[str, object] | None:
    return _read_json(build_dir / STAMP)


def _configure(
    cmake: Path,
    source: Path,
    build_dir: Path,
    defines: dict[str, str],
    request: BuildRequest,
    env: dict[str, str],
) -> float:
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / STAMP).unlink(missing_ok=True)
    request_file_api(build_dir)
    log_path = build_dir / "toolchain-configure.log"
    log_path.unlink(missing_ok=True)
    args = [str(cmake), "-S", str(source), "-B", str(build_dir), "-G", "Ninja"]
    args += [f"-D{k}={v}" for k, v in defines.items()]
    args += list(request.extra_cmake_args)
    result = stream(args, log_path=log_path, env=env)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if result.returncode != 0:
        raise _configure_failure(text, log_path, request.profile)
    return round(result.seconds, 3)


def check_user_options(
    request: BuildRequest, reply: ConfigureReply, source_dir: Path, build_dir: Path
) -> None:
    """Stop on a -D option the tree does not use: a misspelt backend option silently drops it.

    CMake's own "not used" warning is unreliable here (llama.cpp's CMake reads every cache
    variable), so the test is: CMake left the entry UNINITIALIZED (no option()/set(CACHE)
    declared it) and no CMake file of the tree mentions the name.
    """
    caps = read_capabilities(source_dir)
    log_text = (build_dir / "toolchain-configure.log").read_text(encoding="utf-8", errors="replace")
    unused = set(_unused_variables(log_text))
    unknown = sorted(
        name
        for name in user_defines(request.extra_cmake_args)
        if name in unused or (reply.cache.get(name, ("", ""))[0] == "UNINITIALIZED" and not caps.knows(name))
    )
    if unknown and not request.allow_unknown_options:
        (build_dir / STAMP).unlink(missing_ok=True)
        raise UnknownOptionError(
            f"this llama.cpp tree does not use option(s) {', '.join(unknown)}",
            "check the spelling against the tree's CMakeLists.txt (a misspelt backend option silently "
            "builds without that backend); pass --allow-unknown-options to build anyway",
        )
    for name in unknown:
        LOG.warn(f"CMake did not use {name} in this tree (--allow-unknown-options)")


def _unused_variables(text: str) -> list[str]:
    if _UNUSED_HEADER not in text:
        return []
    block = text.split(_UNUSED_HEADER, 1)[1].splitlines()[1:]
    names: list[str] = []
    for line in block:
        if not line.strip():
            if names:
                break
            continue
        if not line.startswith("    "):
            break
        names.append(line.strip())
    return names


def _configure_failure(text: str, log_path: Path, profile: BackendProfile) -> Exception:
    """Classify by the first CMake error: later ones are often its consequences."""
    lines = text.splitlines()
    if "No space left on device" in text:
        return DiskFullError(
            f"the disk filled up while configuring (log: {log_path})", "free space and run again"
        )
    errors = [i for i, line in enumerate(lines) if line.startswith("CMake Error")]
    start = errors[0] if errors else max(0, len(lines) - 25)
    first = "\n".join(lines[start : start + 6])
    if re.search(
        r"No CMAKE_(C|CXX)_COMPILER could be found|CMAKE_(C|CXX)_COMPILER not set|is not a full path to an existing compiler",
        first,
    ):
        return MissingToolError(
            f"CMake found no working C/C++ compiler (log: {log_path})",
            "install one (Xcode Command Line Tools, build-essential) or set CC/CXX",
        )
    excerpt = "\n    ".join(lines[start : start + 25])
    hint = f"read the log: {log_path}"
    if profile.system_hint and re.search(r"Could NOT find|not found|NOTFOUND", excerpt):
        hint = f"{profile.system_hint} Then run again. Log: {log_path}"
    return ConfigureError(f"CMake configure failed:\n    {excerpt}", hint)


def _build(
    cmake: Path, build_dir: Path, targets: list[str], jobs: int | None, env: dict[str, str]
) -> tuple[Completed, bool]:
    log_path = build_dir / "toolchain-build.log"
    log_path.unlink(missing_ok=True)
    args = [
        str(cmake),
        "--build",
        str(build_dir),
        "--parallel",
        str(jobs or os.cpu_count() or 2),
        "--target",
        *targets,
    ]
    no_work = False
    with LOG.progress("compiling", total=None) as bar:

        def on_line(line: str) -> None:
            nonlocal no_work
            match = _NINJA_STATUS.match(line)
            if match:
                bar.update(int(match[1]), int(match[2]))
            elif line.startswith("ninja: no work to do"):
                no_work = True

        result = stream(args, log_path=log_path, env=env, on_line=on_line)
    if result.returncode != 0:
        raise _build_failure(log_path, result)
    if no_work:
        LOG.ok("nothing to rebuild (ninja: no work to do)")
    return result, not no_work


def _build_failure(log_path: Path, result: Completed) -> Exception:
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if "No space left on device" in text:
        return DiskFullError(
            f"the disk filled up while building (log: {log_path})",
            "free space (the build dir and the compiler cache can be large) and run again: the build resumes",
        )
    lines = text.splitlines()
    picked: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("FAILED:"):
            block = [line]
            for follow in lines[i + 1 : i + 40]:
                if _NINJA_STATUS.match(follow) or follow.startswith(("ninja: build stopped", "FAILED:")):
                    break
                if (
                    "error" in follow.lower()
                    or follow.startswith(("FAILED", "/", "In file"))
                    or "^" in follow
                ):
                    block.append(follow)
            picked.extend(block[:20])
    if not picked:
        picked = [line for line in lines if "error" in line.lower()][-20:] or lines[-20:]
    shown = "\n    ".join(picked[:40])
    how = f"killed by {result.signal_name}" if result.signal_name else f"exit status {result.returncode}"
    return BuildError(f"the build failed ({how}):\n    {shown}", f"full log: {log_path}")


def _artifacts(reply: ConfigureReply, names: list[str]) -> tuple[Artifact, ...]:
    """The built targets and the shared libraries and modules they depend on, with sha256."""
    wanted: list[str] = []
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in wanted or name not in reply.targets:
            continue
        target = reply.targets[name]
        if name in names or target.type in ("SHARED_LIBRARY", "MODULE_LIBRARY"):
            wanted.append(name)
        stack.extend(target.dependencies)
    out = []
    for name in sorted(wanted):
        target = reply.targets[name]
        for path in target.artifacts:
            if path.is_file():
                out.append(Artifact(name, target.type, path, sha256_file(path), path.stat().st_size))
    return tuple(out)
