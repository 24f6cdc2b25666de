"""The coverage matrix's metal-dryrun:<profile> cells, made from a real dry run of the MoE ops."""

from __future__ import annotations

from pathlib import Path

from tests.dryrun.conftest import FIXTURES, moe_run
from toolchain.coverage.metal.dryrun import dryrun_cells
from toolchain.coverage.records import Cell, ModelInput
from toolchain.dryrun.build import DryRunProgram

MOE = FIXTURES / "moe"


def _cells(tree: Path, cache: Path, work: Path, k: int) -> dict[str, Cell]:
    run = moe_run(tree, cache, work, k)
    model = ModelInput("qwen3moe", "f16", MOE / f"qwen3moe-k{k}.gguf", "fixture")
    return {c.backend: c for c in dryrun_cells(model, run)}


def test_top3_moe_is_a_crash_cell_naming_the_kernel(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    cells = _cells(tree_0336, dryrun_cache, tmp_path, 3)
    assert sorted(cells) == [f"metal-dryrun:{p}" for p in ("apple10", "apple7", "apple9", "paravirtual")]
    for p in ("apple7", "apple9"):
        cell = cells[f"metal-dryrun:{p}"]
        assert cell.status == "crash" and cell.observed_by == "dry-run"
        evidence = cell.checks[0].evidence
        assert evidence and all(
            "kernel_mul_mm_id_map0_ne20_3 (" in e and "(prompt batch)" in e for e in evidence
        )
        assert cell.checks[0].details["verdict"] == "missing-kernel"
    assert cells["metal-dryrun:paravirtual"].status == "unsupported"


def test_top8_moe_passes(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    cells = _cells(tree_0336, dryrun_cache, tmp_path, 8)
    assert {b: c.status for b, c in cells.items()} == {
        "metal-dryrun:apple7": "pass",
        "metal-dryrun:apple9": "pass",
        "metal-dryrun:apple10": "pass",
        "metal-dryrun:paravirtual": "unsupported",
    }
