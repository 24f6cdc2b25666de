"""What every fault case asserts: its exit code, a message naming the problem and the next step,
nothing outside the work dir changed, no process left behind, and a time bound."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from toolchain.config import Settings


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_relative_to(skip):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def fault(settings: Settings) -> Iterator[Callable[..., None]]:
    """``fault(result, code, *words, started=t0, bound=s)`` checks one failed run."""
    (settings.project_root / "user-notes.txt").write_text("the user's own file\n")
    before = _snapshot(settings.project_root, settings.work_dir)

    def check(
        result: subprocess.CompletedProcess[str], code: int, *words: str, started: float, bound: float
    ) -> None:
        assert result.returncode == code, result.stderr[-3000:]
        for word in words:
            assert word in result.stderr, f"{word!r} not in: {result.stderr[-2000:]}"
        if code not in (0, 60):  # an error says what to do next
            assert "->" in result.stderr, result.stderr[-2000:]
        assert time.monotonic() - started < bound
        assert _snapshot(settings.project_root, settings.work_dir) == before, (
            "files outside the work dir changed"
        )
        marker = str(settings.project_root)
        left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
        assert not left, f"processes left behind: {left}"

    yield check
