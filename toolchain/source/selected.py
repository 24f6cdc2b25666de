"""The source the command line selects (``--ref``, ``--git``, ``--pypi``; the lock otherwise), fetched
as its options say: what ``update``, ``fetch`` and ``build`` share."""

from __future__ import annotations

import argparse

from ..config import Settings
from ..errors import UsageError
from . import Checkout, ResolvedSource, SourceSpec, fetch, read_lock, resolve


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
