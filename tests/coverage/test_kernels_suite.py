"""``kernels_tests/`` (the matrix as a pytest suite) on test doubles: what its report records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.coverage.conftest import ROOT, make_fake_build


def _second(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def test_started_at_is_the_start_of_the_session(tmp_path: Path) -> None:
    """The only cell is held open by its tool until the wall clock has moved past the second it was
    seen held in; the report's started_at must be no later than that second (an end-of-session
    stamp would be later)."""
    build = make_fake_build(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    hold = tmp_path / "hold"
    hold.mkdir()
    os.mkfifo(hold / "fifo")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
        "FAKE_HOLD": str(hold),
        "FAKE_HOLD_MATCH": "llama-dense.gguf",  # the model test-llama-archs -o made for the cell
    }
    env.pop("GITHUB_ACTIONS", None)
    launched = _second(datetime.now(UTC))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            str(ROOT / "kernels_tests"),
            "--project",
            str(project),
            "--build-dir",
            str(build),
            "--architectures",
            "llama",
            "--types",
            "f16",
            "--backends",
            "CPU",
            "--cell-timeout",
            "3600",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(hold.glob("held-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(hold.glob("held-*")), "the cell's tool was never held"
        held_at = _second(datetime.now(UTC))
        while _second(datetime.now(UTC)) <= held_at:  # the clock, not the run: the run is held
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            (hold / "released").touch()  # no later run is held
            with open(hold / "fifo", "w") as fifo:  # release the held tool
                fifo.write("go")
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    data = json.loads((project / ".toolchain" / "reports" / "coverage.json").read_text())
    started = datetime.strptime(data["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert launched <= started <= held_at, (launched, data["started_at"], held_at)
    assert len(data["cells"]) == 1
