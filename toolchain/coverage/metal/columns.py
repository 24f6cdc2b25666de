"""What the Metal columns made off a Mac share (``metal-predicted`` from the oracle, ``metal-dryrun``
from the dry run): one computation per model on the very ops file its device cells used, the Metal
devices of the matrix mapped to the profile that stands for each, the cells kept per model while
what made them is unchanged (``ColumnCache``), and the run with the columns added (or a column note
saying why there are none).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ...core.digests import file_sha256, ggml_environment, toolchain_digest, tree_digest
from ...core.jsonio import atomic_write_text
from ...core.tree import has_metal_sources
from ...errors import ToolchainError
from ...log import LOG
from ..engine.backends import backend
from ..engine.cell import CellOptions, CellRunner
from ..engine.cellcache import tools_digest
from ..engine.run import Plan
from ..engine.tools import Toolset
from ..records import (
    Cell,
    CheckResult,
    CoverageRun,
    DeviceSummary,
    ModelInput,
    ObservedBy,
    OpResult,
    ToolColumn,
)
from ..reports.write import cell_from_json, cell_json


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


# --- a model's cells of one column, kept while what made them is unchanged ----------------------
class ColumnCache:
    """A model's cells of one off-device column family (``metal-predicted``, ``metal-dryrun``), kept
    as JSON under ``root`` and reused while every input is unchanged: the toolchain's files, the
    tree's ``ggml/`` and test-backend-ops, the profiles asked for, the commit the cells name, the
    GGML_/LLAMA_ environment, the build's tools (they export the ops), the model's identity and
    content. A kept model needs no op export: a warm job with a fresh work dir exports nothing."""

    def __init__(
        self, root: Path, column: str, tree: Path, profiles: list[str], commit: str, tools: Toolset
    ) -> None:
        self.root = root
        env = ggml_environment()
        self._common = [
            column,
            toolchain_digest(),
            tree_digest(tree),
            profiles,
            commit,
            env,
            tools_digest(tools),
        ]

    def key(self, model: ModelInput) -> str:
        ident = [model.architecture, model.weight_type, model.variant, model.label]
        content = file_sha256(model.path) if model.path.is_file() else "missing"
        text = json.dumps([self._common, ident, content], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def load(self, key: str, model: ModelInput) -> list[Cell] | None:
        try:
            data = json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
            cells = [cell_from_json(d) for d in data["cells"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none kept, or unreadable: computed again
        return [replace(c, model=str(model.path), reused=True) for c in cells]

    def store(self, key: str, cells: list[Cell]) -> None:
        atomic_write_text(self.root / f"{key}.json", json.dumps({"cells": [cell_json(c) for c in cells]}))


def per_model_cells(
    planned: Plan,
    scratch_dir: Path,
    column: str,
    compute: Callable[[ModelInput, Path], list[Cell]],
    unavailable: type[ToolchainError],
    kept: ColumnCache | None = None,
) -> tuple[list[Cell], list[str], str]:
    """(cells, their columns in order, "") of ``compute(model, ops file)`` over the plan's models, or
    ([], [], why) when ``unavailable`` says the column cannot be made for this tree. A model without
    ops, or whose computation fails otherwise, is warned about and has no cell. With ``kept``, a
    model whose inputs are unchanged gets its kept cells instead of a computation."""
    runner = CellRunner(planned.tools, scratch_dir / "cache", scratch_dir / "logs" / column, CellOptions())
    cells: list[Cell] = []
    columns: list[str] = []
    reused = 0
    with LOG.progress(column, total=len(planned.inputs)) as bar:
        for i, model in enumerate(planned.inputs, 1):
            label = f"{model.label}-{model.weight_type}"
            bar.update(i, detail=label)
            key = kept.key(model) if kept else ""
            made = kept.load(key, model) if kept else None
            if made is not None:
                reused += 1
            else:
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
                if kept:
                    kept.store(key, made)
            for cell in made:
                if cell.backend not in columns:
                    columns.append(cell.backend)
                cells.append(cell)
    if reused:
        LOG.info(
            f"{column}: {reused} of {len(planned.inputs)} model(s) reused (toolchain, tree, profiles, tools "
            "and model unchanged; --fresh computes them again)"
        )
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
    cache_root: Path | None = None,
) -> CoverageRun:
    """``run`` with the columns of ``tool`` (column, tool name) added: ``compute`` per model on the
    profiles and the Metal devices' own (or the cells kept under ``cache_root`` for unchanged
    inputs), then ``finish``; or a column note saying why there are none."""
    column, name = tool
    if not profiles:
        return run
    plan = metal_plan(planned, profiles)
    if isinstance(plan, str):
        return column_note(run, column, name, plan)
    tree, matching, chosen = plan
    commit = str(run.source.get("commit") or "")
    kept = (
        ColumnCache(cache_root / column, column, tree, chosen, commit, planned.tools) if cache_root else None
    )
    cells, columns, why = per_model_cells(
        planned,
        scratch_dir,
        column,
        lambda model, ops_file: compute(tree, chosen, model, ops_file),
        unavailable,
        kept,
    )
    if why:
        return column_note(run, column, name, why)
    if not cells:
        return run
    cells, notes, description = finish(cells, columns, matching)
    return with_columns(run, cells, columns, notes, ToolColumn(column, True, name, description))
