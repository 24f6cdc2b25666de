"""``llama-toolchain update`` (resolve and rewrite the lock) and ``llama-toolchain fetch``."""

from __future__ import annotations

import argparse
import json

from ..cli import settings_from
from ..core.jsonio import to_jsonable
from ..core.locking import work_dir_lock
from ..errors import ConfigError
from ..log import LOG
from ..options import common_options, source_options
from . import SourceSpec, read_lock, resolve, write_lock
from .selected import fetch_selected, requested_spec


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
