"""Every test file under tests/ is collected by the configured run (pytest skips some folder
names by default: `build`, `dist`; a folder renamed into one of them would silently stop running)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_file_under_tests_is_collected() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    collected = {line.split("::", 1)[0] for line in done.stdout.splitlines() if "::" in line}
    on_disk = {
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py") if "__pycache__" not in p.parts
    }
    assert on_disk, "no test files found under tests/"
    missing = sorted(on_disk - collected)
    assert not missing, f"test files the configured run does not collect: {missing}"
