"""The cell cache: a cell whose inputs (tools, model, options, harness) are all unchanged is reused
and says so, with the verdict it had; a changed model or tool runs it again; a hang is never
reused. Test doubles (fixtures/coverage/fake_tool.py) stand in for the tools and record each run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tests.coverage.test_isolation import _request as isolation_request
from toolchain.coverage import CoverageRequest, plan, run_matrix
from toolchain.coverage.records import Cell, ModelInput


def _request(tmp: Path, build: Path, models: tuple[ModelInput, ...], env: dict[str, str]) -> CoverageRequest:
    return replace(isolation_request(tmp, build, models, env), cell_cache=tmp.parent / "cells")


def _run(tmp: Path, build: Path, models: tuple[ModelInput, ...], env: dict[str, str]) -> tuple[Cell, ...]:
    request = _request(tmp, build, models, env)
    return run_matrix(request, plan(request)).cells


def _runs(pids: Path) -> int:
    return sum(1 for _ in pids.iterdir())


def _verdicts(cells: tuple[Cell, ...]) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    return {c.id: (c.status, c.reason, tuple(k.status for k in c.checks)) for c in cells}


def test_unchanged_cells_are_reused_and_said_to_be(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...], pids: Path
) -> None:
    env = {"FAKE_CRASH": "BLAS", "FAKE_PIDS": str(pids)}
    first = _run(tmp_path / "a", fake_build, fake_models[:2], env)
    assert not any(c.reused for c in first) and {c.status for c in first} == {"pass", "crash"}
    before = _runs(pids)
    plan(_request(tmp_path / "p", fake_build, fake_models[:2], env))  # detection asks the tools for --help
    detection = _runs(pids) - before
    # a fresh work dir, the same cache (a warm CI job): no cell runs a tool, every verdict the same
    again = _run(tmp_path / "b", fake_build, fake_models[:2], env)
    assert all(c.reused for c in again)
    assert _verdicts(again) == _verdicts(first)
    assert _runs(pids) - before == 2 * detection
    # one model changed: only its cells run again
    changed = fake_models[0].path
    changed.write_bytes(changed.read_bytes() + b" changed")
    third = _run(tmp_path / "c", fake_build, fake_models[:2], env)
    assert {c.id for c in third if not c.reused} == {"llama-f16-CPU", "llama-f16-BLAS"}
    assert _verdicts(third) == _verdicts(first)


def test_a_changed_tool_runs_every_cell_again(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...]
) -> None:
    env: dict[str, str] = {}
    _run(tmp_path / "a", fake_build, fake_models[:1], env)
    tool = fake_build / "bin" / "test-backend-ops"
    tool.write_text(tool.read_text() + "\n# rebuilt\n")
    again = _run(tmp_path / "b", fake_build, fake_models[:1], env)
    assert not any(c.reused for c in again)


def test_a_hang_is_not_reused(tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...]) -> None:
    env = {"FAKE_HANG": "BLAS"}
    request_models = (replace(fake_models[0]),)
    first = _run(tmp_path / "a", fake_build, request_models, env)
    assert next(c for c in first if c.backend == "BLAS").status == "hang"
    again = {c.backend: c for c in _run(tmp_path / "b", fake_build, request_models, env)}
    assert again["CPU"].reused and not again["BLAS"].reused
