"""``llama-toolchain build``: source -> build -> verify, in one command (what ``nox -s build`` runs)."""

from __future__ import annotations

import argparse
import hashlib
import json
import time

from ..cli import settings_from
from ..config import Settings
from ..core.jsonio import to_jsonable
from ..core.locking import work_dir_lock
from ..errors import UsageError
from ..log import LOG
from ..options import common_options, compiler_cache_option, profile_option, source_options, switches
from ..profiles import BackendProfile, resolve_profile
from ..records import BUILD_MANIFEST, VERIFY
from ..source.selected import fetch_selected
from ..verify import require_ok, verify_path
from ..verify.show import print_table
from .manifest import BuildManifest
from .stage import BuildRequest, run_build
from .targets import TARGET_GROUPS, parse_groups


def passthrough_args(args: argparse.Namespace) -> tuple[str, ...]:
    extra = tuple(getattr(args, "passthrough", ()) or ())
    for arg in extra:
        if not arg.startswith("-D") or len(arg) < 3:
            raise UsageError(
                f"only -DNAME=VALUE options pass through to CMake, got {arg!r}",
                "e.g. `llama-toolchain build -- -DGGML_METAL_SHADER_DEBUG=ON`",
            )
    return extra


def cmd_build(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    profile = resolve_profile(args.profile or settings.profile)
    request = BuildRequest(
        profile=profile,
        groups=parse_groups(args.targets),
        extra_targets=tuple(args.target or ()),
        extra_cmake_args=passthrough_args(args),
        jobs=args.jobs,
        compiler_cache=not args.no_compiler_cache,
        allow_unknown_options=args.allow_unknown_options,
    )
    with work_dir_lock(settings.work_dir):
        start = time.monotonic()
        with LOG.step("source"):
            checkout = fetch_selected(args, settings)
        source_seconds = time.monotonic() - start
        manifest = run_build(settings, checkout, request)
    if not args.no_verify:
        verify_build(settings, manifest, profile)
    if manifest.status == "up-to-date":
        LOG.ok(
            f"up to date: {manifest.build_dir} (nothing to do; {source_seconds + manifest.durations['total']:.1f} s)"
        )
    else:
        LOG.ok(f"built {len(manifest.artifacts)} artifact(s) in {manifest.build_dir}")
    LOG.info(f"manifest: {settings.reports_dir / BUILD_MANIFEST.name}")
    if args.json:
        print(json.dumps(to_jsonable(manifest), indent=2))
    return 0


def verify_build(settings: Settings, manifest: BuildManifest, profile: BackendProfile) -> None:
    """The verify stage on the fresh build; reused when the artifacts have not changed since."""
    report = settings.reports_dir / VERIFY.name
    digest = hashlib.sha256(
        json.dumps([(a.target, a.sha256) for a in manifest.artifacts], sort_keys=True).encode()
    ).hexdigest()
    stamp = manifest.build_dir / ".toolchain-verified"
    if report.is_file() and stamp.is_file() and stamp.read_text() == digest:
        LOG.ok(f"verification unchanged since the artifacts were last verified ({report})")
        return
    stamp.unlink(missing_ok=True)
    with LOG.step(f"verify ({profile.name})"):
        verification = verify_path(
            manifest.build_dir,
            profile,
            runtime=True,
            deployment_target=manifest.cmake_defines.get("CMAKE_OSX_DEPLOYMENT_TARGET"),
            report=report,
        )
        print_table(verification)
    require_ok(verification)
    stamp.write_text(digest)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build",
        help="fetch the locked source, build the needed targets, verify, write the manifest",
        description="Extra CMake options go after `--`: llama-toolchain build -- -DGGML_METAL_SHADER_DEBUG=ON",
    )
    common_options(p)
    source_options(p)
    profile_option(p)
    p.add_argument(
        "--targets",
        default="build",
        help=f"target groups, comma-separated: {', '.join(TARGET_GROUPS)} (default: build)",
    )
    p.add_argument("--target", action="append", help="an extra CMake target to build (repeatable)")
    p.add_argument("--jobs", "-j", type=int, help="parallel jobs (default: CPU count)")
    compiler_cache_option(p)
    switches(
        p,
        {
            "--allow-unknown-options": "build even if CMake did not use a -D option you passed",
            "--no-verify": "skip the verify stage (static and run-time checks)",
            "--json": "print the manifest as JSON on stdout",
        },
    )
    p.set_defaults(func=cmd_build)
