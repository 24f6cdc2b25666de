"""toolchain/core/diskfull.py on a real full tmpfs (tests/fulldisk.py): the errno a writer lost is
asked of the file system, including when the disk has a little room left (a short write first)."""

from __future__ import annotations

import errno
from pathlib import Path

from tests.fulldisk import fill, small_disk
from toolchain.core.diskfull import disk_full_error, named, write_errno


def test_a_lost_errno_is_asked_of_the_file_system(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        assert write_errno(disk) is None  # room: no refusal, nothing left behind
        assert [p.name for p in disk.iterdir()] == []
        fill(disk, leave=8 << 10)  # less than the probe's 64 KiB: a short write, then ENOSPC
        assert write_errno(disk) == errno.ENOSPC
        lost = OSError("4096 requested and 1208 written")  # numpy's short write: no errno
        err = named(lost, disk / "model.gguf")
        assert (err.errno, err.filename) == (errno.ENOSPC, str(disk / "model.gguf"))
        message = disk_full_error(err).message
        assert message.startswith(
            f"{disk / 'model.gguf'} could not be written: No space left on device (ENOSPC)"
        )
        assert [p.name for p in disk.iterdir()] == ["fill"]


def test_an_error_that_is_not_the_file_systems_is_left_as_it_is(tmp_path: Path) -> None:
    lost = OSError("short write")
    assert named(lost, tmp_path / "x") is lost  # the directory takes writes: not a full disk
    own = OSError(errno.ENOSPC, "No space left on device", "/elsewhere")
    assert named(own, tmp_path / "x") is own  # has both: kept
