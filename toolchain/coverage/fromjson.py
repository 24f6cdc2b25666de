"""Records back from their JSON: a cell (pytest workers hand their cells to the controller as JSON;
the cell cache keeps them so) and a whole run (the shards' reports, to merge)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .records import (
    Cell,
    CheckResult,
    CoverageRun,
    DeviceSummary,
    OpResult,
    TensorShape,
    ToolColumn,
)


def _shape_from(d: dict[str, Any] | None) -> TensorShape | None:
    if not d:
        return None
    return TensorShape(str(d["type"]), tuple(d["ne"]), tuple(d.get("nb", ())))


def device_from(d: dict[str, Any]) -> DeviceSummary:
    return DeviceSummary(
        d["backend"],
        d.get("description", ""),
        d.get("device_class", "unknown"),
        dict(d.get("capabilities", {})),
        d.get("reason", ""),
    )


def cell_from_json(d: dict[str, Any]) -> Cell:
    ops = tuple(
        OpResult(
            op=o["op"],
            params=o["params"],
            name=o.get("name", ""),
            output=_shape_from(o.get("output")),
            sources=tuple(s for s in (_shape_from(x) for x in o.get("sources", [])) if s is not None),
            op_params=tuple(o.get("op_params", ())),
            supported=o.get("supported", "unknown"),
            test=o.get("test", "not-run"),
            message=o.get("message", ""),
        )
        for o in d.get("ops", [])
    )
    checks = tuple(
        CheckResult(
            k["column"],
            k["status"],
            k["summary"],
            tuple(k.get("evidence", ())),
            k.get("seconds", 0.0),
            tuple(k.get("command", ())),
            k.get("log", ""),
            dict(k.get("details", {})),
        )
        for k in d.get("checks", [])
    )
    dev = d.get("device")
    device = device_from(dev) if dev else None
    return Cell(
        id=d["id"],
        architecture=d["architecture"],
        weight_type=d["weight_type"],
        backend=d["backend"],
        model=d["model"],
        status=d["status"],
        reason=d["reason"],
        observed_by=d["observed_by"],
        checks=checks,
        ops=ops,
        durations=dict(d.get("durations", {})),
        device=device,
        variant=d.get("variant", ""),
        whose=d.get("whose", ""),
        reused=bool(d.get("reused", False)),
    )


def run_from_json(d: dict[str, Any]) -> CoverageRun:
    """A shard's coverage.json back into its record (the baseline diff is recomputed, not read)."""
    return CoverageRun(
        source=dict(d["source"]),
        profile=str(d["profile"]),
        build_dir=str(d["build_dir"]),
        device_class=str(d["device_class"]),
        devices=tuple(device_from(x) for x in d.get("devices", [])),
        backends=tuple(d["backends"]),
        architectures=tuple(d["architectures"]),
        weight_types=tuple(d["weight_types"]),
        columns=tuple(
            ToolColumn(
                **{k: v for k, v in c.items() if k in {f.name for f in dataclasses.fields(ToolColumn)}}
            )
            for c in d.get("columns", [])
        ),
        cells=tuple(cell_from_json(c) for c in d["cells"]),
        complete=bool(d["complete"]),
        interrupted=bool(d["interrupted"]),
        started_at=str(d["started_at"]),
        seconds=float(d["seconds"]),
        counts=dict(d["counts"]),
        models_skipped=tuple(d.get("models_skipped", ())),
        verdict="",
        observed_by=str(d.get("observed_by", "device")),
        notes=tuple(d.get("notes", ())),
        shard=str(d.get("shard", "")),
    )
