"""``git`` sources: resolve a ref of a remote to one commit and fetch just that into the mirror.

Order of work, cheapest first:
1. A full commit id already in the mirror: nothing to fetch.
2. Names (HEAD, branches, tags) are resolved with ``git ls-remote`` (no object transfer).
3. The commit is fetched shallow (``--depth=1``) where the server allows fetching by id
   (protocol v2, GitHub, file://); otherwise the branches and tags are fetched in full.
4. Abbreviated ids are looked up in the mirror, and after a full fetch if need be; an ambiguous
   prefix is an error listing the candidates.
Offline, only the mirror is used, including the names remembered from the last online resolve.
A mirror found damaged is moved aside and fetched again, once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..config import Settings
from ..errors import (
    AmbiguousRefError,
    MirrorCorruptError,
    OfflineMissingError,
    RefNotFoundError,
    ToolchainError,
)
from ..log import LOG
from .lock import ResolvedSource
from .mirror import Mirror, mirror_path
from .spec import SourceSpec, is_commit_prefix, is_full_commit_id

NAME_REFS = "refs/toolchain/names"


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mirror_for(settings: Settings, url: str) -> Mirror:
    return Mirror(mirror_path(settings.mirrors_dir, url), url=url)


def resolve_git(spec: SourceSpec, settings: Settings, *, offline: bool = False) -> ResolvedSource:
    mirror = mirror_for(settings, spec.location)
    with mirror.locked():  # type: ignore[attr-defined]
        for attempt in (1, 2):
            mirror.ensure()
            try:
                commit = _resolve_and_fetch(mirror, spec, settings, offline=offline)
                mirror.check_objects(commit)
                mirror.pin(commit)
                break
            except MirrorCorruptError as exc:
                if attempt == 2 or offline:
                    raise MirrorCorruptError(
                        exc.message,
                        "delete the mirror directory and run again online"
                        if offline
                        else "the refetch did not help: check the remote and delete the mirror directory",
                    ) from exc
                mirror.move_aside(exc.message.splitlines()[0])
    return ResolvedSource(
        kind="git", location=spec.location, ref=spec.ref, commit=commit, resolved_at=now_utc()
    )


def _resolve_and_fetch(mirror: Mirror, spec: SourceSpec, settings: Settings, *, offline: bool) -> str:
    ref = spec.ref
    timeout = settings.network_timeout
    if is_full_commit_id(ref.lower()) and mirror.has_commit(ref.lower()):
        return ref.lower()
    if offline:
        return _resolve_offline(mirror, ref)

    if is_full_commit_id(ref.lower()):
        commit = ref.lower()
    else:
        remote_commit = _ls_remote(mirror, ref, timeout)
        if remote_commit is None:
            if is_commit_prefix(ref.lower()):
                return _resolve_prefix(mirror, ref.lower(), timeout)
            raise RefNotFoundError(
                f"{spec.location} has no branch or tag named {ref!r}",
                "check the name (`git ls-remote <url>` lists them), or pass a commit id",
            )
        commit = remote_commit
    if not mirror.has_commit(commit):
        _fetch_commit(mirror, commit, timeout)
    if not is_full_commit_id(ref.lower()):
        # remembered for --offline: the name resolves to what it last resolved to online
        mirror.run(["update-ref", f"{NAME_REFS}/{ref}", commit])
    return commit


def _ls_remote(mirror: Mirror, ref: str, timeout: float) -> str | None:
    """Resolve a name on the remote the way git rev-parse would: exact, then tag, then branch."""
    LOG.info(f"resolving {ref} on {mirror.url}")
    out = mirror.run(["ls-remote", "origin", ref], timeout=timeout, remote=True)
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    for candidate in (ref, f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
        if candidate in refs:
            if candidate.startswith("refs/tags/") and f"refs/heads/{ref}" in refs:
                LOG.warn(f"{ref!r} is both a tag and a branch on the remote; using the tag, as git does")
            return refs[candidate]
    return None


def _fetch_commit(mirror: Mirror, commit: str, timeout: float) -> None:
    LOG.info(f"fetching {commit[:12]} (shallow) from {mirror.url}")
    try:
        mirror.run(["fetch", "--depth=1", "--no-tags", "origin", commit], timeout=timeout, remote=True)
    except RefNotFoundError:
        LOG.info("the server does not allow fetching a commit by id; fetching branches and tags instead")
        _fetch_all(mirror, timeout)
    except ToolchainError as exc:
        # Some servers answer a by-id want with a generic error; try the full fetch before giving up.
        if "unreachable" in exc.title:
            raise
        LOG.info(f"shallow fetch failed ({exc.message.splitlines()[0]}); fetching branches and tags")
        _fetch_all(mirror, timeout)
    if not mirror.has_commit(commit):
        raise RefNotFoundError(
            f"commit {commit} is not on {mirror.url}",
            "check the id; a commit only on a fork needs that fork's URL (`--git URL`)",
        )


def _fetch_all(mirror: Mirror, timeout: float) -> None:
    args = ["fetch", "--prune", "origin"]
    if mirror.is_shallow():
        args.insert(1, "--unshallow")
    LOG.info(f"fetching all branches and tags from {mirror.url} (can take a while)")
    mirror.run(args, timeout=timeout, remote=True)


def _resolve_prefix(mirror: Mirror, prefix: str, timeout: float) -> str:
    found = _candidates(mirror, prefix)
    if not found:
        _fetch_all(mirror, timeout)
        found = _candidates(mirror, prefix)
    return _one(prefix, found, mirror)


def _resolve_offline(mirror: Mirror, ref: str) -> str:
    try:
        return mirror.run(["rev-parse", "--verify", "--quiet", f"{NAME_REFS}/{ref}^{{commit}}"]).strip()
    except ToolchainError:
        pass
    if is_commit_prefix(ref.lower()):
        found = _candidates(mirror, ref.lower())
        if found:
            return _one(ref, found, mirror)
    raise OfflineMissingError(
        f"{ref!r} is not in the mirror {mirror.path} and --offline forbids fetching it",
        "run once without --offline to fetch it",
    )


def _candidates(mirror: Mirror, prefix: str) -> list[str]:
    try:
        out = mirror.run(["rev-parse", "--disambiguate=" + prefix])
    except ToolchainError:
        return []
    found = []
    for sha in out.split():
        try:
            if mirror.run(["cat-file", "-t", sha]).strip() == "commit":
                found.append(sha)
        except ToolchainError:
            continue
    return found


def _one(prefix: str, found: list[str], mirror: Mirror) -> str:
    if len(found) == 1:
        return found[0]
    if not found:
        raise RefNotFoundError(f"no commit starting with {prefix!r} in {mirror.url or mirror.path}")
    listing = "\n    ".join(found)
    raise AmbiguousRefError(
        f"{prefix!r} matches {len(found)} commits:\n    {listing}",
        "pass more digits of the commit id",
    )
