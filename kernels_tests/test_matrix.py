"""One test per cell of the matrix (ids ``<arch>-<type>-<backend>``); see conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolchain.coverage import CellRunner, CellSpec
from toolchain.coverage.reports.write import cell_json


def test_cell(
    cell_spec: CellSpec,
    cell_runner: CellRunner,
    cell_results_dir: Path,
    fail_on: tuple[str, ...],
    record_property: pytest.RecordProperty,
) -> None:
    cell = cell_runner.run(cell_spec)
    (cell_results_dir / f"{cell.id}.json").write_text(json.dumps(cell_json(cell)))
    record_property("status", cell.status)
    record_property("reason", cell.reason)
    for op in cell.unsupported_ops[:20]:
        record_property("unsupported", op.key)
    if cell.status in fail_on:
        evidence = "\n".join(e for c in cell.checks for e in c.evidence)
        pytest.fail(f"{cell.status}: {cell.reason}\n{evidence}", pytrace=False)
    if cell.status in ("unverifiable", "not-applicable"):
        pytest.skip(f"{cell.status}: {cell.reason}")
