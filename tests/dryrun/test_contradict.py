"""No clean pass where the tree cannot encode (unit level, on hand-made records; the real trees are
in test_trees.py): the join of the oracle's "supported" with the dry run's findings, and the
coverage matrix's predicted cell that says both."""

from __future__ import annotations

from tests.coverage.test_summary import generated_run
from toolchain.coverage.metal.predicted_dryrun import mark_predicted
from toolchain.coverage.records import Cell, CheckResult
from toolchain.dryrun.contradict import cross_check
from toolchain.dryrun.records import BatchRun, CaseResult, DryRun, MissingKernel, ProfileResult, Tensor

CASE = "type_a=f32,type_b=f16,m=100,n=1,k=64"


def _run(verdict: str) -> DryRun:
    f = CaseResult(
        1,
        "MUL_MAT",
        CASE,
        Tensor("f32", (100, 1, 1, 1)),
        (),
        verdict,
        ("kernel_mul_mv_f32_f16_4",),
        0,
        (MissingKernel("kernel_mul_mv_f32_f16_4", "kernel_mul_mv_f32_f16_4"),)
        if verdict == "missing-kernel"
        else (),
        "",
        (),
        "",
    )
    res = ProfileResult(
        "apple9", "metal-dryrun:apple9", verdict, {verdict: 1}, 0, (f,) if verdict != "pass" else (), ()
    )
    return DryRun("dry-run", "", "/t", "c", "k", (), (BatchRun("ops", "f", 1, (res,), 0, 0.1),))


def test_a_supported_case_the_dry_run_cannot_encode_is_counted() -> None:
    check = cross_check([("apple9", "MUL_MAT", CASE), ("apple7", "MUL_MAT", CASE)], _run("missing-kernel"))
    assert check.available and check.compared == 1  # apple7 was not dry-run: not compared
    assert [(c.profile, c.verdict, c.detail) for c in check.cases] == [
        ("apple9", "missing-kernel", "kernel_mul_mv_f32_f16_4")
    ]
    assert check.by_verdict == {"missing-kernel": 1}
    assert cross_check([("apple9", "MUL_MAT", CASE)], _run("pass")).cases == ()


def _cell(backend: str, status: str) -> Cell:
    return Cell(
        f"qwen3-f16-{backend}",
        "qwen3",
        "f16",
        backend,
        "/m.gguf",
        status,  # type: ignore[arg-type]
        f"{status} reason",
        "predicted-from-source" if "predicted" in backend else "dry-run",
        (CheckResult("support", status, f"{status} summary", ("kernel_x",)),),  # type: ignore[arg-type]
    )


def test_the_predicted_cell_says_both_and_is_not_a_pass() -> None:
    run = generated_run(1)
    cells = (
        _cell("metal-predicted:apple9", "pass"),
        _cell("metal-dryrun:apple9", "crash"),
        _cell("metal-predicted:apple7", "pass"),
        _cell("metal-dryrun:apple7", "pass"),
    )
    out = mark_predicted(type(run)(**{**run.__dict__, "cells": cells}))
    by = {c.backend: c for c in out.cells}
    assert by["metal-predicted:apple9"].status == "crash"
    assert (
        by["metal-predicted:apple9"].reason
        == "predicted supported (supports_op), NOT encodable: crash reason"
    )
    assert [c.column for c in by["metal-predicted:apple9"].checks] == ["support", "dryrun-cross-check"]
    assert by["metal-predicted:apple9"].checks[0].status == "pass"  # supports_op's own answer kept
    assert by["metal-predicted:apple7"].status == "pass"
    assert out.counts == {"crash": 2, "pass": 2}
