"""``llama-toolchain verify [PATH] [--profile P] [--no-runtime] [--tree DIR] [--no-tree-match] [--json]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import settings_from
from ..errors import VerifyError
from ..log import LOG
from ..options import common_options
from . import REPORT_NAME, profile_for, require_ok, verification_json, verify_path
from .show import print_table
from .static import discover


def _default_path(build_root: Path) -> Path:
    dirs = sorted((d for d in build_root.glob("*/") if (d / "bin").is_dir()), key=lambda d: d.stat().st_mtime)
    if not dirs:
        raise VerifyError(f"no build under {build_root}", "run `llama-toolchain build` first, or give PATH")
    return dirs[-1]


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    path = (args.path or _default_path(settings.build_root)).expanduser()
    profile = profile_for(args.profile or settings.profile, path, discover(path))
    report = settings.reports_dir / REPORT_NAME
    v = verify_path(
        path,
        profile,
        runtime=not args.no_runtime,
        deployment_target=args.deployment_target,
        timeout=args.timeout,
        report=report,
        tree=args.tree,
        sdists_dir=None if args.no_tree_match else settings.sdists_dir,
        cache_dir=settings.cache_dir,
    )
    if args.json:
        print(json.dumps(verification_json(v), indent=2))
    print_table(v)
    require_ok(v)
    how = ", ".join(sorted({c.observed_by for c in v.checks if c.status == "pass"}))
    left = ", ".join(dict.fromkeys(c.name for c in v.unverifiable))
    LOG.ok(
        f"{path}: carries the {profile.name} backend"
        + (f" of the {v.era} era" if v.era else "")
        + f" (verified: {how}"
        + (f"; unverifiable: {left}" if left else "")
        + f") ({report})"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify", help="prove a build carries its backend: binaries (static) and a run on the device"
    )
    common_options(p)
    p.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=None,
        help="a build dir (with bin/), a binary, or an app's Contents/Frameworks (default: newest build)",
    )
    p.add_argument(
        "--profile",
        default=None,
        help="backend profile (default: [tool.llama-toolchain] profile; "
        "auto = from the build dir's name or the binaries)",
    )
    p.add_argument("--no-runtime", action="store_true", help="static checks only (no device needed)")
    p.add_argument(
        "--deployment-target", default=None, help="macOS the build must load on (default: CMakeCache.txt)"
    )
    p.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="the llama.cpp checkout the build came from, to read the Metal tensor API's conditions "
        "(default: the build dir's CMakeCache.txt)",
    )
    p.add_argument(
        "--no-tree-match",
        action="store_true",
        help="do not match a build outside a work dir against the cached llama-cpp-python sdists' trees "
        "(a matched tree's dry run is built and run: minutes the first time)",
    )
    p.add_argument(
        "--timeout", type=float, default=180.0, help="seconds each run may take before it counts as a hang"
    )
    p.add_argument("--json", action="store_true", help="print the verification as JSON on stdout")
    p.set_defaults(func=cmd_verify)
