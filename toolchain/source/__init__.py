"""Source stage: a spec (lock file or command line) -> one commit -> a checked-out tree.

``SourceSpec`` --resolve--> ``ResolvedSource`` (what ``llama.lock`` holds) --checkout--> ``Checkout``.
"""

from __future__ import annotations

from ..config import Settings
from ..errors import ConfigError, MirrorCorruptError
from ..log import LOG
from .checkout import Checkout, checkout, release_clean_worktree
from .git_source import mirror_for, resolve_git
from .lock import ResolvedSource, SdistInfo, read_lock, write_lock
from .mirror import Mirror
from .sdist import resolve_sdist, sdist_mirror
from .spec import SourceSpec

__all__ = [
    "Checkout",
    "ResolvedSource",
    "SdistInfo",
    "SourceSpec",
    "fetch",
    "mirror_of",
    "read_lock",
    "resolve",
    "write_lock",
]


def resolve(spec: SourceSpec, settings: Settings, *, offline: bool = False) -> ResolvedSource:
    """Resolve a spec to one commit, fetching (or importing) exactly what is needed."""
    if spec.kind == "git":
        return resolve_git(spec, settings, offline=offline)
    return resolve_sdist(spec, settings, offline=offline)


def ensure_locked(locked: ResolvedSource, settings: Settings, *, offline: bool = False) -> ResolvedSource:
    """Make sure a locked commit is in the mirror (fetch or import it) without re-resolving names."""
    if locked.kind == "git":
        pinned = SourceSpec(kind="git", location=locked.location, ref=locked.commit)
        resolve_git(pinned, settings, offline=offline)
        return locked
    again = resolve_sdist(locked.spec, settings, offline=offline, known=locked.sdist)
    if again.commit != locked.commit:
        raise ConfigError(
            f"the lock says {locked.location} is commit {locked.commit}, but importing it gave {again.commit}",
            "the lock was edited or written by an incompatible version: rewrite it with `llama-toolchain update`",
        )
    return locked


def mirror_of(source: ResolvedSource, settings: Settings) -> Mirror:
    return mirror_for(settings, source.location) if source.kind == "git" else sdist_mirror(settings)


def fetch(
    source: ResolvedSource,
    settings: Settings,
    *,
    offline: bool = False,
    force: bool = False,
    allow_dirty: bool = False,
    locked: bool = True,
) -> Checkout:
    """Bring ``source`` into the mirror (if needed) and check it out into the work dir."""
    if locked:
        source = ensure_locked(source, settings, offline=offline)
    mirror = mirror_of(source, settings).ensure()
    try:
        result = checkout(source, mirror, settings.src_dir, force=force, allow_dirty=allow_dirty)
    except MirrorCorruptError as exc:
        if offline:
            raise MirrorCorruptError(exc.message, "run again without --offline to refetch it") from exc
        # a damaged mirror is kept aside (not deleted), fetched again, and the checkout retried once
        release_clean_worktree(mirror, settings.src_dir)
        mirror.move_aside(exc.message.splitlines()[0])
        ensure_locked(source, settings)
        mirror = mirror_of(source, settings).ensure()
        result = checkout(source, mirror, settings.src_dir, force=force, allow_dirty=allow_dirty)
    LOG.ok(
        f"source {source.location} @ {source.short} in {result.path}"
        + (" (unchanged)" if result.reused else "")
    )
    return result
