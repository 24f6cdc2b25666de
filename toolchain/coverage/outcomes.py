"""A tool run's outcome as a column sees it: its verdict, its evidence, and a JSON round trip (the
cell caches keep outcomes on disk)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .backend_ops import strip_ansi
from .isolate import Outcome
from .records import Status

EVIDENCE_LINES = 15


def outcome_json(o: Outcome) -> dict[str, Any]:
    return {
        "args": list(o.args),
        "kind": o.kind,
        "returncode": o.returncode,
        "seconds": o.seconds,
        "tail": list(o.tail),
        "log": o.log,
        "output_bytes": o.output_bytes,
        "abort_lines": list(o.abort_lines),
        "timeout": o.timeout,
    }


def outcome_from(d: Mapping[str, Any]) -> Outcome:
    return Outcome(
        tuple(d["args"]),
        d["kind"],
        d["returncode"],
        d["seconds"],
        tuple(d["tail"]),
        (),
        d["log"],
        d["output_bytes"],
        tuple(d["abort_lines"]),
        d.get("timeout"),  # absent in caches written before it was recorded: unknown
    )


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
