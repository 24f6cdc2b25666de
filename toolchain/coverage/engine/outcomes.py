"""A tool run's outcome as a column sees it: its verdict, its evidence, and a JSON round trip (the
cell caches keep outcomes on disk)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core.isolate import Outcome
from ...core.jsonio import from_jsonable, to_jsonable
from ..device.backend_ops import strip_ansi
from ..records import Status

EVIDENCE_LINES = 15


def outcome_json(o: Outcome) -> dict[str, Any]:
    """``o`` as JSON, without its stdout lines (the tail and the log keep what a verdict needs)."""
    return {k: v for k, v in to_jsonable(o).items() if k != "stdout"}


def outcome_from(d: Mapping[str, Any]) -> Outcome:
    """An outcome back from :func:`outcome_json` (a ``timeout`` absent in caches written before it
    was recorded: unknown)."""
    return typing.cast(Outcome, from_jsonable(Outcome, {**d, "stdout": []}))


def status_of(o: Outcome) -> Status | None:
    """The verdict a failed run gives its column (None: it ran to a normal exit)."""
    if o.kind == "hang":
        return "hang"
    if o.kind in ("crash", "flood"):
        return "crash"
    if o.kind == "missing":
        return "error"
    return None


def evidence_of(o: Outcome) -> tuple[str, ...]:
    lines = [strip_ansi(x) for x in o.tail if x.strip()]
    abort = [a for a in o.abort_lines if a not in lines[-EVIDENCE_LINES:]]
    return tuple(abort[:2] + lines[-EVIDENCE_LINES:])


def read_log(path: Path, limit: int = 4 << 20) -> list[str]:
    try:
        with path.open("rb") as fh:
            data = fh.read(limit)
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()


def run_failure(data: Mapping[str, Any]) -> tuple[Status, str, tuple[str, ...]] | None:
    """The worst failed run (runner or logits tool) of a decode, as (status, summary, evidence)."""
    for key in ("runner", "logits_run"):
        if key not in data:
            continue
        out = outcome_from(data[key])
        bad = status_of(out)
        if bad is None and out.kind == "exit":
            bad = "error"
        if bad:
            prog = Path(out.args[0]).name if out.args else key
            return (
                bad,
                f"{prog}: {out.describe()}",
                evidence_of(out),
            )
    return None
