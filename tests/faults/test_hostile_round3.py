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


# --- K, J: coverage merge with a baseline; merged reports valid and inert -------------------------
BASELINE = ROOT / "fixtures" / "coverage" / "baseline-0.3.20.json"  # a real run of 0.3.20 (its README)


def _shard(tmp: Path, cells: slice, **changes: object) -> Path:
    data = json.loads(BASELINE.read_text())
    data["cells"] = data["cells"][cells]
    for cell in data["cells"]:
        cell.update(changes)
    path = tmp / "shard.json"
    path.write_text(json.dumps(data))
    return path


def test_k_a_baseline_with_cells_missing_is_never_safe_to_bump(settings: Settings, tmp_path: Path) -> None:
    small = _shard(tmp_path, slice(0, 2))
    done = run_cli(
        settings, "coverage", "merge", str(small), "--baseline", str(BASELINE), "--fail-on", "none"
    )
    report = json.loads((settings.work_dir / "reports" / "coverage.json").read_text())
    assert report["baseline"]["safe_to_bump"] is False, report["baseline"]
    assert "6 of the baseline's 8 cells were not compared" in report["baseline"]["verdict"]
    assert done.returncode == 50 and "NOT safe to bump" in done.stderr, done.stderr


def test_k_the_whole_baseline_compared_is_still_safe(settings: Settings, tmp_path: Path) -> None:
    whole = _shard(tmp_path, slice(None))
    run_cli(settings, "coverage", "merge", str(whole), "--baseline", str(BASELINE), "--fail-on", "none")
    report = json.loads((settings.work_dir / "reports" / "coverage.json").read_text())
    assert report["baseline"]["safe_to_bump"] is True and not report["baseline"]["missing_cells"]


@pytest.mark.parametrize("number", ["1e999", "NaN", "-Infinity"])
def test_j_a_shard_with_a_number_json_cannot_hold_is_refused(
    settings: Settings, tmp_path: Path, number: str
) -> None:
    path = _shard(tmp_path, slice(0, 2))
    path.write_text(path.read_text().replace('"seconds": ', f'"seconds": {number}, "x": ', 1))
    done = run_cli(settings, "coverage", "merge", str(path), "--fail-on", "none")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "finite" in done.stderr or "NaN / Infinity" in done.stderr, done.stderr
    out = settings.work_dir / "reports" / "coverage.json"
    assert not out.exists() or json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))


def test_j_a_deeply_nested_shard_is_refused_cleanly(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    done = run_cli(settings, "coverage", "merge", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "nested deeper" in done.stderr, (
        done.stderr
    )


def test_j_hostile_cell_text_keeps_junit_well_formed_and_markdown_inert(
    settings: Settings, tmp_path: Path
) -> None:
    from xml.etree import ElementTree as ET

    data = json.loads(BASELINE.read_text())
    data["cells"] = data["cells"][:2]
    data["cells"][0]["id"] += "\x01\x1b[2J"
    data["cells"][0]["reason"] = "<script>alert(1)</script>\n# Verdict: safe <img src=x onerror=alert(1)>"
    path = tmp_path / "shard.json"
    path.write_text(json.dumps(data))
    done = run_cli(settings, "coverage", "merge", str(path), "--fail-on", "none")
    reports = settings.work_dir / "reports"
    assert "Traceback" not in done.stderr, done.stderr
    ET.fromstring((reports / "junit-coverage.xml").read_text())  # well-formed
    md = (reports / "coverage.md").read_text()
    assert "<script" not in md and "<img" not in md and "&lt;script>" in md
    assert not any(line.startswith("# Verdict") for line in md.splitlines())
