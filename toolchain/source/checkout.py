"""Check a resolved commit out into the work dir as a detached worktree of its mirror.

Local changes are never reset or overwritten. A tree with changes stops the run with the list of
changed files; ``--force`` moves that tree aside (``src.saved-<time>``, still a valid worktree
with every change in it) before checking out afresh; ``--allow-dirty`` builds the changed tree
as it is, when it is already at the wanted commit, and the manifest records the changed files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import git

from ..errors import DirtyWorkTreeError, MirrorCorruptError, ToolchainError
from ..log import LOG
from .lock import ResolvedSource
from .mirror import Mirror, run_git


@dataclass(frozen=True)
class Checkout:
    """The source stage's output: a tree on disk at a known commit."""

    source: ResolvedSource
    path: Path
    commit: str
    # Files with local changes (only with --allow-dirty; otherwise the run stopped).
    local_changes: tuple[str, ...] = ()
    reused: bool = False


def _gitdir_of(worktree: Path) -> Path | None:
    marker = worktree / ".git"
    if marker.is_file():
        text = marker.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            return Path(text.split(":", 1)[1].strip())
    return None


def _changes(repo: git.Repo) -> list[str]:
    # --no-optional-locks: status must not rewrite the index; llama.cpp's CMake watches that file
    # (build-info) and would re-run configure on every build.
    out = run_git(
        repo.git, ["--no-optional-locks", "status", "--porcelain=v1", "--untracked-files=all", "-z"]
    )
    entries = [e for e in out.split("\0") if e]
    return sorted({e[3:] for e in entries if len(e) > 3})


def _aside(path: Path, label: str) -> Path:
    return path.with_name(f"{path.name}.{label}-{time.strftime('%Y%m%d-%H%M%S')}")


def checkout(
    source: ResolvedSource,
    mirror: Mirror,
    dest: Path,
    *,
    force: bool = False,
    allow_dirty: bool = False,
) -> Checkout:
    commit = source.commit
    gitdir = _gitdir_of(dest)
    if dest.exists() and not any(dest.iterdir()):
        dest.rmdir()
    if dest.exists():
        if gitdir is None or not gitdir.exists():
            what = (
                "is not a checkout made by llama-toolchain"
                if gitdir is None
                else (f"belongs to a git directory that no longer exists ({gitdir}; was the cache deleted?)")
            )
            if not force:
                raise DirtyWorkTreeError(
                    f"{dest} {what}; its files cannot be checked for local changes",
                    "move it away yourself, or pass --force to have it moved aside (nothing is deleted)",
                )
            saved = _aside(dest, "orphaned")
            os.replace(dest, saved)
            LOG.warn(f"moved {dest} aside to {saved}")
        else:
            repo = git.Repo(dest)
            changed = _changes(repo)
            head = repo.head.commit.hexsha if repo.head.is_valid() else ""
            owner = git.Repo(repo.common_dir)  # worktree moves and removals run from the mirror
            same_mirror = Path(repo.common_dir).resolve() == mirror.path.resolve()
            if changed:
                if allow_dirty and head == commit and same_mirror:
                    LOG.warn(f"building {dest} with {len(changed)} local change(s) (--allow-dirty)")
                    return Checkout(source, dest, commit, tuple(changed), reused=True)
                if not force:
                    shown = "\n    ".join(changed[:30]) + ("\n    …" if len(changed) > 30 else "")
                    raise DirtyWorkTreeError(
                        f"{dest} has local changes in {len(changed)} file(s):\n    {shown}",
                        "commit or save them elsewhere; or pass --force to move this tree aside "
                        "(kept with all changes) and check out afresh"
                        + ("; or --allow-dirty to build it as it is" if head == commit else ""),
                    )
                saved = _aside(dest, "saved")
                run_git(owner.git, ["worktree", "move", str(dest), str(saved)])
                LOG.warn(f"moved {dest} with its local changes to {saved}")
            elif same_mirror:
                if head == commit:
                    return Checkout(source, dest, commit, reused=True)
                LOG.info(f"switching {dest} to {commit[:12]}")
                mirror.verify_contents(commit)
                try:
                    run_git(repo.git, ["checkout", "--quiet", "--detach", commit])
                except ToolchainError as exc:
                    raise MirrorCorruptError(exc.message) from exc
                return Checkout(source, dest, commit)
            else:
                LOG.info(f"{dest} comes from another source; replacing the (clean) checkout")
                run_git(owner.git, ["worktree", "remove", "--force", str(dest)])
    dest.parent.mkdir(parents=True, exist_ok=True)
    mirror.run(["worktree", "prune"])
    mirror.verify_contents(commit)
    LOG.info(f"checking out {commit[:12]} into {dest}")
    try:
        mirror.run(["worktree", "add", "--detach", "--force", str(dest), commit])
    except ToolchainError as exc:
        raise MirrorCorruptError(exc.message) from exc
    return Checkout(source, dest, commit)


def release_clean_worktree(mirror: Mirror, dest: Path) -> None:
    """Unregister and remove a checkout of ``mirror`` that has no local changes (before the
    mirror is replaced). git refuses if anything untracked or modified is there: then it stays."""
    gitdir = _gitdir_of(dest)
    if gitdir is None or not gitdir.exists():
        return
    try:
        if Path(git.Repo(dest).common_dir).resolve() == mirror.path.resolve():
            mirror.run(["worktree", "remove", str(dest)])
    except ToolchainError as exc:
        LOG.warn(f"kept {dest}: {exc.message.splitlines()[0]}")
