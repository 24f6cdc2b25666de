"""Records back from their JSON: a cell (pytest workers hand their cells to the controller as JSON;
the cell cache keeps them so) and a whole run (the shards' reports, to merge). Read by the records'
own reader (:func:`toolchain.records.from_jsonable`): a value that does not fit the record's type is
a ``ValueError`` naming the field."""

from __future__ import annotations

import typing
from dataclasses import replace
from typing import Any

from ...core.jsonio import from_jsonable
from ..records import Cell, CoverageRun


def cell_from_json(d: dict[str, Any]) -> Cell:
    return typing.cast(Cell, from_jsonable(Cell, d))


def run_from_json(d: dict[str, Any]) -> CoverageRun:
    """A shard's coverage.json back into its record (the baseline diff and the verdict are
    recomputed, not read)."""
    run = typing.cast(CoverageRun, from_jsonable(CoverageRun, d))
    return replace(run, baseline=None, verdict="")
