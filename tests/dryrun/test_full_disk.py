"""`llama-toolchain dryrun run` on a full disk (issue #32 I): "disk full" naming the records file
and ENOSPC (exit 23, as verify and the build), never "report this as a harness bug" nor "keeps
ending at case …", and no cut-short records left behind.

The disk is a real tmpfs (tests/fulldisk.py), filled so that the run's checked ops file, profiles
and lock fit but only about half of its records do: the failure is the native program's own write
(its errno, reported by the program), not one of Python's. The model is the real tiny Qwen3-MoE
export of fixtures/dryrun/moe (its README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.dryrun.conftest import FIXTURES
from tests.fulldisk import fill, free_bytes, leftovers, small_disk
from toolchain.dryrun.build import DryRunProgram

OPS = FIXTURES / "moe" / "qwen3moe-k8-f16-prompt.ops"


def _dryrun(project: Path, tree: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toolchain", "dryrun", "run", "--tree", str(tree)]
        + ["--ops", str(OPS), "--fail-on", "none"],  # the four default profiles
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOOLCHAIN_CACHE": str(cache), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_records_on_a_full_disk_are_disk_full_not_a_harness_bug(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", size_mib=8) as disk:
        project = disk / "project"
        project.mkdir()
        empty = free_bytes(disk)
        whole = _dryrun(project, tree_0336, dryrun_cache)  # what one run writes, measured
        assert whole.returncode == 0, whole.stderr
        folder = project / ".toolchain" / "dryrun" / "dryrun-ops"
        records = folder / "dryrun-records.jsonl"
        size = records.stat().st_size
        used = empty - free_bytes(disk)
        report = project / ".toolchain" / "reports" / "dryrun.json"
        others = used - size - report.stat().st_size
        assert size > 32 << 10, size  # half of them is several pages of the tmpfs
        shutil.rmtree(project / ".toolchain")

        fill(disk, leave=others + size // 2)
        done = _dryrun(project, tree_0336, dryrun_cache)
        err = " ".join(done.stderr.split())
        assert done.returncode == 23, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert "harness bug" not in err and "keeps ending" not in err, err
        assert (
            f"the dry run could not write its records to {records}: No space left on device (ENOSPC)" in err
        )
        assert not records.exists(), "the cut-short records are removed"
        assert leftovers(project) == []
        assert not report.exists()

        # no byte free: the first file Python writes for the program (the checked ops) is named
        # (the work dir's lock file is kept: with nothing at all free, it is the one named)
        shutil.rmtree(project / ".toolchain" / "dryrun")
        fill(disk)
        done = _dryrun(project, tree_0336, dryrun_cache)
        err = " ".join(done.stderr.split())
        assert done.returncode == 23 and "Traceback" not in done.stderr, done.stderr
        assert f"{folder / 'ops-checked.txt'} could not be written: No space left on device (ENOSPC)" in err
        assert [p.name for p in folder.iterdir()] == [] and leftovers(project) == []

        # nothing free and no lock file yet: the lock's pid cannot be written, said before any work
        shutil.rmtree(project / ".toolchain")
        fill(disk)
        done = _dryrun(project, tree_0336, dryrun_cache)
        err = " ".join(done.stderr.split())
        assert done.returncode == 23 and "Traceback" not in done.stderr, done.stderr
        assert f"{project / '.toolchain' / '.lock'} could not be written: No space left on device" in err
