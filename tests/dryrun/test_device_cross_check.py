"""When a real Metal device is in the matrix, its profile's dry run is compared with that device's
`test` column. The device cells are a fixture (fixtures/dryrun/device: hand-written in the tree's
log format, no device was used); the dry-run cells are a real dry run of the MoE ops."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.dryrun.conftest import FIXTURES, moe_run
from toolchain.coverage.metal.dryrun import cross_checked, dryrun_cells
from toolchain.coverage.records import Cell, CheckResult, ModelInput
from toolchain.coverage.reports.write import cell_from_json
from toolchain.dryrun.build import DryRunProgram

MOE = FIXTURES / "moe"
DEVICE = {
    c["id"]: cell_from_json(c)
    for c in json.loads((FIXTURES / "device" / "coverage-mtl0.json").read_text())["cells"]
}


@pytest.fixture(scope="module")
def dry_cells(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[Cell]:
    cells: list[Cell] = []
    for k in (3, 8):
        run = moe_run(tree_0336, dryrun_cache, tmp_path_factory.mktemp(f"k{k}"), k, ["apple9"])
        cells += dryrun_cells(
            ModelInput("qwen3moe", "f16", MOE / f"k{k}.gguf", "fixture", variant=f"k{k}"), run
        )
    return cells


def _check(cell: Cell) -> CheckResult:
    (check,) = [c for c in cell.checks if c.column == "cross-check"]
    return check


def test_the_dry_run_matches_the_device_on_both_models(dry_cells: list[Cell]) -> None:
    cells, notes = cross_checked(tuple(DEVICE.values()), list(dry_cells), {"MTL0": "apple9"})
    by = {c.id: c for c in cells}
    k3 = _check(by["qwen3moe-k3-f16-metal-dryrun:apple9"])
    assert k3.status == "pass" and "both name kernel_mul_mm_id_map0_ne20_3" in k3.summary
    assert k3.details["device_test"] == "crash" and k3.details["dry_run"] == "crash"
    assert _check(by["qwen3moe-k8-f16-metal-dryrun:apple9"]).status == "pass"
    assert notes == (
        "Dry-run cross-check: 2 model(s) on MTL0: the dry run matches the device's own test runs.",
    )


def test_a_device_crash_the_dry_run_missed_is_named(dry_cells: list[Cell]) -> None:
    # e.g. a Mac whose shipped library is older than its host code: top-8 dies there, not in the dry run
    crashed = DEVICE["qwen3moe-k3-f16-MTL0"]
    k8 = replace(
        crashed,
        id="qwen3moe-k8-f16-MTL0",
        variant="k8",
        checks=tuple(
            replace(c, evidence=tuple(e.replace("ne20_3", "ne20_8") for e in c.evidence))
            for c in crashed.checks
        ),
    )
    cells, notes = cross_checked((k8,), list(dry_cells), {"MTL0": "apple9"})
    check = _check(next(c for c in cells if c.id == "qwen3moe-k8-f16-metal-dryrun:apple9"))
    assert check.status == "wrong"
    assert check.evidence == (
        "dry run pass, device test crash",
        "the device found no pipeline for kernel_mul_mm_id_map0_ne20_8; the dry run did not flag it",
    )
    assert len(notes) == 1 and notes[0].startswith(
        "Dry-run cross-check on MTL0 (apple9), qwen3moe-k8-f16-MTL0:"
    )


def test_without_a_device_test_verdict_nothing_is_compared(dry_cells: list[Cell]) -> None:
    cell = DEVICE["qwen3moe-k3-f16-MTL0"]
    untested = replace(
        cell, checks=tuple(replace(c, status="error") if c.column == "test" else c for c in cell.checks)
    )
    cells, notes = cross_checked((untested,), list(dry_cells), {"MTL0": "apple9"})
    check = _check(next(c for c in cells if c.id == "qwen3moe-k3-f16-metal-dryrun:apple9"))
    assert check.status == "unverifiable" and "the device's test is error" in check.summary
    assert notes == ()
