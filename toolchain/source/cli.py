"""``llama-toolchain update`` (resolve and rewrite the lock) and ``llama-toolchain fetch``."""

from __future__ import annotations

import argparse
import json

from ..cli import common_options, settings_from, switches
from ..config import Settings
from ..errors import ConfigError, UsageError
from ..locking import work_dir_lock
from ..log import LOG
from ..records import to_jsonable
from . import Checkout, ResolvedSource, SourceSpec, fetch, read_lock, resolve, write_lock
from .spec import SDIST_PROJECT


def source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("source (default: the lock file)")
    group.add_argument(
        "--ref", help="HEAD, a branch, a tag or a (abbreviated) commit id; for --pypi: ignored"
    )
    kind = group.add_mutually_exclusive_group()
    kind.add_argument(
        "--git",
        metavar="URL",
        nargs="?",
        const="",
        help="a git remote (default: [tool.llama-toolchain] remote)",
    )
    kind.add_argument(
        "--pypi", metavar="REQ", help=f"a {SDIST_PROJECT} requirement, e.g. {SDIST_PROJECT}==0.3.36"
    )
    switches(
        group,
        {
            "--offline": "use the cache only; fail clearly when something is missing",
            "--force": "move a checkout with local changes aside (kept) instead of stopping",
            "--allow-dirty": "build a checkout with local changes as it is",
        },
    )


def requested_spec(args: argparse.Namespace, settings: Settings) -> SourceSpec | None:
    """The spec given on the command line, or None to use the lock."""
    if args.pypi:
        return SourceSpec(kind="pypi-sdist", location=args.pypi, ref=args.pypi.split("==")[-1])
    if args.git is not None:
        return SourceSpec(kind="git", location=args.git or settings.remote, ref=args.ref or "HEAD")
    if args.ref:
        locked = read_lock(settings.lock_path)
        if locked.kind != "git":
            raise UsageError(
                f"--ref {args.ref} needs a git source, but the lock pins {locked.location}",
                "add --git [URL] (default remote: [tool.llama-toolchain] remote)",
            )
        return SourceSpec(kind="git", location=locked.location, ref=args.ref)
    return None


def selected_source(args: argparse.Namespace, settings: Settings) -> tuple[ResolvedSource, bool]:
    """(source, from_lock): the lock, or a spec from the command line resolved now (lock untouched)."""
    spec = requested_spec(args, settings)
    if spec is None:
        return read_lock(settings.lock_path), True
    return resolve(spec, settings, offline=args.offline), False


def fetch_selected(args: argparse.Namespace, settings: Settings) -> Checkout:
    """The checkout of the source the source options select, fetched as they say."""
    source, from_lock = selected_source(args, settings)
    return fetch(
        source,
        settings,
        offline=args.offline,
        force=args.force,
        allow_dirty=args.allow_dirty,
        locked=from_lock,
    )


def cmd_update(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    spec = requested_spec(args, settings)
    if spec is None:
        locked = read_lock(settings.lock_path)
        ref = locked.ref if locked.kind == "git" else None
        spec = (
            SourceSpec(kind="git", location=locked.location, ref=ref or "HEAD")
            if locked.kind == "git"
            else SourceSpec(kind="pypi-sdist", location=locked.location, ref=locked.ref)
        )
    resolved = resolve(spec, settings, offline=args.offline)
    old = None
    if settings.lock_path.is_file():
        try:
            old = read_lock(settings.lock_path)
        except ConfigError as exc:  # a source was given: the malformed lock is what it replaces
            LOG.warn(f"replacing the malformed {settings.lock_path.name}: {exc.message.splitlines()[0]}")
    write_lock(settings.lock_path, resolved)
    if old and old.commit == resolved.commit:
        LOG.ok(
            f"{settings.lock_path.name}: unchanged at {resolved.short} ({resolved.location} {resolved.ref})"
        )
    else:
        was = f" (was {old.short})" if old else ""
        LOG.ok(f"{settings.lock_path.name}: {resolved.location} {resolved.ref} -> {resolved.commit}{was}")
    if args.json:
        print(json.dumps(to_jsonable(resolved), indent=2))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with work_dir_lock(settings.work_dir):
        result = fetch_selected(args, settings)
    if args.json:
        print(json.dumps(to_jsonable(result), indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    update = sub.add_parser("update", help="resolve a source to one commit and rewrite llama.lock")
    common_options(update)
    source_options(update)
    update.add_argument("--json", action="store_true", help="print the resolved source as JSON on stdout")
    update.set_defaults(func=cmd_update)

    fetch_p = sub.add_parser("fetch", help="check the locked (or given) source out into the work dir")
    common_options(fetch_p)
    source_options(fetch_p)
    fetch_p.add_argument("--json", action="store_true", help="print the checkout record as JSON on stdout")
    fetch_p.set_defaults(func=cmd_fetch)
