"""Opening the files doctor is given: regular files only, refused at once otherwise.

A FIFO, a device, a socket or a directory given as the log or the GGUF would block forever (a
FIFO with no writer), never end (``/dev/zero``) or fail obscurely. The file is opened without
blocking and its type read from the open descriptor (no race between a check and the open).
"""

from __future__ import annotations

import io
import os
import select
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import ToolchainError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def open_regular(path: Path, error: type[ToolchainError], what: str, hint: str) -> BinaryIO:
    """``path`` opened for binary reading; ``error`` when it is missing, unreadable or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror or exc}", hint) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise error(f"the {what} {path} is {kind}, not a regular file: refused", hint)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


POLL_SECONDS = 0.25


def read_chunks(stream: BinaryIO, block: int) -> Iterator[bytes]:
    """The chunks of ``stream`` until its end (each at most ``block`` bytes).

    A pipe or a terminal (the log on stdin) is read one ready chunk at a time after a ``select``
    with a short timeout, so Ctrl-C stops the read. A plain blocking ``read()`` is not interrupted
    when the signal lands on another thread, or just before the read begins (CPython checks for
    signals between bytecodes, not before the system call): doctor then waited for more log
    forever. The stream must not have been read from before (its buffer is bypassed)."""
    try:
        fd = stream.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd, regular = -1, True  # in memory (BytesIO): nothing blocks
    if regular:
        while chunk := stream.read(block):
            yield chunk
        return
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
        if not ready:
            continue  # the interpreter runs a pending signal's handler here
        chunk = os.read(fd, block)
        if not chunk:
            return
        yield chunk
