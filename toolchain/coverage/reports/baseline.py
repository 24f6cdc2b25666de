"""``--baseline``: an earlier coverage.json read defensively, the diff of this run against it and
the one-line bump verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ..records import BROKEN, REPORT_KIND, SEVERITY, BaselineDiff, CellChange, CoverageRun


def rank(status: str) -> int:
    order: tuple[str, ...] = SEVERITY
    return order.index(status) if status in order else len(order)


MAX_BASELINE_BYTES = 512 << 20  # a full matrix's coverage.json is a few MiB


def _baseline_problem(data: object) -> str:
    """What is wrong with a parsed baseline ("" when it can be diffed against)."""
    if not isinstance(data, dict):
        return f"a coverage report is a JSON object, not {type(data).__name__}"
    if data.get("kind") != REPORT_KIND:
        return f"kind is {data.get('kind')!r}, not {REPORT_KIND!r}: not a coverage.json"
    if "source" in data and not isinstance(data["source"], dict | None):
        return f"source is {type(data['source']).__name__}, not an object"
    cells = data.get("cells", [])
    if not isinstance(cells, list):
        return f"cells is {type(cells).__name__}, not a list"
    seen: set[str] = set()
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            return f"cells[{i}] is {json.dumps(cell)[:80]}, not an object"
        for key in ("id", "status"):
            if not isinstance(cell.get(key), str):
                return f"cells[{i}].{key} is {json.dumps(cell.get(key))[:80]}, not a string"
        if cell["id"] in seen:
            return f"cells[{i}].id {cell['id']!r} appears twice"
        seen.add(cell["id"])
        ops = cell.get("ops", [])
        if not isinstance(ops, list):
            return f"cells[{i}].ops is {type(ops).__name__}, not a list"
        for j, op in enumerate(ops):
            if not isinstance(op, dict):
                return f"cells[{i}].ops[{j}] is {json.dumps(op)[:80]}, not an object"
            if not (isinstance(op.get("key"), str) and op["key"]) and not (
                isinstance(op.get("op"), str) and isinstance(op.get("params"), str)
            ):
                return f"cells[{i}].ops[{j}] has neither a string key nor string op and params"
    return ""


def load_baseline(path: Path) -> dict[str, Any]:
    """The baseline ``coverage.json`` at ``path``, checked to be one (UsageError naming the file and
    what is wrong otherwise): called before any cell runs, so a bad baseline costs no run."""
    hint = "give the coverage.json of an earlier run (.toolchain/reports/coverage.json)"
    try:
        if not path.is_file():
            raise UsageError(f"--baseline {path}: not a regular file", hint)
        if path.stat().st_size > MAX_BASELINE_BYTES:
            raise UsageError(
                f"--baseline {path}: {path.stat().st_size} bytes, more than a coverage report has", hint
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--baseline {path}: cannot be read: {exc}", hint) from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"--baseline {path} is not JSON: {str(exc)[:200]}", hint) from exc
    problem = _baseline_problem(data)
    if problem:
        raise UsageError(f"--baseline {path}: {problem}", hint)
    return dict(data)


def diff_baseline(run: CoverageRun, baseline: Path, old: dict[str, Any] | None = None) -> BaselineDiff:
    """The diff of ``run`` against the baseline report (``old``: already loaded by :func:`load_baseline`)."""
    old = old if old is not None else load_baseline(baseline)
    old_cells = {c["id"]: c for c in old.get("cells", [])}
    new_cells = {c.id: c for c in run.cells}
    broken, fixed, changed, new_unsup, gone_unsup = [], [], [], [], []
    for cid, cell in new_cells.items():
        prev = old_cells.get(cid)
        if prev is None:
            if cell.status in BROKEN:
                broken.append(CellChange(cid, "absent", cell.status, cell.reason))
            continue
        before = str(prev.get("status"))
        if before != cell.status:
            change = CellChange(cid, before, cell.status, cell.reason)
            if cell.status in BROKEN and before not in BROKEN:
                broken.append(change)
            elif before in BROKEN and cell.status not in BROKEN:
                fixed.append(change)
            else:
                changed.append(change)
        old_unsup = {
            o.get("key") or f"{o['op']}({o['params']})"
            for o in prev.get("ops", [])
            if o.get("supported") == "no"
        }
        now_unsup = {o.key for o in cell.ops if o.supported == "no"}
        # a shape unsupported now that was supported before, or that the old tree's graph did not need
        new_unsup += [f"{cid}: {k}" for k in sorted(now_unsup - old_unsup)]
        gone_unsup += [f"{cid}: {k}" for k in sorted(old_unsup - now_unsup)]
    missing = sorted(set(old_cells) - set(new_cells))
    src = old.get("source") if isinstance(old.get("source"), dict) else {}
    old_commit = str((src or {}).get("commit") or "?")
    new_commit = str(run.source.get("commit") or "?")
    if not run.cells:
        verdict = (
            f"no verdict on bumping the pin {old_commit[:12]} -> {new_commit[:12]}: nothing was covered "
            f"(0 cells in this run, {len(old_cells)} in the baseline)"
        )
        return BaselineDiff(str(baseline), old_commit, (), (), (), (), (), tuple(missing), False, verdict)
    unsafe = bool(broken) or not run.complete
    reasons = []
    if broken:
        reasons.append(
            f"{len(broken)} cell(s) newly broken ({', '.join(c.id for c in broken[:4])}"
            f"{' …' if len(broken) > 4 else ''})"
        )
    if not run.complete:
        reasons.append("this run is incomplete")
    if unsafe:
        verdict = f"NOT safe to bump the pin {old_commit[:12]} -> {new_commit[:12]}: " + "; ".join(reasons)
    else:
        extra = (
            f"; {len(new_unsup)} newly unsupported shape(s) (fallbacks, not failures)" if new_unsup else ""
        )
        verdict = (
            f"safe to bump the pin {old_commit[:12]} -> {new_commit[:12]}: no cell newly crashes, hangs or "
            f"computes wrong numbers; {len(fixed)} fixed{extra}"
        )
    return BaselineDiff(
        str(baseline),
        old_commit,
        tuple(broken),
        tuple(fixed),
        tuple(changed),
        tuple(new_unsup),
        tuple(gone_unsup),
        tuple(missing),
        not unsafe,
        verdict,
    )
