"""Built-in cases: what the encoder does on composite cases, and validation's verdict."""

from __future__ import annotations

from pathlib import Path

from toolchain.dryrun.build import DryRunProgram
from toolchain.dryrun.validate import validate


def test_composite_case_with_a_rejected_inner_node_is_unsupported_not_an_abort(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    # CONV_1D_DW's out node is accepted on the paravirtual device, an inner MUL_MAT is not: a Mac's
    # scheduler keeps that node on the CPU, so encoding the whole graph on Metal would be our bug
    v = validate(tree_0336, dryrun_cache, tmp_path, profiles=["paravirtual", "apple9"], ops="CONV_1D_DW")
    para = next(p for p in v.run.runs[0].results if p.profile == "paravirtual")
    assert para.findings == ()
    rejected = {u.rejected_node.split()[0] for u in para.unsupported}
    assert rejected and rejected <= {"MUL_MAT", "IM2COL"}, rejected  # inner nodes, named
    assert v.ok, v.reason


def test_validation_encodes_mul_mat_id_with_zero_unexplained(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    v = validate(tree_0336, dryrun_cache, tmp_path, ops="MUL_MAT_ID")
    assert v.ok and v.explained == ()
    apple9 = next(p for p in v.run.runs[0].results if p.profile == "apple9")
    assert apple9.counts["pass"] > 800 and apple9.dispatches > 1000
    assert "0 unexplained" in v.reason


def test_a_missing_kernel_is_confirmed_in_the_tree_with_where_its_name_is_built(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    from tests.dryrun.conftest import moe_run
    from toolchain.dryrun.validate import explain

    run = moe_run(tree_0336, dryrun_cache, tmp_path, 3, profiles=["apple9"], batches=("prompt",))
    (e1, e2) = explain(tree_0336, run)
    for e in (e1, e2):
        assert e.kind == "confirmed-in-tree"
        assert e.reason.startswith(
            "kernel_mul_mm_id_map0_ne20_3 is instantiated nowhere in the tree's Metal sources"
        )
        assert "built at ggml/src/ggml-metal/ggml-metal-device.cpp:" in e.reason
        assert "kernel_mul_mm_id_map0_ne20_4" in e.reason
