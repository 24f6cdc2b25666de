"""Inter-process locks (``flock``) for the work dir and the shared cache.

The work dir lock fails at once with ``WorkDirBusyError`` naming the holder's pid: two runs on one
work dir would fight over the checkout and the build dir. Cache locks (a mirror shared by several
projects) wait, telling the user what they wait for, up to a bound.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ..errors import ConfigError, WorkDirBusyError
from ..log import LOG
from .diskfull import raise_named


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def exclusive(path: Path, *, wait: float = 0.0, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait up to ``wait`` seconds (0: fail at once)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise ConfigError(
            f"cannot create the lock file {path} of {what or path.parent}: {exc.strerror or exc}",
            "the directory must be writable: point [tool.llama-toolchain] work-dir / cache-dir "
            "(or --work-dir, $TOOLCHAIN_CACHE) at a writable directory",
        ) from exc
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WorkDirBusyError(
                        f"{what or path} is in use by another llama-toolchain process (pid {_holder(path)})",
                        "wait for it to finish, or stop it; the lock is released when it exits",
                    ) from None
                if not told:
                    LOG.info(f"waiting for {what or path} (held by pid {_holder(path)}) …")
                    told = True
                time.sleep(0.2)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:  # a full disk: said naming the lock file, before any work starts
            raise_named(exc, path)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def work_dir_lock(work_dir: Path) -> AbstractContextManager[None]:
    return exclusive(work_dir / ".lock", wait=0.0, what=f"work dir {work_dir}")
