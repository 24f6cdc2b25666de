"""Predicted Metal columns: what each Apple GPU family would reject, from the tree's source.

For every model of the matrix, the Metal oracle (``toolchain.oracle``) evaluates the tree's own
``ggml_metal_device_supports_op`` on the very ops file the device cells used, once per device
profile. Each profile becomes a column ``metal-predicted:<profile>`` whose cells say
``observed_by: predicted-from-source``: predictions, never observations on a device.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ...errors import OracleUnavailableError, ReportError
from ...oracle import predict
from ...oracle.records import OracleValidation
from ...records import ORACLE_VALIDATION, read_record
from ..engine.run import Plan
from ..records import Cell, CheckResult, CoverageRun, ModelInput, OpResult, Status, TensorShape
from .columns import add_columns, profile_cell
from .columns import profile_for_device as profile_for_device  # re-exported (its tests import it here)

DEFAULT_PROFILES = ("apple7", "apple9", "paravirtual")
_SHAPE = re.compile(r"(\w+)\[(-?\d+),(-?\d+),(-?\d+),(-?\d+)\]")


def _shapes(text: str) -> tuple[TensorShape, ...]:
    return tuple(
        TensorShape(m[1], (int(m[2]), int(m[3]), int(m[4]), int(m[5]))) for m in _SHAPE.finditer(text)
    )


def add_predictions(
    run: CoverageRun,
    planned: Plan,
    scratch_dir: Path,
    cache_dir: Path,
    profiles: tuple[str, ...],
    column_cache: Path | None = None,
) -> CoverageRun:
    """``run`` with the predicted columns added (or a column note saying why there are none). A Metal
    device in the matrix has its own family predicted too, to cross-check the oracle on it."""
    commit = str(run.source.get("commit") or "")

    def compute(tree: Path, chosen: list[str], model: ModelInput, ops_file: Path) -> list[Cell]:
        preds = predict(ops_file, tree, cache_dir=cache_dir, profiles=chosen, commit=commit or None)
        return [_cell(model, prof, preds.commit) for prof in preds.profiles]

    def finish(
        cells: list[Cell], columns: list[str], matching: dict[str, str]
    ) -> tuple[list[Cell], tuple[str, ...], str]:
        cells, cross_notes = _cross_checked(run.cells, cells, matching)
        notes = (
            f"Columns {', '.join(f'`{c}`' for c in columns)} are PREDICTIONS from this llama.cpp tree's own "
            f"Metal supports_op source (commit {commit[:12]}) evaluated per GPU-family profile on Linux: not "
            "observations on a device. Not modelled: Metal pipeline compile failures at run time, the "
            "op-offload batch threshold.",
            validation_note(scratch_dir.parent / "reports" / ORACLE_VALIDATION.name),
            *cross_notes,
        )
        return (
            cells,
            notes,
            (f"predictions from the tree's supports_op source ({commit[:12]}), not observations on a device"),
        )

    return add_columns(
        run,
        planned,
        scratch_dir,
        profiles,
        ("metal-predicted", "oracle"),
        OracleUnavailableError,
        compute,
        finish,
        column_cache,
    )


def _cell(model, prof, commit: str) -> Cell:  # type: ignore[no-untyped-def]
    ops = []
    for p in prof.ops:
        params = p.case[len(p.op) + 1 : -1] if p.case.startswith(p.op + "(") else p.case
        out = _shapes(f"{p.type}{p.ne}")
        ops.append(
            OpResult(
                p.op,
                params,
                name=p.name,
                output=out[0] if out else None,
                sources=_shapes(p.sources),
                supported="yes" if p.supported else "no",
            )
        )
    status: Status = "unsupported" if prof.unsupported else "pass"
    summary = (
        f"predicted from source: {prof.unsupported} of {len(prof.ops)} op shapes rejected on {prof.family}"
        if prof.unsupported
        else f"predicted from source: all {len(prof.ops)} op shapes accepted on {prof.family}"
    )
    return profile_cell(
        model,
        prof.column,
        commit,
        CheckResult("support", status, summary, details={"profile": prof.profile, "family": prof.family}),
        tuple(ops),
        ("predicted-from-source", "predicted", "profile, not a device"),
        (prof.description, {v.name: v.value for v in prof.props}),
    )


def cross_check(device_cell: Cell, predicted_cell: Cell) -> CheckResult:
    """The oracle's answer against the device's own `test-backend-ops support` answer, op by op
    (the same ops file, so the same case strings)."""
    seen = {o.key: o.supported for o in device_cell.ops if o.supported in ("yes", "no")}
    said = {o.key: o.supported for o in predicted_cell.ops if o.supported in ("yes", "no")}
    both = [k for k in said if k in seen]
    differ = [f"{k}: predicted {said[k]}, device {seen[k]}" for k in both if said[k] != seen[k]]
    status: Status = "wrong" if differ else "pass"
    summary = (
        f"{len(differ)} of {len(both)} op shapes: the prediction differs from {device_cell.backend}"
        if differ
        else f"all {len(both)} op shapes: the prediction matches {device_cell.backend}"
    )
    return CheckResult(
        "cross-check",
        status,
        summary,
        tuple(differ[:20]),
        details={"device": device_cell.backend, "compared": len(both), "differ": len(differ)},
    )


def _cross_checked(
    device_cells: tuple[Cell, ...], predicted: list[Cell], matching: dict[str, str]
) -> tuple[list[Cell], tuple[str, ...]]:
    """Predicted cells with a cross-check against the matching device's cells, and report notes."""
    if not matching:
        return predicted, ()
    by_id = {c.id: i for i, c in enumerate(predicted)}
    notes: list[str] = []
    for cell in device_cells:
        prof = matching.get(cell.backend)
        if prof is None or not cell.ops:
            continue
        pid = f"{cell.id.removesuffix('-' + cell.backend)}-metal-predicted:{prof}"
        if pid not in by_id:
            continue
        check = cross_check(cell, predicted[by_id[pid]])
        predicted[by_id[pid]] = replace(predicted[by_id[pid]], checks=(*predicted[by_id[pid]].checks, check))
        if check.status != "pass":
            notes.append(
                f"Oracle cross-check on {cell.backend} ({prof}), {cell.id}: {check.summary}: "
                + "; ".join(check.evidence[:3])
            )
    if not notes:
        notes.append(
            f"Oracle cross-check: the predictions for {', '.join(sorted(set(matching.values())))} match "
            f"the device's own support answers ({', '.join(sorted(matching))})."
        )
    return predicted, tuple(notes)


def validation_note(path: Path) -> str:
    """One line on how far the oracle agrees with the tree's real-device table (or that it was not checked)."""
    if not path.is_file():
        return "The oracle was not validated in this work dir: run `llama-toolchain oracle validate`."
    try:
        data = read_record(path, ORACLE_VALIDATION, OracleValidation)
    except ReportError as exc:
        return f"{path} is not an oracle validation report ({exc.message})."
    metal = data.metal
    if metal.status == "skipped":
        return f"Oracle validation skipped: {metal.reason}"
    best = ", ".join(metal.best_profiles) or "?"
    return (
        f"Oracle validation against the tree's docs/ops/Metal.csv (captured upstream on a real Mac, commit "
        f"{data.commit[:12]}): {metal.matched:,} cases matched, best profile {best} at "
        f"{100 * metal.best_agreement:.2f}% agreement, {len(metal.disagreements)} "
        f"disagreement(s), {metal.unexplained} unexplained ({'ok' if data.ok else 'FAILED'})."
    )
