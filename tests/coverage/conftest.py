"""Fixtures of the coverage tests: a fake build of test doubles, and the real build's coverage tools."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from toolchain.coverage.records import ModelInput

ROOT = Path(__file__).resolve().parents[2]
FAKE_TOOL = ROOT / "fixtures" / "coverage" / "fake_tool.py"
FAKE_NAMES = (
    "test-export-graph-ops",
    "test-backend-ops",
    "test-llama-archs",
    "llama-completion",
    "llama-eval-callback",
    "llama-quantize",
)


def make_fake_build(dest: Path) -> Path:
    """A build dir whose bin/ holds the test double under every tool's name."""
    bin_dir = dest / "blas-fake" / "bin"
    bin_dir.mkdir(parents=True)
    for name in FAKE_NAMES:
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\n" + FAKE_TOOL.read_text())
        tool.chmod(0o755)
    return bin_dir.parent


@pytest.fixture
def fake_build(tmp_path: Path) -> Path:
    return make_fake_build(tmp_path)


@pytest.fixture
def fake_models(tmp_path: Path) -> tuple[ModelInput, ...]:
    out = []
    for arch in ("llama", "qwen3", "gemma3"):
        path = tmp_path / "models" / f"{arch}.gguf"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"GGUF fake")
        out.append(ModelInput(arch, "f16", path, "fixture"))
    return tuple(out)


@pytest.fixture
def pids(tmp_path: Path) -> Path:
    """The folder the test doubles record a file per process in (their ``FAKE_PIDS``)."""
    path = tmp_path / "pids"
    path.mkdir()
    return path


def no_children_left(pid_dir: Path) -> list[int]:
    """Pids recorded by the test doubles that are still alive (zombies of ours excluded)."""
    alive = []
    for f in pid_dir.iterdir():
        pid = int(f.name)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat")
        if stat.is_file() and stat.read_text().split(") ", 1)[-1].startswith("Z"):
            continue
        alive.append(pid)
    return alive


__all__ = ["FAKE_NAMES", "make_fake_build", "no_children_left", "shutil"]
