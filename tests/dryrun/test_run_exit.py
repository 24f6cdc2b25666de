"""`dryrun run`'s exit code: a finding a Mac would die on is never a silent exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.dryrun.conftest import FIXTURES
from toolchain.dryrun.build import DryRunProgram

MOE = FIXTURES / "moe"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def dryrun_cli(program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path) -> Run:
    """`llama-toolchain dryrun run --tree <pin> ARGS` in tmp_path, on the built program."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "toolchain", "dryrun", "run", "--tree", str(tree_0336), *args],
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "TOOLCHAIN_CACHE": str(dryrun_cache),
                "NO_COLOR": "1",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def test_a_missing_kernel_fails_the_run_naming_the_column_and_batch(dryrun_cli: Run, tmp_path: Path) -> None:
    generation = ["--generation-ops", str(MOE / "qwen3moe-k3-f16-generation.ops")]
    done = dryrun_cli(
        "--profiles", "apple9", *generation, "--prompt-ops", str(MOE / "qwen3moe-k3-f16-prompt.ops")
    )
    assert done.returncode == 73, done.stderr
    err = " ".join(done.stderr.split())
    assert "metal-dryrun:apple9 (prompt batch): 2 missing-kernel" in err
    assert "metal-dryrun:apple9 (generation batch)" not in err
    assert "--fail-on none" in err
    assert (tmp_path / ".toolchain" / "reports" / "dryrun.json").is_file()


def test_fail_on_none_reports_without_failing(dryrun_cli: Run) -> None:
    done = dryrun_cli(
        "--profiles", "apple9", "--ops", str(MOE / "qwen3moe-k3-f16-prompt.ops"), "--fail-on", "none"
    )
    assert done.returncode == 0, done.stderr
    assert "missing-kernel" in done.stdout + done.stderr


def test_a_clean_model_exits_0(dryrun_cli: Run) -> None:
    done = dryrun_cli("--profiles", "apple9", "--ops", str(MOE / "qwen3moe-k8-f16-prompt.ops"))
    assert done.returncode == 0, done.stderr


def test_nothing_encoded_is_never_exit_0(dryrun_cli: Run, tmp_path: Path) -> None:
    # paravirtual (no simdgroup mm) rejects the model's MUL_MAT_ID at the prompt batch (lines 18, 19)
    lines = (MOE / "qwen3moe-k8-f16-prompt.ops").read_text().splitlines()
    moe = tmp_path / "moe.ops"
    moe.write_text(f"{lines[17]}\n{lines[18]}\n")
    done = dryrun_cli("--profiles", "paravirtual", "--ops", str(moe), "--fail-on", "none")
    assert done.returncode == 73, done.stderr
    assert "nothing was encoded" in " ".join(done.stderr.split())
    assert "unsupported 2" in done.stdout + done.stderr


def test_an_unknown_verdict_is_a_usage_error(dryrun_cli: Run) -> None:
    done = dryrun_cli("--ops", str(MOE / "qwen3moe-k8-f16-prompt.ops"), "--fail-on", "crash")
    assert done.returncode == 2, done.stderr
    assert "unknown verdict(s) in --fail-on: crash" in done.stderr
