"""Bare git mirrors in the cache (GitPython's ``Repo`` for what they hold).

One bare mirror per remote (``<cache>/mirrors/<name>-<hash>.git``); sdists get one mirror per
PyPI project. Every git command goes through :func:`toolchain.core.git.run_git`: an argument list,
a timeout for anything that touches the network, no terminal prompts, and git's errors mapped onto
our typed errors (unreachable remote, missing ref, corrupt mirror).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import git

from ..core.git import run_git
from ..core.locking import exclusive
from ..errors import MirrorCorruptError, ToolchainError
from ..log import LOG


def mirror_path(mirrors_dir: Path, key: str) -> Path:
    """A readable, collision-free directory name for a remote URL or a PyPI project."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", key.split("://", 1)[-1]).strip("-.")[-48:] or "remote"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return mirrors_dir / f"{slug}-{digest}.git"


class Mirror:
    """A bare repository in the cache. Use :meth:`locked` around anything that writes to it."""

    def __init__(self, path: Path, url: str | None = None) -> None:
        self.path = path
        self.url = url
        self._repo: git.Repo | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def ensure(self) -> Mirror:
        if not (self.path / "HEAD").is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            git.Repo.init(self.path, bare=True)
            LOG.info(f"created mirror {self.path}")
        self._repo = git.Repo(self.path)
        if self.url is not None:
            self.run(["config", "remote.origin.url", self.url])
            self.run(["config", "--replace-all", "remote.origin.fetch", "+refs/heads/*:refs/heads/*"])
            self.run(["config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*"])
        # keep mirrors small and safe; never auto-gc a pack away while a fetch is running
        self.run(["config", "gc.auto", "0"])
        return self

    def locked(self, wait: float = 1800.0) -> object:
        return exclusive(self.path.with_suffix(".lock"), wait=wait, what=f"mirror {self.path.name}")

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self.ensure()
        assert self._repo is not None
        return self._repo

    def move_aside(self, reason: str) -> Path:
        """Keep a broken mirror for inspection instead of deleting it, and start afresh."""
        target = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.path, target)
        LOG.warn(f"mirror {self.path} was corrupt ({reason}); moved to {target} and starting afresh")
        self._repo = None
        return target

    # -- git -------------------------------------------------------------------------------------
    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        remote: bool = False,
    ) -> str:
        return run_git(self.repo.git, args, timeout=timeout, env=env, remote=remote)

    def has_commit(self, commit: str) -> bool:
        try:
            self.run(["cat-file", "-e", f"{commit}^{{commit}}"])
            return True
        except ToolchainError:
            return False

    def is_shallow(self) -> bool:
        return (self.path / "shallow").is_file()

    def check_objects(self, commit: str) -> None:
        """Cheap integrity check of one commit's objects (all trees and blobs reachable from it)."""
        out = self.run(["rev-list", "--objects", "--no-walk", "--missing=print", commit])
        missing = [line[1:] for line in out.splitlines() if line.startswith("?")]
        if missing:
            raise MirrorCorruptError(
                f"mirror {self.path} misses {len(missing)} object(s) of {commit[:12]} (e.g. {missing[0]})",
                "it will be refetched; if this repeats, delete the mirror directory",
            )

    def verify_contents(self, commit: str) -> None:
        """Read (inflate) every object of ``commit``: catches bad packs before a checkout uses them."""
        with open(os.devnull, "wb") as sink:
            try:
                run_git(self.repo.git, ["archive", "--format=tar", commit], stdout=sink)
            except ToolchainError as exc:
                raise MirrorCorruptError(
                    f"mirror {self.path} cannot read the objects of {commit[:12]}: "
                    + " ".join(exc.message.split())[-300:]
                ) from None

    def pin(self, commit: str) -> None:
        """Keep a ref on a commit we use so that no gc ever drops it."""
        self.run(["update-ref", f"refs/toolchain/pins/{commit}", commit])
