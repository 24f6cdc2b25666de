"""The one way the toolchain runs git: an argument list through :func:`toolchain.core.proc.capture`
(its own process group, a timeout, Ctrl-C ends it), no terminal prompts, and git's failures mapped
onto typed errors (unreachable remote, missing ref, damaged repository). GitPython's ``Repo``
objects describe repositories (refs, tags, paths); every git *command* runs here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from ..errors import MirrorCorruptError, RefNotFoundError, RemoteUnreachableError, ToolchainError
from .proc import capture

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

# A local git command (no network) that has not ended in an hour is stuck.
LOCAL_TIMEOUT = 3600.0


class HasWorkingDir(Protocol):
    """A GitPython ``Git`` (``repo.git``): its working dir is where the command runs."""

    @property
    def working_dir(self) -> str | os.PathLike[str] | None: ...


def run_git(
    where: Path | HasWorkingDir,
    args: Sequence[str],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    remote: bool = False,
    stdout: IO[bytes] | None = None,
) -> str:
    """Run ``git <args>`` in ``where`` (a directory, or GitPython's ``repo.git``); its stdout less the
    final newline (or written to ``stdout``). ``timeout``: for anything that touches the network
    (default: :data:`LOCAL_TIMEOUT`). Failures are typed (:func:`classify_git_error`)."""
    command = ["git", *args]
    limit = LOCAL_TIMEOUT if timeout is None else timeout
    cwd = where if isinstance(where, Path) else (Path(where.working_dir) if where.working_dir else None)
    try:
        done = capture(
            command,
            timeout=limit,
            env={**os.environ, **GIT_ENV, **(env or {})},
            cwd=cwd,
            max_output=None,
            stdout=stdout,
            term_wait=1.0,
        )
    except OSError as exc:
        raise ToolchainError(
            f"cannot run git ({' '.join(command)}): {exc.strerror or exc}", "install git"
        ) from None
    if done.timed_out:
        late = f'Timeout: the command "{" ".join(command)}" did not complete in {limit:g} secs.'
        raise classify_git_error(command, -9, late, remote=remote)
    if done.returncode != 0:
        raise classify_git_error(command, done.returncode, done.stderr, remote=remote)
    return done.stdout.removesuffix("\n")


def classify_git_error(command: Sequence[str], status: int, stderr: str, *, remote: bool) -> ToolchainError:
    """git's failure (``status`` -9: it timed out) as the typed error it is."""
    stderr = stderr.strip()
    low = stderr.lower()
    shown = " ".join(command)
    last = "\n    ".join(stderr.splitlines()[-6:]) or f"exit status {status}"
    if remote and any(s in low for s in _NOT_FOUND):
        return RefNotFoundError(f"the remote has no such ref or commit ({shown}):\n    {last}")
    if remote and (any(s in low for s in _UNREACHABLE) or status == -9):
        return RemoteUnreachableError(
            f"could not reach the remote ({shown}):\n    {last}",
            "check the URL and your network; with the commit already cached, `--offline` works without it",
        )
    if any(s in low for s in _CORRUPT):
        return MirrorCorruptError(f"git reports a damaged repository ({shown}):\n    {last}")
    return ToolchainError(f"git failed ({shown}):\n    {last}")


def tree_commit(tree: Path) -> str:
    """The commit of a checked-out tree (its own git repository), or "unknown"."""
    try:
        top = run_git(tree, ["rev-parse", "--show-toplevel", "HEAD"], timeout=30).split()
    except ToolchainError:
        return "unknown"
    if len(top) == 2 and Path(top[0]).resolve() == tree.resolve():
        return top[1]
    return "unknown"
