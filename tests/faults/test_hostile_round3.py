"""Hostile input, round three (issue #32): each class's reproduction, through the command line
where the issue reproduced it. Inputs are written from the formats' own definitions (GGUF from
tests/doctor/ggufbytes.py, ops files from the tree's own enums), never users' text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.doctor import ggufbytes as g
from toolchain.config import Settings


def run_cli(
    settings: Settings, *args: str, github: bool = False, cwd: Path | None = None, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOOLCHAIN_CACHE": str(settings.cache_dir), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_ACTIONS", None)
    if github:
        env["GITHUB_ACTIONS"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "toolchain", *args],
        cwd=cwd or settings.project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=stdin,
    )


def _workflow_commands(text: str) -> list[str]:
    """Lines the GitHub Actions runner would run as workflow commands (it trims leading space)."""
    return [line for line in text.splitlines() if line.lstrip().startswith(("::", "##["))]


# --- A: hostile text never forges a workflow command or a console line of ours -------------------
FORGED = "evil\n::error title=pwn::owned\n  ::add-mask::x\n✓ doctor: no problem found"


def test_a_gguf_name_cannot_forge_a_workflow_command(settings: Settings) -> None:
    path = settings.project_root / "x.gguf"
    path.write_bytes(g.model(extra=[g.kv("general.name", g.STR, FORGED)]))
    done = run_cli(settings, "doctor", "--gguf", str(path), github=True)
    output = done.stdout + done.stderr
    ours = _workflow_commands(output)
    assert all(not ("pwn" in line or "add-mask" in line) for line in ours), output
    assert "\\x3a:error title=pwn::owned" in output, output  # the name is still shown, escaped
    assert [line for line in output.splitlines() if line.startswith("✓ doctor")] == [
        "✓ doctor: no problem found"
    ], output  # ours, once: the name's forged copy is shown escaped


def test_a_path_with_a_newline_cannot_forge_a_workflow_command(settings: Settings) -> None:
    hostile = settings.project_root / "b\n::error title=pwn::owned"
    (hostile / "bin").mkdir(parents=True)
    done = run_cli(settings, "verify", str(hostile), "--no-runtime", github=True)
    output = done.stdout + done.stderr
    assert not [
        line for line in _workflow_commands(output) if "pwn" in line and not line.startswith("::error title=")
    ], output
    assert "\\x3a:error title=pwn" in output or "%0A%3A" in output or "%0A::error" in output, output
