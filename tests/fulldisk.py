"""A disk that fills up for real: a tmpfs of a few MiB, filled to a chosen number of free bytes.

The same technique as the coverage-merge and doctor-run full-disk tests of issue #32 I
(tests/faults/test_hostile_round3.py) and the build's (tests/faults/test_build_faults.py): the
kernel's own ENOSPC, no mock. Mounting needs root: CI runs as root; where mounting is refused the
test is skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(where: Path, size_mib: int = 2) -> Iterator[Path]:
    """``where`` with a ``size_mib`` MiB tmpfs mounted on it for the duration."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` until ``leave`` bytes are free (0: until the file system refuses a write)."""
    fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        todo = max(0, free_bytes(disk) - leave)
        while todo:
            todo -= os.write(fd, b"\0" * min(todo, 1 << 20))
        if leave:
            return
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def leftovers(root: Path) -> list[str]:
    """Temporaries and cut-short files under ``root``: hidden files (our atomic writers' and the
    probe model's temporaries start with '.') and ``*.tmp``."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and (p.name.startswith(".") or p.name.endswith(".tmp"))
        and not p.name.endswith(".lock")
    )
