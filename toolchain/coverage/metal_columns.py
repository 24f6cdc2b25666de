"""What the Metal columns made off a Mac share (``metal-predicted`` from the oracle, ``metal-dryrun``
from the dry run): one computation per model on the very ops file its device cells used, the Metal
devices of the matrix mapped to the profile that stands for each, and the run with the columns
added (or a column note saying why there are none).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import ToolchainError
from ..log import LOG
from ..tree import has_metal_sources
from .backends import backend
from .cell import CellOptions, CellRunner
from .records import (
    Cell,
    CheckResult,
    CoverageRun,
    DeviceSummary,
    ModelInput,
    ObservedBy,
    OpResult,
    ToolColumn,
)
from .run import Plan


def profile_for_device(device: DeviceSummary) -> str | None:
    """The oracle profile that stands for a device verify saw: its Apple GPU family (without bfloat:
    the -nobf16 profile), or the hosted runners' paravirtual device."""
    if device.device_class == "paravirtual":
        return "paravirtual"
    family = device.capabilities.get("gpu_family")
    if not isinstance(family, int) or family < 7:
        return None
    return f"apple{family}" + ("-nobf16" if device.capabilities.get("bfloat") is False else "")


def device_profiles(planned: Plan) -> dict[str, str]:
    """Metal device columns of the matrix (test-backend-ops name) -> the profile that stands for each."""
    return {
        b: name
        for b in planned.backends
        if backend(b).profile == "metal" and b in planned.devices
        if (name := profile_for_device(planned.devices[b]))
    }


def metal_plan(planned: Plan, profiles: tuple[str, ...]) -> tuple[Path, dict[str, str], list[str]] | str:
    """(the tree, Metal device column -> its profile, the profiles to compute: ``profiles`` and the
    devices' own, to compare with them), or why the tree has no Metal column to make."""
    tree = planned.tree
    if tree is None or not has_metal_sources(tree):
        return "the tree has no Metal backend sources"
    matching = device_profiles(planned)
    return tree, matching, list(dict.fromkeys((*profiles, *matching.values())))


def per_model_cells(
    planned: Plan,
    scratch_dir: Path,
    column: str,
    compute: Callable[[ModelInput, Path], list[Cell]],
    unavailable: type[ToolchainError],
) -> tuple[list[Cell], list[str], str]:
    """(cells, their columns in order, "") of ``compute(model, ops file)`` over the plan's models, or
    ([], [], why) when ``unavailable`` says the column cannot be made for this tree. A model without
    ops, or whose computation fails otherwise, is warned about and has no cell."""
    runner = CellRunner(planned.tools, scratch_dir / "cache", scratch_dir / "logs" / column, CellOptions())
    cells: list[Cell] = []
    columns: list[str] = []
    with LOG.progress(column, total=len(planned.inputs)) as bar:
        for i, model in enumerate(planned.inputs, 1):
            label = f"{model.label}-{model.weight_type}"
            bar.update(i, detail=label)
            ops_file, _out, problem = runner.export_ops(model)
            if ops_file is None:
                LOG.warn(f"{column}: {label}: no ops ({problem})")
                continue
            try:
                made = compute(model, ops_file)
            except unavailable as exc:
                LOG.warn(f"{column} columns not computed: {exc.message}")
                return [], [], exc.message
            except ToolchainError as exc:
                LOG.warn(f"{column}: {label}: {exc.message}")
                continue
            for cell in made:
                if cell.backend not in columns:
                    columns.append(cell.backend)
                cells.append(cell)
    return cells, columns, ""


def profile_cell(
    model: ModelInput,
    column: str,
    commit: str,
    check: CheckResult,
    ops: tuple[OpResult, ...],
    observed: tuple[ObservedBy, str, str],
    device: tuple[str, dict[str, object]],
) -> Cell:
    """A model's cell in the ``column`` of one profile: the check's status and summary (with the tree's
    ``commit``), its ops, seen as ``observed`` (observed_by, the device class, why it is no device) on
    the profile's ``device`` (description, capabilities)."""
    observed_by, device_class, not_a_device = observed
    description, capabilities = device
    return Cell(
        id=f"{model.label}-{model.weight_type}-{column}",
        architecture=model.architecture,
        weight_type=model.weight_type,
        backend=column,
        model=str(model.path),
        status=check.status,
        reason=f"{check.summary} (tree {commit[:12]})",
        observed_by=observed_by,
        checks=(check,),
        ops=ops,
        device=DeviceSummary(column, description, device_class, capabilities, not_a_device),
        variant=model.variant,
    )


def with_columns(
    run: CoverageRun, cells: list[Cell], columns: list[str], notes: tuple[str, ...], tool: ToolColumn
) -> CoverageRun:
    all_cells = run.cells + tuple(cells)
    return replace(
        run,
        notes=(*run.notes, *notes),
        cells=all_cells,
        backends=run.backends + tuple(columns),
        counts=dict(sorted(Counter(c.status for c in all_cells).items())),
        columns=(*run.columns, tool),
    )


def column_note(run: CoverageRun, column: str, tool: str, reason: str) -> CoverageRun:
    """``run`` with ``column`` marked unavailable, saying why."""
    return replace(run, columns=(*run.columns, ToolColumn(column, False, tool, reason)))


# (the tree, the profiles to compute, a model, its ops file) -> that model's cells, one per profile
Compute = Callable[[Path, list[str], ModelInput, Path], list[Cell]]
# (the cells, their columns, Metal device column -> its profile) -> (the cells, cross-checked against
# those devices, the report notes, the tool column's description)
Finish = Callable[[list[Cell], list[str], dict[str, str]], tuple[list[Cell], tuple[str, ...], str]]


def add_columns(
    run: CoverageRun,
    planned: Plan,
    scratch_dir: Path,
    profiles: tuple[str, ...],
    tool: tuple[str, str],
    unavailable: type[ToolchainError],
    compute: Compute,
    finish: Finish,
) -> CoverageRun:
    """``run`` with the columns of ``tool`` (column, tool name) added: ``compute`` per model on the
    profiles and the Metal devices' own, then ``finish``; or a column note saying why there are none."""
    column, name = tool
    if not profiles:
        return run
    plan = metal_plan(planned, profiles)
    if isinstance(plan, str):
        return column_note(run, column, name, plan)
    tree, matching, chosen = plan
    cells, columns, why = per_model_cells(
        planned,
        scratch_dir,
        column,
        lambda model, ops_file: compute(tree, chosen, model, ops_file),
        unavailable,
    )
    if why:
        return column_note(run, column, name, why)
    if not cells:
        return run
    cells, notes, description = finish(cells, columns, matching)
    return with_columns(run, cells, columns, notes, ToolColumn(column, True, name, description))
