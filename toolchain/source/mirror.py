"""Bare git mirrors in the cache, driven through GitPython.

One bare mirror per remote (``<cache>/mirrors/<name>-<hash>.git``); sdists get one mirror per
PyPI project. Every git call goes through :func:`run_git`: an argument list, a timeout for
anything that touches the network, no terminal prompts, and git's errors mapped onto our typed
errors (unreachable remote, missing ref, corrupt mirror).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import git

from ..errors import MirrorCorruptError, RefNotFoundError, RemoteUnreachableError, ToolchainError
from ..locking import exclusive
from ..log import LOG
from ..proc import capture

# Environment for every git subprocess: never prompt, never read the user's askpass helpers.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GCM_INTERACTIVE": "never",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
}

_UNREACHABLE = (
    "could not resolve host",
    "connection refused",
    "couldn't connect to server",
    "failed to connect",
    "unable to access",
    "does not appear to be a git repository",
    "could not read from remote repository",
    "connection timed out",
    "no route to host",
    "timeout: the command",
    "the remote end hung up unexpectedly",
    "repository not found",
    "operation timed out",
)
_NOT_FOUND = ("not our ref", "couldn't find remote ref", "no such remote ref", "unadvertised object")
_CORRUPT = (
    "bad object",
    "missing blob",
    "missing tree",
    "is corrupt",
    "corrupt",
    "unable to read",
    "did not receive expected object",
    "inflate:",
    "invalid object",
    "packfile",
    "loose object",
    "unable to parse object",
    "object file",
    "bad packed object",
    "fatal: not a git repository",
)


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
                self.repo.git.execute(
                    ["git", "archive", "--format=tar", commit], output_stream=sink, env=GIT_ENV
                )
            except git.GitCommandError as exc:
                raise MirrorCorruptError(
                    f"mirror {self.path} cannot read the objects of {commit[:12]}: "
                    + " ".join(str(exc.stderr or "").split())[-300:]
                ) from None

    def pin(self, commit: str) -> None:
        """Keep a ref on a commit we use so that no gc ever drops it."""
        self.run(["update-ref", f"refs/toolchain/pins/{commit}", commit])


def run_git(
    cmd: git.Git,
    args: Sequence[str],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    remote: bool = False,
) -> str:
    """Run ``git <args>`` with ``cmd``'s working dir (an argument list); map failures onto typed errors."""
    command = ["git", *args]
    full_env = {**GIT_ENV, **(env or {})}
    try:
        if timeout is None:
            out = cmd.execute(command, env=full_env, stdout_as_string=True)
        else:
            cwd = Path(cmd.working_dir) if cmd.working_dir else None
            out = _run_with_deadline(command, cwd, full_env, timeout)
    except git.GitCommandError as exc:
        raise classify_git_error(exc, command, remote=remote) from None
    return str(out)


def _run_with_deadline(command: list[str], cwd: Path | None, env: Mapping[str, str], timeout: float) -> str:
    """A git call that may stall (network): its own process group, ended on timeout or Ctrl-C.

    Not GitPython's ``kill_after_timeout``: its watchdog is a non-daemon timer thread, which keeps
    the process alive after Ctrl-C until the timeout expires (and a second Ctrl-C then is a
    traceback from the threading module)."""
    done = capture(
        command, timeout=timeout, env={**os.environ, **env}, cwd=cwd, max_output=None, term_wait=1.0
    )
    if done.timed_out:
        raise git.GitCommandError(
            command,
            -9,
            f'Timeout: the command "{" ".join(command)}" did not complete in {timeout:g} secs.',
        )
    if done.returncode != 0:
        raise git.GitCommandError(command, done.returncode, done.stderr)
    return done.stdout.removesuffix("\n")


def classify_git_error(exc: git.GitCommandError, command: Sequence[str], *, remote: bool) -> ToolchainError:
    stderr = str(exc.stderr or "").strip().strip("'").replace("stderr: ", "").strip()
    low = stderr.lower()
    shown = " ".join(command)
    last = "\n    ".join(stderr.splitlines()[-6:]) or f"exit status {exc.status}"
    if remote and any(s in low for s in _NOT_FOUND):
        return RefNotFoundError(f"the remote has no such ref or commit ({shown}):\n    {last}")
    if remote and (any(s in low for s in _UNREACHABLE) or exc.status == -9):
        return RemoteUnreachableError(
            f"could not reach the remote ({shown}):\n    {last}",
            "check the URL and your network; with the commit already cached, `--offline` works without it",
        )
    if any(s in low for s in _CORRUPT):
        return MirrorCorruptError(f"git reports a damaged repository ({shown}):\n    {last}")
    return ToolchainError(f"git failed ({shown}):\n    {last}")
