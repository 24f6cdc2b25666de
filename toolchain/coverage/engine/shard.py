"""Past one runner: a deterministic, balanced slice of the matrix (``--shard K/N``), and the merge
of shard reports into one (``llama-toolchain coverage merge REPORT…``).

The unit of a shard is a model input (architecture × weight type): its cells share the exported
ops file, the CPU reference run and the predicted columns, so splitting them would repeat that
work. Models are dealt out largest first (by cell count, then by name) to the least-loaded
shard, so N shards differ by at most one model's cells, and the same plan gives the same slices
on every machine.

A merge refuses reports that do not belong together: another kind of report, another tree
(commit) or profile, another set of columns, a shard counted twice or out of a different split,
or the same cell in two reports. A missing shard is not refused: the merged report is marked
incomplete and says which shard is missing.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ...errors import ReportError, UsageError
from ...records import COVERAGE, read_data
from ..records import Cell, CoverageRun, DeviceSummary, ToolColumn
from ..reports.fromjson import run_from_json
from .run import Plan

_SHARD = re.compile(r"^([1-9][0-9]{0,3})/([1-9][0-9]{0,3})$")


def parse_shard(text: str) -> tuple[int, int]:
    m = _SHARD.match(text.strip())
    if not m or int(m.group(1)) > int(m.group(2)):
        raise UsageError(
            f"--shard {text!r}: not K/N with 1 <= K <= N", "e.g. --shard 2/4 for the second of four slices"
        )
    return int(m.group(1)), int(m.group(2))


def assign(plan: Plan, n: int) -> dict[tuple[str, str], int]:
    """(label, weight type) of each model -> its shard (1-based), balanced by cell count."""
    cells = Counter((s.model.label, s.model.weight_type) for s in plan.specs)
    keys = sorted({(m.label, m.weight_type) for m in plan.inputs}, key=lambda k: (-cells[k], k))
    load = [0] * n
    out: dict[tuple[str, str], int] = {}
    for key in keys:
        target = min(range(n), key=lambda i: (load[i], i))
        out[key] = target + 1
        load[target] += max(cells[key], 1)
    return out


def shard_plan(plan: Plan, k: int, n: int) -> Plan:
    """The slice ``k`` of ``n`` of ``plan``: only its models, their cells and skips as planned."""
    mine = {key for key, shard in assign(plan, n).items() if shard == k}
    return dataclasses.replace(
        plan,
        inputs=tuple(m for m in plan.inputs if (m.label, m.weight_type) in mine),
        specs=tuple(s for s in plan.specs if (s.model.label, s.model.weight_type) in mine),
        skips=plan.skips if k == 1 else (),  # skipped models are reported once
    )


# --- merge --------------------------------------------------------------------------------------
def _load(path: Path) -> CoverageRun:
    if not path.is_file():
        raise UsageError(f"coverage merge: {path}: no such file", "pass the shards' coverage.json files")
    try:
        data: dict[str, Any] = read_data(path, COVERAGE)
        return run_from_json(data)
    except (ReportError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(
            f"coverage merge: {path}: not a coverage report this toolchain can read ({exc!r})"
        ) from exc


def merge_runs(paths: list[Path]) -> CoverageRun:
    if not paths:
        raise UsageError("coverage merge: no report given", "pass the shards' coverage.json files")
    runs = [(p, _load(p)) for p in paths]
    first_path, first = runs[0]
    shards: dict[int, Path] = {}
    total = None
    seen: dict[str, Path] = {}
    for path, run in runs:
        for what, mine, theirs in (
            ("tree (commit)", run.source.get("commit"), first.source.get("commit")),
            ("source", run.source.get("location"), first.source.get("location")),
            ("profile", run.profile, first.profile),
            ("columns", run.backends, first.backends),
        ):
            if mine != theirs:
                raise UsageError(
                    f"coverage merge: {path} and {first_path} are of different {what}: {mine!r} vs {theirs!r}",
                    "merge only the shards of one run (one build of one tree)",
                )
        if run.shard:
            k, n = parse_shard(run.shard)
            if total is not None and n != total:
                raise UsageError(f"coverage merge: {path} is shard {run.shard}, others are of /{total}")
            total = n
            if k in shards:
                raise UsageError(f"coverage merge: shard {run.shard} given twice ({shards[k]} and {path})")
            shards[k] = path
        for cell in run.cells:
            if cell.id in seen:
                raise UsageError(f"coverage merge: cell {cell.id} is in both {seen[cell.id]} and {path}")
            seen[cell.id] = path
    missing = sorted(set(range(1, (total or 0) + 1)) - set(shards))
    backends = first.backends
    archs = tuple(dict.fromkeys(a for _, r in runs for a in r.architectures))
    types = tuple(dict.fromkeys(t for _, r in runs for t in r.weight_types))
    cells = sorted(
        (c for _, r in runs for c in r.cells),
        key=lambda c: (
            archs.index(c.architecture) if c.architecture in archs else len(archs),
            c.variant,
            types.index(c.weight_type) if c.weight_type in types else len(types),
            _column_rank(c, backends),
        ),
    )
    columns: dict[str, ToolColumn] = {}
    for _, r in runs:
        for col in r.columns:
            columns.setdefault(col.column, col)
    devices: dict[str, DeviceSummary] = {}
    for _, r in runs:
        for d in r.devices:
            devices.setdefault(d.backend, d)
    notes = tuple(dict.fromkeys(n for _, r in runs for n in r.notes))
    if missing:
        notes = (*notes, f"merged without shard(s) {', '.join(f'{k}/{total}' for k in missing)}")
    counts = Counter(c.status for c in cells)
    return dataclasses.replace(
        first,
        architectures=archs,
        weight_types=types,
        columns=tuple(columns.values()),
        devices=tuple(devices.values()),
        cells=tuple(cells),
        complete=not missing and all(r.complete for _, r in runs),
        interrupted=any(r.interrupted for _, r in runs),
        started_at=min(r.started_at for _, r in runs),
        seconds=max(r.seconds for _, r in runs),
        counts=dict(sorted(counts.items())),
        models_skipped=tuple(dict.fromkeys(s for _, r in runs for s in r.models_skipped)),
        baseline=None,
        verdict="",
        notes=notes,
        shard="",
    )


def _column_rank(cell: Cell, backends: tuple[str, ...]) -> int:
    return backends.index(cell.backend) if cell.backend in backends else len(backends)
