"""Sharding the matrix: N slices merged equal the unsharded run, cell for cell; merges of reports
that do not belong together are refused. The CLI runs for real over the test doubles of
fixtures/coverage/fake_tool.py (verdicts `observed_by: fixture`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.coverage.conftest import ROOT, make_fake_build
from toolchain.coverage.engine.run import CoverageRequest, plan
from toolchain.coverage.engine.shard import assign, parse_shard, shard_plan
from toolchain.coverage.records import ModelInput
from toolchain.errors import UsageError

ARCHS = ("llama", "qwen3", "gemma3", "phi3", "mistral")


def _models(tmp: Path) -> list[str]:
    out = []
    for arch in ARCHS:
        for wtype in ("f16", "q8_0"):
            path = tmp / "models" / f"{arch}-{wtype}.gguf"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"GGUF fake")
            out += ["--model", f"{arch}:{wtype}:{path}"]
    return out


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    project.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(
        [sys.executable, "-m", "toolchain", "coverage", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _comparable(report: Path, project: Path) -> dict[str, Any]:
    """Cells by id, without what differs between two runs of the same cell (times, log paths, and
    whether the cell cache supplied it: the shards reuse what the unsharded run just computed)."""
    data = json.loads(report.read_text())
    out = {}
    for cell in data["cells"]:
        cell = json.loads(json.dumps(cell).replace(str(project), "<project>"))
        cell.pop("durations", None)
        cell.pop("reused", None)
        for check in cell["checks"]:
            for volatile in ("seconds", "log", "command"):
                check.pop(volatile, None)
        out[cell["id"]] = cell
    return out


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, list[str]]:
    return make_fake_build(tmp_path / "build"), _models(tmp_path)


def test_shards_merged_equal_the_unsharded_run_cell_for_cell(
    tmp_path: Path, fake: tuple[Path, list[str]]
) -> None:
    build, models = fake
    common = ["--build-dir", str(build), *models, "-b", "CPU,BLAS", "--predict", "none", "--fail-on", "none"]
    whole = tmp_path / "whole"
    done = _cli(whole, *common)
    assert done.returncode == 0, done.stderr
    expected = _comparable(whole / ".toolchain" / "reports" / "coverage.json", whole)
    assert len(expected) == len(ARCHS) * 2 * 2

    shard_reports = []
    sizes = []
    for k in (1, 2, 3):
        project = tmp_path / f"shard{k}"
        done = _cli(project, *common, "--shard", f"{k}/3")
        assert done.returncode == 0, done.stderr
        report = project / ".toolchain" / "reports" / "coverage.json"
        data = json.loads(report.read_text())
        assert data["shard"] == f"{k}/3"
        sizes.append(len(data["cells"]))
        shard_reports.append(report)
    assert sum(sizes) == len(expected) and max(sizes) - min(sizes) <= 2, f"balanced: {sizes}"

    merged = tmp_path / "merged"
    done = _cli(merged, "merge", *map(str, shard_reports), "--fail-on", "none")
    assert done.returncode == 0, done.stderr
    out = merged / ".toolchain" / "reports"
    got: dict[str, Any] = {}
    for k, report in enumerate(shard_reports, 1):
        for cid, cell in _comparable(report, tmp_path / f"shard{k}").items():
            got[cid] = cell
    merged_cells = {c["id"]: c for c in json.loads((out / "coverage.json").read_text())["cells"]}
    assert set(merged_cells) == set(expected)
    assert got == expected, "each cell of the shards is the unsharded run's cell"
    merged_data = json.loads((out / "coverage.json").read_text())
    whole_data = json.loads((whole / ".toolchain" / "reports" / "coverage.json").read_text())
    assert merged_data["counts"] == whole_data["counts"] and merged_data["complete"] is True
    assert [c["id"] for c in merged_data["cells"]] == [c["id"] for c in whole_data["cells"]], "same order"
    for name in ("coverage.md", "coverage.html", "junit-coverage.xml", "coverage-summary.md"):
        assert (out / name).is_file()


def test_merge_refuses_what_does_not_belong_together(tmp_path: Path, fake: tuple[Path, list[str]]) -> None:
    build, models = fake
    common = ["--build-dir", str(build), *models, "-b", "CPU", "--predict", "none", "--fail-on", "none"]
    reports = []
    for k in (1, 2):
        project = tmp_path / f"s{k}"
        assert _cli(project, *common, "--shard", f"{k}/2").returncode == 0
        reports.append(project / ".toolchain" / "reports" / "coverage.json")

    def merge(*paths: Path) -> subprocess.CompletedProcess[str]:
        return _cli(tmp_path / "m", "merge", *map(str, paths))

    twice = merge(reports[0], reports[0])
    assert twice.returncode == 2 and "given twice" in twice.stderr
    other = json.loads(reports[1].read_text())
    other["source"]["commit"] = "f" * 40
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(other))
    refused = merge(reports[0], foreign)
    assert refused.returncode == 2 and "different tree (commit)" in refused.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert merge(garbage).returncode == 2
    wrong_kind = tmp_path / "kind.json"
    wrong_kind.write_text(json.dumps({"kind": "convert", "results": []}))
    assert merge(wrong_kind).returncode == 2
    missing = merge(reports[0])
    assert missing.returncode == 50 and "incomplete" in missing.stderr and "2/2" in missing.stderr
    data = json.loads((tmp_path / "m" / ".toolchain" / "reports" / "coverage.json").read_text())
    assert data["complete"] is False


def test_shard_arguments_and_assignment_are_deterministic(tmp_path: Path) -> None:
    for bad in ("0/2", "3/2", "1/0", "a/b", "1", "-1/2", "1/99999"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    assert parse_shard("2/4") == (2, 4)
    build = make_fake_build(tmp_path / "b")
    models = []
    for arch in ARCHS:
        p = tmp_path / f"{arch}.gguf"
        p.write_bytes(b"GGUF")
        models.append(ModelInput(arch, "f16", p, "given"))
    request = CoverageRequest(
        build_dir=build, reports_dir=tmp_path / "r", scratch_dir=tmp_path / "s", models=tuple(models)
    )
    planned = plan(request)
    assert assign(planned, 2) == assign(plan(request), 2)
    slices = [shard_plan(planned, k, 2) for k in (1, 2)]
    assert {s.id for sl in slices for s in sl.specs} == {s.id for s in planned.specs}
    assert not {s.id for s in slices[0].specs} & {s.id for s in slices[1].specs}
