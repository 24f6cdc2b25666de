"""`llama-toolchain verify` on a full disk (issue #32 D, I): one message naming the file that could
not be written and the cause (ENOSPC), exit 23 (DiskFullError, the class of the build's and
coverage merge's full disk), no traceback, and no temporary left beside the report.

The disk is a real tmpfs filled for real (tests/fulldisk.py); the builds are this machine's own
python (an ELF no one here wrote) and the real BLAS build of llama.cpp (``blas_dir``).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.fulldisk import fill, leftovers, small_disk
from toolchain.verify.probe_model import probe_model_name, write_probe_model


def _verify(project: Path, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toolchain", "verify", str(path), *args, "--work-dir", str(project / "work")],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _assert_disk_full(done: subprocess.CompletedProcess[str], written: str) -> None:
    err = done.stderr
    assert done.returncode == 23, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "error (disk full)" in err and "(ENOSPC)" in err, err
    assert f"{written} could not be written: No space left on device" in " ".join(err.split()), err


def test_the_report_on_a_full_disk_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    python = Path(os.path.realpath(sys.executable))  # a real ELF program
    with small_disk(tmp_path / "disk") as disk:
        project = disk / "project"
        project.mkdir()
        fill(disk)
        done = _verify(project, python, "--profile", "cpu", "--no-runtime")
        _assert_disk_full(done, str(project / "work" / "reports" / "verify.json"))
        assert leftovers(project) == []


def test_the_probe_model_cut_short_is_named_enospc_and_removed(tmp_path: Path) -> None:
    """numpy's short write (the GGUF writer's tensors) carries no errno: the file system is asked,
    and the partial model goes."""
    with small_disk(tmp_path / "disk") as disk:
        fill(disk, leave=96 << 10)
        dest = disk / "logs" / probe_model_name()
        with pytest.raises(OSError) as info:
            write_probe_model(dest)
        assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(dest)), info.value
        assert list((disk / "logs").iterdir()) == []


@pytest.mark.slow
def test_the_run_time_probe_on_a_full_disk_is_disk_full_not_the_builds_fault(
    blas_dir: Path, tmp_path: Path
) -> None:
    """The real BLAS build: with no byte free the runner's first log cannot be written (that was
    'cannot be started', a verdict against the build); with 96 KiB free the logs fit but the probe
    model does not (that was a traceback from numpy's short write and a ``.tmp`` model left)."""
    with small_disk(tmp_path / "disk") as disk:
        project = disk / "project"
        project.mkdir()
        fill(disk, leave=96 << 10)
        done = _verify(project, blas_dir, "--profile", "blas")
        logs = project / "work" / "reports" / "verify-logs"
        _assert_disk_full(done, str(logs / probe_model_name()))
        assert leftovers(project) == [], "no temporary model left"
        assert not (project / "work" / "reports" / "verify.json").exists()

        (disk / "fill").unlink()
        for log in logs.iterdir():
            log.unlink()
        fill(disk)
        done = _verify(project, blas_dir, "--profile", "blas")
        _assert_disk_full(done, str(logs / "help.log"))
        assert "cannot be started" not in done.stderr and "not a program" not in done.stderr
        assert leftovers(project) == []
