"""``llama-toolchain oracle predict`` / ``oracle validate`` (through toolchain.cli.main)."""

from __future__ import annotations

import argparse
import json
import os
import re
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


def test_an_unchanged_validation_is_reused_and_said_to_be(  # type: ignore[no-untyped-def]
    run, tree_0336: Path, tree_0320: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("oracle", "validate", "--tree", str(tree_0336), "--older-tree", str(tree_0320))
    assert run(*args, "--fresh")[0] == 0
    first = capsys.readouterr()
    assert "oracle validation reused" not in first.out + first.err
    code, reports = run(*args)
    again = capsys.readouterr()
    assert code == 0 and "oracle validation reused" in again.out + again.err
    data = json.loads((reports / "oracle-validation.json").read_text())
    # the kept validation this run named (the cache holds the other tests' validations too)
    name = re.search(r"oracle validation reused \((\w+\.json)\)", again.out + again.err)
    assert name is not None, again.out + again.err
    kept = Path(os.environ["TOOLCHAIN_CACHE"]) / "oracle" / "validations" / name[1]
    assert data == json.loads(kept.read_text()) and data["ok"] is True


def _fake_tree(root: Path) -> Path:
    for rel, text in (
        ("ggml/src/ggml-metal/ggml-metal-device.m", "// supports_op"),
        ("tests/test-backend-ops.cpp", "// cases"),
        ("docs/ops/Metal.csv", "backend_name,op_name"),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_validation_key_names_every_input(tmp_path: Path) -> None:
    """The trees' sources, docs/ops tables, the profiles, the agreement asked for and the build's
    test-backend-ops with its libraries each change the key a validation is kept under."""
    tree, older = _fake_tree(tmp_path / "tree"), _fake_tree(tmp_path / "older")
    build = tmp_path / "build"
    (build / "bin").mkdir(parents=True)
    (build / "bin" / "test-backend-ops").write_text("tbo")
    (build / "bin" / "libggml-base.so").write_text("lib")
    args = argparse.Namespace(profiles=None, min_agreement=0.99)

    def key(**changed: object) -> str:
        return oracle_cli._validation_key(argparse.Namespace(**{**vars(args), **changed}), tree, older, build)

    keys = [key(), key(profiles="apple7"), key(min_agreement=0.5)]
    for path in (
        tree / "docs/ops/Metal.csv",
        tree / "ggml/src/ggml-metal/ggml-metal-device.m",
        older / "tests/test-backend-ops.cpp",
        build / "bin/libggml-base.so",
        build / "bin/test-backend-ops",
    ):
        path.write_text(path.read_text() + " changed")
        keys.append(key())
    assert len(set(keys)) == len(keys)
    assert key() == keys[-1]  # nothing changed since: the same key
    (tree / "README.md").write_text("not read by the validation")
    assert key() == keys[-1]


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
