"""``llama-toolchain oracle predict`` / ``oracle validate`` (through toolchain.cli.main)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.oracle.conftest import FIXTURES
from toolchain import cli
from toolchain.oracle import cli as oracle_cli


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, probes_for_validation: Path):  # type: ignore[no-untyped-def]
    """main() with a parser holding the oracle commands (whether or not STAGE_COMMANDS lists them)."""

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="llama-toolchain")
        sub = parser.add_subparsers(dest="command", required=True)
        oracle_cli.add_parser(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    monkeypatch.setenv("TOOLCHAIN_CACHE", str(probes_for_validation))
    project = tmp_path / "project"
    project.mkdir()

    def go(*args: str) -> tuple[int, Path]:
        return cli.main([*args, "--project", str(project)]), project / ".toolchain" / "reports"

    return go


def test_validate_writes_the_report(run, tree_0336: Path, tree_0320: Path) -> None:  # type: ignore[no-untyped-def]
    code, reports = run("oracle", "validate", "--tree", str(tree_0336), "--older-tree", str(tree_0320))
    assert code == 0
    data = json.loads((reports / "oracle-validation.json").read_text())
    assert data["kind"] == "oracle-validation" and data["schema_version"] == 1
    assert data["observed_by"] == "predicted-from-source" and data["ok"] is True
    assert data["metal"]["matched"] >= 15_000 and data["metal"]["unexplained"] == 0
    assert data["normalisation"] and data["renames"][0]["old"] == "type_KV"
    assert [t["backend"] for t in data["measured"]] == ["BLAS", "CPU"]


def test_validate_fails_with_its_exit_code(run, tree_0336: Path, tree_0320: Path) -> None:  # type: ignore[no-untyped-def]
    code, reports = run(
        "oracle",
        "validate",
        "--tree",
        str(tree_0336),
        "--older-tree",
        str(tree_0320),
        "--profiles",
        "paravirtual",
    )
    assert code == 71
    assert json.loads((reports / "oracle-validation.json").read_text())["ok"] is False


def test_predict_writes_the_report(run, tree_0336: Path) -> None:  # type: ignore[no-untyped-def]
    code, reports = run(
        "oracle",
        "predict",
        "--tree",
        str(tree_0336),
        "--ops",
        str(FIXTURES / "tiny-llama-0.3.36.ops.txt"),
        "--profiles",
        "apple7,paravirtual",
    )
    assert code == 0
    data = json.loads((reports / "oracle-predictions.json").read_text())
    assert data["kind"] == "oracle-predictions"
    assert [p["column"] for p in data["profiles"]] == [
        "metal-predicted:apple7",
        "metal-predicted:paravirtual",
    ]


def test_not_a_tree_is_a_usage_error(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _ = run("oracle", "validate", "--tree", str(tmp_path))
    assert code == 2
