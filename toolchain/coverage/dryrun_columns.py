"""Dry-run Metal columns: the tree's own Metal backend encoding each model's ops, per GPU family.

For every model of the matrix, ``toolchain.dryrun`` encodes the very ops file the device cells
used (the exporter's prompt and generation graphs) once per profile. Each profile becomes a
column ``metal-dryrun:<profile>`` whose cells say ``observed_by: dry-run``. A case a Mac would
die on at the first token (a missing kernel, an encoder assert, a limit) is a ``crash`` cell with
the dry-run verdict, op, shapes and kernel names as its evidence; nothing ran on a device.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from ..dryrun.records import DryRun
from ..log import LOG
from ..tree import has_metal_sources
from .cell import CellOptions, CellRunner
from .records import (
    Cell,
    CheckResult,
    CoverageRun,
    DeviceSummary,
    ModelInput,
    OpResult,
    Status,
    TensorShape,
    ToolColumn,
)
from .run import Plan

DEFAULT_PROFILES = ("apple7", "apple9", "apple10", "paravirtual")
_STATUS: dict[str, Status] = {
    "pass": "pass",
    "unsupported": "unsupported",
    "missing-kernel": "crash",
    "encoder-abort": "crash",
    "over-limit": "crash",
    "error": "error",
}


def _shape(t: object) -> TensorShape:
    ne = tuple(getattr(t, "ne", ()))
    return TensorShape(str(getattr(t, "type", "")), (ne + (1, 1, 1, 1))[:4])


def add_dryrun(
    run: CoverageRun, planned: Plan, scratch_dir: Path, cache_dir: Path, profiles: tuple[str, ...]
) -> CoverageRun:
    """``run`` with the dry-run columns added (or a column note saying why there are none)."""
    from ..dryrun.cli import build_lock
    from ..dryrun.run import dry_run
    from ..errors import DryRunUnavailableError, ToolchainError

    tree = planned.tree
    if not profiles:
        return run
    if tree is None or not has_metal_sources(tree):
        return _note(run, "the tree has no Metal backend sources")
    runner = CellRunner(planned.tools, scratch_dir / "cache", scratch_dir / "logs" / "dryrun", CellOptions())
    cells: list[Cell] = []
    columns: list[str] = []
    commit = str(run.source.get("commit") or "")
    with LOG.progress("metal-dryrun", total=len(planned.inputs)) as bar:
        for i, model in enumerate(planned.inputs, 1):
            label = f"{model.label}-{model.weight_type}"
            bar.update(i, detail=label)
            ops_file, _out, problem = runner.export_ops(model)
            if ops_file is None:
                LOG.warn(f"metal-dryrun: {label}: no ops ({problem})")
                continue
            try:
                result = dry_run(
                    tree,
                    cache_dir,
                    scratch_dir / "dryrun" / label,
                    batches=[("ops", ops_file)],
                    profiles=list(profiles),
                    build_lock=build_lock(),
                )
            except DryRunUnavailableError as exc:
                LOG.warn(f"metal-dryrun columns not computed: {exc.message}")
                return _note(run, exc.message)
            except ToolchainError as exc:
                LOG.warn(f"metal-dryrun: {label}: {exc.message}")
                continue
            for cell in dryrun_cells(model, result):
                if cell.backend not in columns:
                    columns.append(cell.backend)
                cells.append(cell)
    if not cells:
        return run
    all_cells = run.cells + tuple(cells)
    note = (
        f"Columns {', '.join(f'`{c}`' for c in columns)} are DRY RUNS: this tree's own Metal backend "
        f"(commit {commit[:12]}) encoded each op on a stand-in device per GPU-family profile, every kernel "
        "name checked against the tree's Metal sources. No kernel ran; numbers are not checked."
    )
    return replace(
        run,
        notes=(*run.notes, note),
        cells=all_cells,
        backends=run.backends + tuple(columns),
        counts=dict(sorted(Counter(c.status for c in all_cells).items())),
        columns=(
            *run.columns,
            ToolColumn(
                "metal-dryrun",
                True,
                "dryrun",
                "the tree's Metal encoders on a stand-in device, no kernel ran",
            ),
        ),
    )


def dryrun_cells(model: ModelInput, result: DryRun) -> list[Cell]:
    """One cell per profile of a model's dry run (every batch of ``result`` counted together)."""
    from ..dryrun.run import worst

    label = f"{model.label}-{model.weight_type}"
    infos = {p.profile: p for p in result.profiles}
    cells: list[Cell] = []
    for info in result.profiles:
        profs = [r for b in result.runs for r in b.results if r.profile == info.profile]
        verdict = worst([r.verdict for r in profs])
        status = _STATUS.get(verdict, "error")
        findings = [
            (b.batch, f)
            for b in result.runs
            for r in b.results
            if r.profile == info.profile
            for f in (*r.findings, *r.unsupported)
        ]
        ops = tuple(
            OpResult(
                f.op,
                f.case,
                name=f.case.split(",")[0].removeprefix("name="),
                output=_shape(f.out),
                sources=tuple(_shape(s) for s in f.srcs),
                supported="no" if f.verdict == "unsupported" else "yes",
                message=f"{f.verdict} ({batch} batch): "
                + (
                    ", ".join(f"{m.base} ({m.name})" for m in f.missing)
                    or f.abort
                    or ", ".join(f"{x.what} {x.value} > {x.limit} ({x.kernel})" for x in f.limits)
                    or f.rejected_node
                ),
            )
            for batch, f in findings
        )
        counts: Counter[str] = Counter()
        for r in profs:
            counts.update(r.counts)
        n = sum(b.cases for b in result.runs)
        column = f"metal-dryrun:{info.profile}"
        summary = (
            f"dry run ({verdict}): " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {n} op shapes"
        )
        cells.append(
            Cell(
                id=f"{label}-{column}",
                architecture=model.architecture,
                weight_type=model.weight_type,
                backend=column,
                model=str(model.path),
                status=status,
                reason=f"{summary} (tree {result.commit[:12]})",
                observed_by="dry-run",
                checks=(
                    CheckResult(
                        "support",
                        status,
                        summary,
                        evidence=tuple(o.message for o in ops if not o.message.startswith("unsupported"))[:8],
                        details={
                            "profile": info.profile,
                            "verdict": verdict,
                            "dispatches": sum(r.dispatches for r in profs),
                        },
                    ),
                ),
                ops=ops,
                device=DeviceSummary(
                    column,
                    infos[info.profile].description,
                    "dry-run",
                    {v.name: v.value for v in info.props},
                    "profile on a stand-in device, not a device",
                ),
                variant=model.variant,
            )
        )
    return cells


def _note(run: CoverageRun, reason: str) -> CoverageRun:
    return replace(run, columns=(*run.columns, ToolColumn("metal-dryrun", False, "dryrun", reason)))
