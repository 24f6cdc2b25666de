"""A full disk, said once: which write failed, where, and why (ENOSPC), never a traceback.

Every writer keeps raising ``OSError`` (so callers that catch it still do), but with the path it
concerns: a write through an open file object carries no file name, and numpy's ``tofile`` (the
GGUF writer's) reports a short write without an errno at all. :func:`named` fills both in, asking
the file system itself for the errno when the writer lost it. The command line turns any such
error into one :class:`~toolchain.errors.DiskFullError` (exit 23) with :func:`disk_full_error`.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import NoReturn

from ..errors import DiskFullError

# ENOSPC: no space left on the device; EDQUOT: the user's quota on it is used up
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_PROBE_BYTES = 64 << 10


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def write_errno(directory: Path) -> int | None:
    """The errno a write of 64 KiB into ``directory`` gets now (None when it succeeds): the file
    system's own answer, for a writer that lost the errno of its failed write."""
    try:
        fd, name = tempfile.mkstemp(prefix=".toolchain-space-", dir=directory)
    except OSError as exc:
        return exc.errno
    try:
        left = _PROBE_BYTES
        while left:  # a short write is followed by one that says why
            left -= os.write(fd, b"\0" * left)
        os.fsync(fd)
    except OSError as exc:
        return exc.errno
    finally:
        os.close(fd)
        os.unlink(name)
    return None


def named(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name and an errno: itself when it has both, else a new
    ``OSError`` (raise it ``from exc``). A write that lost its errno (a short write) gets the one
    the file system gives a write into the same directory now, ENOSPC on a full disk."""
    code = exc.errno
    if code is None:
        code = write_errno(path.parent) if path.parent.is_dir() else None
        if code is None:
            return exc  # not the file system's refusal: leave it as it is
    if exc.errno == code and exc.filename is not None:
        return exc
    return OSError(code, os.strerror(code), str(path))


def raise_named(exc: OSError, path: Path) -> NoReturn:
    """Raise :func:`named` of ``exc`` (chained to it when it is a new error)."""
    err = named(exc, path)
    if err is exc:
        raise exc
    raise err from exc


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer can still use on the file system of ``path`` (or of its nearest
    existing parent); None when that cannot be asked."""
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize
    return None


def disk_full_error(exc: OSError, path: Path | None = None, what: str = "") -> DiskFullError:
    """The one message for a full disk: the path, the OS's words and errno name, what is free there."""
    where = path if path is not None else (Path(str(exc.filename)) if exc.filename else None)
    code = errno.errorcode.get(exc.errno or 0, "ENOSPC")
    cause = f"{exc.strerror or 'No space left on device'} ({code})"
    free = free_bytes(where) if where is not None else None
    room = f"; {free} bytes free there now" if free is not None else ""
    subject = what or (
        f"{where} could not be written" if where is not None else "a file could not be written"
    )
    return DiskFullError(
        f"{subject}: {cause}{room}",
        "free space on that file system (or point --work-dir / $TOOLCHAIN_CACHE at another disk) "
        "and run again",
    )
