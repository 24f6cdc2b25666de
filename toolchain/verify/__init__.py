"""Verify stage: prove that a build really carries its backend, statically and at run time.

    from toolchain.verify import verify_path, require_ok, write_verification
    v = verify_path(build_dir, profile, runtime=True, report=settings.reports_dir / VERIFY.name)
    require_ok(v)          # raises VerifyError (exit 30) naming each failed check and what to do

Modules: ``inputs`` (what the path holds), ``binaries`` (LIEF, one slice per architecture, ``.a``
members), ``graph`` (dependency resolution as dyld / ld.so do it), ``static`` (per-profile checks;
``checkbase`` their shared state, ``macos`` the Mach-O ones, ``tensor_rules`` the tensor API's
conditions read from the tree), ``runtime`` (device listing, one-token run, device classes),
``probe_model`` (the tiny GGUF), ``records`` (the JSON records).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.jsonio import to_jsonable
from ..errors import NothingVerifiedError, ProfileError, UnreadableBinaryError, VerifyError
from ..profiles import DEFAULT_PROFILE, PROFILES, BackendProfile, PlatformInfo, current_platform
from ..records import VERIFY, write_report
from .binaries import sniff
from .kernels import shipped_library_checks
from .records import Check, DeviceClass, DeviceInfo, RuntimeRun, Verification
from .runtime import runtime_checks
from .static import Inputs, discover, host_macos_version, static_checks

__all__ = [
    "Check",
    "DeviceClass",
    "DeviceInfo",
    "RuntimeRun",
    "Verification",
    "profile_for",
    "require_ok",
    "verification_json",
    "verify_path",
    "write_verification",
]

REPORT_KIND = VERIFY.kind
REPORT_NAME = VERIFY.name


def profile_for(name: str, path: Path, inputs: Inputs | None = None) -> BackendProfile:
    """The profile to verify ``path`` against. ``auto``: from the build dir's name
    (``<profile>-<hash>``), else from the binaries' format (Mach-O: metal). Unlike
    ``resolve_profile`` this never refuses a profile that does not build here: a Mac build can be
    verified statically on Linux."""
    if name != "auto":
        if name not in PROFILES:
            raise ProfileError(
                f"unknown backend profile {name!r}", f"choose one of: auto, {', '.join(PROFILES)}"
            )
        return PROFILES[name]
    for part in (path, *path.parents[:2]):
        head = part.name.split("-", 1)[0]
        if head in PROFILES and "-" in part.name:
            return PROFILES[head]

    inputs = inputs or discover(path)
    kinds = {sniff(f) for f in inputs.files}
    return PROFILES["metal" if kinds & {"macho", "fat"} else DEFAULT_PROFILE.get("linux", "cpu")]


def verify_path(
    path: Path,
    profile: BackendProfile,
    *,
    runtime: bool,
    deployment_target: str | None = None,
    embed_library: bool | None = None,
    timeout: float = 180.0,
    model: Path | None = None,
    log_dir: Path | None = None,
    report: Path | None = None,
    plat: PlatformInfo | None = None,
    tree: Path | None = None,
    sdists_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> Verification:
    """Verify a build dir, a single binary or an app's Frameworks folder against ``profile``.

    ``deployment_target`` / ``embed_library``: what the build was configured with, when known
    (else read from the build dir's CMakeCache.txt). ``runtime``: also run the build (device
    listing + one-token run of a tiny model under ``timeout`` seconds); its logs go to
    ``log_dir``. ``report``: write the verification there as JSON (kind ``verify``). ``tree``: the
    llama.cpp checkout the build came from (the tensor API's conditions are read from it; default:
    the build dir's CMakeCache.txt CMAKE_HOME_DIRECTORY). ``sdists_dir``: llama-cpp-python sdists
    whose vendored trees a build outside a work dir is matched against (its embedded Metal library
    byte for byte); a matched tree's dry run is built and run in ``cache_dir`` (default: the
    toolchain's cache). None: no matching.
    Bad builds do not raise: look at ``.ok`` or call :func:`require_ok`.
    """
    plat = plat or current_platform()
    inputs = discover(path)
    result = static_checks(
        inputs,
        profile,
        deployment_target=deployment_target,
        embed_library=embed_library,
        host_macos=host_macos_version(plat),
        tree=tree,
    )
    checks: list[Check] = list(result.checks)
    shipped_checks, matched = shipped_library_checks(path, inputs.files, sdists_dir, cache_dir)
    checks.extend(shipped_checks)
    devices: tuple[DeviceInfo, ...] = ()
    device_class: DeviceClass | None = None
    runs: tuple[RuntimeRun, ...] = ()
    if runtime:
        programs = list(inputs.files)
        if path.is_file():  # a single binary: the runner may sit beside it
            programs += sorted(
                p for p in path.resolve().parent.iterdir() if p.is_file() and p not in programs
            )
        if log_dir is None:
            log_dir = (
                (report.parent / "verify-logs")
                if report
                else Path(tempfile.mkdtemp(prefix="llama-toolchain-verify-"))
            )
        rt = runtime_checks(
            programs,
            profile,
            binary_format=result.formats[0] if result.formats else "",
            archs=result.archs,
            timeout=timeout,
            model=model,
            log_dir=log_dir,
            plat=plat,
        )
        checks.extend(rt.checks)
        devices, device_class, runs = rt.devices, rt.device_class, rt.runs
    verification = Verification(
        path=path.resolve(),
        profile=profile.name,
        checks=tuple(checks),
        runtime_requested=runtime,
        devices=devices,
        device_class=device_class,
        runs=runs,
        files=tuple(str(f) for f in result.files),
        era=result.era,
        shipped=result.shipped,
        tree_match=matched.describe() if matched is not None else "",
    )
    if report is not None:
        write_verification(verification, report)
    return verification


def write_verification(verification: Verification, path: Path) -> Path:
    """``verify.json``: the record itself plus ``ok`` (no failure and something verified) and
    ``verified`` (some check established the backend)."""
    return write_report(path, REPORT_KIND, verification_json(verification))


def verification_json(verification: Verification) -> dict[str, object]:
    ok = verification.ok and verification.verified
    return {**to_jsonable(verification), "ok": ok, "verified": verification.verified}


def require_ok(verification: Verification) -> None:
    """Raise :class:`VerifyError` naming every failed check and what to do about it, or
    :class:`NothingVerifiedError` when nothing failed but nothing established the backend either."""
    failures = verification.failures
    if not failures and verification.verified:
        return
    damaged = [c for c in failures if c.name == "readable"]
    if damaged:  # a damaged file is its own answer, never "built without ..."
        raise UnreadableBinaryError(
            "\n".join(c.found for c in damaged),
            "the file is damaged or was copied in part: rebuild it, or copy it again",
        )
    if not failures:
        lines = [
            f"nothing could be verified: no check established the {verification.profile} backend "
            f"in {verification.path}:"
        ]
        for c in verification.unverifiable:
            where = f" [{c.arch}]" if c.arch else ""
            lines.append(f"  {c.name}{where}: unverifiable: {c.found}")
        hints = list(dict.fromkeys(c.hint for c in verification.unverifiable if c.hint))
        raise NothingVerifiedError(
            "\n".join(lines), "\n  -> ".join(hints or ["verify the unstripped build dir on its machine"])
        )
    lines = [f"{verification.path} does not carry what profile {verification.profile!r} promises:"]
    for c in failures:
        where = f" [{c.arch}]" if c.arch else ""
        lines.append(f"  {c.name}{where}: {c.found}")
    hints = list(dict.fromkeys(c.hint for c in failures if c.hint))
    raise VerifyError("\n".join(lines), "\n  -> ".join(hints))
