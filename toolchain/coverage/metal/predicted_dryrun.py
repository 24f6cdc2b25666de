"""No clean pass where the tree cannot encode: a ``metal-predicted:<profile>`` cell that says every
op shape is supported while the model's ``metal-dryrun:<profile>`` cell (same tree, same ops file,
same profile) finds ``missing-kernel``, ``encoder-abort`` or ``over-limit`` is not shown as a pass.

The predicted cell keeps its own check (supports_op's answer, predicted-from-source) and gets a
second one, ``dryrun-cross-check``, with the dry run's verdict and kernel names; its status becomes
``crash`` (what the Mac does at the first token), whose ``upstream``, and its reason says both.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from ..records import Cell, CheckResult, CoverageRun

PREDICTED = "metal-predicted:"
DRYRUN = "metal-dryrun:"


def _dryrun_id(cell: Cell) -> str:
    prof = cell.backend.removeprefix(PREDICTED)
    return f"{cell.id.removesuffix('-' + cell.backend)}-{DRYRUN}{prof}"


def mark_predicted(run: CoverageRun) -> CoverageRun:
    """``run`` with each predicted pass the dry run contradicts marked as both (see module doc)."""
    by_id = {c.id: c for c in run.cells}
    cells: list[Cell] = []
    changed = 0
    for cell in run.cells:
        dry = by_id.get(_dryrun_id(cell)) if cell.backend.startswith(PREDICTED) else None
        if cell.status != "pass" or dry is None or dry.status != "crash":
            cells.append(cell)
            continue
        dry_check = next((c for c in dry.checks if c.column == "support"), None)
        evidence = dry_check.evidence if dry_check else ()
        check = CheckResult(
            "dryrun-cross-check",
            "crash",
            f"supports_op accepts every op shape, but the dry run ({dry.backend}) cannot encode: "
            + (dry_check.summary if dry_check else dry.reason),
            evidence,
            details={"dryrun_cell": dry.id},
        )
        cells.append(
            dataclasses.replace(
                cell,
                status="crash",
                whose="upstream",
                reason=f"predicted supported (supports_op), NOT encodable: {dry.reason}",
                checks=(*cell.checks, check),
            )
        )
        changed += 1
    if not changed:
        return run
    counts: dict[str, int] = dict(sorted(Counter(str(c.status) for c in cells).items()))
    return dataclasses.replace(run, cells=tuple(cells), counts=counts)
