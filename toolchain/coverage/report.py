"""The coverage reports: ``coverage.json`` (the record), ``coverage.md``, ``junit-coverage.xml``,
``coverage.html`` (self-contained: heatmap architectures × ops, and the matrix), and the
``--baseline`` diff with its one-line verdict.
"""

from __future__ import annotations

import html
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from ..errors import UsageError
from ..records import COVERAGE, atomic_write_text, to_jsonable, write_report
from .records import (
    BROKEN,
    SEVERITY,
    BaselineDiff,
    Cell,
    CellChange,
    CheckResult,
    CoverageRun,
    DeviceSummary,
    OpResult,
    TensorShape,
)
from .summary import ICONS, step_summary

REPORT_KIND = COVERAGE.kind
COLOURS = {
    "pass": "#2e7d32",
    "unsupported": "#f9a825",
    "fallback": "#ef6c00",
    "wrong": "#c62828",
    "crash": "#6a1b9a",
    "hang": "#4a148c",
    "error": "#616161",
    "unverifiable": "#90a4ae",
    "not-applicable": "#e0e0e0",
}


# --- JSON ------------------------------------------------------------------------------------------
def cell_json(cell: Cell) -> dict[str, Any]:
    data = to_jsonable(cell)
    data["ops"] = [{**to_jsonable(o), "types": list(o.types), "key": o.key} for o in cell.ops]
    return dict(data)


def run_json(run: CoverageRun) -> dict[str, Any]:
    data = to_jsonable(run)
    data["cells"] = [cell_json(c) for c in run.cells]
    return dict(data)


def write_json(run: CoverageRun, path: Path) -> Path:
    return write_report(path, REPORT_KIND, run_json(run))


# --- baseline ---------------------------------------------------------------------------------------
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


# --- Markdown ---------------------------------------------------------------------------------------
def _shape(o: OpResult) -> str:
    if o.output is None:
        return o.params

    def fmt(t: TensorShape) -> str:
        return f"{t.type}[{','.join(map(str, t.ne))}]"

    srcs = ", ".join(fmt(s) for s in o.sources)
    return f"{fmt(o.output)} ← {srcs}"


def _whose(c: Cell) -> str:
    """ " (upstream)" and the like after a status that is not the backend's own finding."""
    return f" ({c.whose})" if c.whose and c.whose != "backend" else ""


def markdown(run: CoverageRun) -> str:
    src = run.source
    lines = [f"# Kernel coverage: {src.get('location') or '?'} @ {str(src.get('commit') or '?')[:12]}", ""]
    if not run.complete:
        lines += ["> **INCOMPLETE** — the run was interrupted" if run.interrupted else "> **INCOMPLETE**", ""]
    if run.verdict:
        lines += [f"**Verdict:** {run.verdict}", ""]
    for note in run.notes:
        lines += [f"> {note}", ""]
    devs = "; ".join(f"{d.backend}: {d.description or '?'} ({d.device_class})" for d in run.devices)
    lines += [
        f"Profile `{run.profile}`, device class **{run.device_class}** ({devs}); "
        f"{len(run.cells)} cells in {run.seconds:.0f} s; observed by `{run.observed_by}`.",
        "",
        "Counts: "
        + ", ".join(
            f"{ICONS.get(k, '')} {k} {v}" for k, v in sorted(run.counts.items(), key=lambda kv: rank(kv[0]))
        ),
        "",
    ]
    missing_cols = [c for c in run.columns if not c.available or c.reason]
    if missing_cols:
        lines += [
            "Columns:",
            *[
                f"- `{c.column}`: {'not computed: ' if not c.available else ''}{c.reason}"
                for c in missing_cols
            ],
            "",
        ]
    # matrix
    rows: dict[tuple[str, str], dict[str, Cell]] = defaultdict(dict)
    for c in run.cells:
        rows[(c.architecture + (f"-{c.variant}" if c.variant else ""), c.weight_type)][c.backend] = c
    lines += [
        "| architecture | type | " + " | ".join(run.backends) + " |",
        "|---|---|" + "---|" * len(run.backends),
    ]
    for (arch, wtype), by_b in rows.items():
        cells = []
        for b in run.backends:
            got = by_b.get(b)
            cells.append(f"{ICONS.get(got.status, '')} {got.status}{_whose(got)}" if got else "")
        lines.append(f"| {arch} | {wtype} | " + " | ".join(cells) + " |")
    lines.append("")
    bad = [c for c in run.cells if c.status not in ("pass", "not-applicable")]
    if bad:
        lines += ["## Findings", ""]
        for c in bad[:200]:
            lines.append(f"- **{c.id}** — {c.status}{_whose(c)}: {c.reason}")
            by_op: dict[str, list[OpResult]] = defaultdict(list)
            for o in c.unsupported_ops:
                by_op[o.op].append(o)
            for op, items in list(by_op.items())[:16]:
                shapes = "; ".join(_shape(o) for o in items[:6]) + (
                    f"; … {len(items) - 6} more" if len(items) > 6 else ""
                )
                lines.append(f"  - unsupported `{op}` ×{len(items)}: {shapes}")
            if len(by_op) > 16:
                lines.append(
                    f"  - … {len(by_op) - 16} more unsupported ops (coverage.json has every case string)"
                )
            for o in c.failing_ops[:5]:
                lines.append(f"  - {o.test} `{o.op}` {_shape(o)}: {o.message}")
        lines.append("")
    if run.baseline:
        d = run.baseline
        lines += [
            f"## Against the baseline ({d.baseline}, commit {d.baseline_commit[:12]})",
            "",
            f"**{d.verdict}**",
            "",
        ]
        for title, changes in (
            ("Newly broken", d.newly_broken),
            ("Fixed", d.fixed),
            ("Other changes", d.changed),
        ):
            if changes:
                lines += [
                    f"### {title}",
                    *[f"- {c.id}: {c.before} → {c.after} ({c.detail})" for c in changes],
                    "",
                ]
        if d.new_unsupported:
            lines += ["### New unsupported shapes", *[f"- `{s}`" for s in d.new_unsupported[:100]], ""]
            if len(d.new_unsupported) > 100:
                lines.append(f"- … {len(d.new_unsupported) - 100} more")
        if d.missing_cells:
            lines += ["### Cells of the baseline not in this run", ", ".join(d.missing_cells[:60]), ""]
    if run.models_skipped:
        lines += ["## Models not tested", *[f"- {s}" for s in run.models_skipped], ""]
    return "\n".join(lines) + "\n"


# --- JUnit ------------------------------------------------------------------------------------------
def junit(run: CoverageRun) -> str:
    suite = ET.Element("testsuite", name="kernel-coverage", tests=str(len(run.cells)))
    failures = errors = skipped = 0
    for c in run.cells:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"coverage.{c.backend}",
            name=c.id,
            time=f"{c.durations.get('total', 0.0):.3f}",
        )
        text = "\n".join(
            [
                c.reason,
                *[f"{k.column}: {k.status}: {k.summary}" for k in c.checks],
                *[e for k in c.checks for e in k.evidence],
            ]
        )
        if c.status in BROKEN:
            failures += 1
            ET.SubElement(case, "failure", message=f"{c.status}: {c.reason}"[:500], type=c.status).text = text
        elif c.status == "error":
            errors += 1
            ET.SubElement(case, "error", message=c.reason[:500], type="error").text = text
        elif c.status in ("unverifiable", "not-applicable"):
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{c.status}: {c.reason}"[:500])
        else:
            ET.SubElement(case, "system-out").text = text
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    if not run.complete:
        ET.SubElement(suite, "properties").append(ET.Element("property", name="incomplete", value="true"))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


# --- HTML -------------------------------------------------------------------------------------------
def _op_status(o: OpResult) -> str:
    if o.test in ("fail",):
        return "wrong"
    if o.test == "crash":
        return "crash"
    if o.supported == "no":
        return "unsupported"
    if o.test in ("ok", "nan-both", "nan-reference") or o.supported == "yes":
        return "pass"
    return "not-applicable"


def heatmap(cells: Iterable[Cell], backend: str) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """(architectures, ops, (arch, op) -> worst op status) for one backend."""
    grid: dict[tuple[str, str], str] = {}
    archs: list[str] = []
    ops: set[str] = set()
    for c in cells:
        if c.backend != backend:
            continue
        row = f"{c.architecture}{'-' + c.variant if c.variant else ''}/{c.weight_type}"
        archs.append(row)
        for o in c.ops:
            ops.add(o.op)
            st = _op_status(o)
            prev = grid.get((row, o.op))
            if prev is None or rank(st) < rank(prev):
                grid[(row, o.op)] = st
    return list(dict.fromkeys(archs)), sorted(ops), grid


def html_page(run: CoverageRun) -> str:
    e = html.escape
    src = run.source
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Kernel coverage</title><style>",
        "body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px}th.op{writing-mode:vertical-rl;transform:rotate(180deg);"
        "font-weight:normal}td.h{width:14px;height:14px;padding:0}.legend span{display:inline-block;padding:2px 8px;"
        "margin-right:4px;color:#fff}details{margin:.2em 0}code{font-size:12px}.inc{background:#ffe0b2;padding:.5em}",
        "</style></head><body>",
        f"<h1>Kernel coverage — {e(str(src.get('location') or '?'))} @ {e(str(src.get('commit') or '?')[:12])}</h1>",
    ]
    if not run.complete:
        parts.append(
            "<p class='inc'><b>INCOMPLETE</b>: the run was interrupted; only finished cells are shown.</p>"
        )
    if run.verdict:
        parts.append(f"<p><b>Verdict:</b> {e(run.verdict)}</p>")
    for note in run.notes:
        parts.append(f"<p class='note'>{e(note)}</p>")
    parts.append(
        f"<p>Profile <code>{e(run.profile)}</code>, device class <b>{e(run.device_class)}</b>; "
        f"{len(run.cells)} cells in {run.seconds:.0f} s.</p><p class='legend'>"
    )
    parts += [
        f"<span style='background:{col};color:{'#000' if k in ('not-applicable', 'unverifiable') else '#fff'}'>"
        f"{e(k)}</span>"
        for k, col in COLOURS.items()
    ]
    parts.append("</p>")
    for b in run.backends:
        archs, ops, grid = heatmap(run.cells, b)
        if not archs:
            continue
        parts.append(f"<h2>Heatmap — {e(b)}: architectures × ops</h2><table><tr><th></th>")
        parts += [f"<th class='op'>{e(op)}</th>" for op in ops]
        parts.append("</tr>")
        for a in archs:
            parts.append(f"<tr><th>{e(a)}</th>")
            for op in ops:
                st = grid.get((a, op))
                parts.append(
                    f"<td class='h' title='{e(a)} {e(op)}: {e(st or 'not needed')}' "
                    f"style='background:{COLOURS.get(st or '', '#fff')}'></td>"
                )
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("<h2>Matrix</h2><table><tr><th>cell</th><th>status</th><th>reason</th><th>s</th></tr>")
    for c in run.cells:
        col = COLOURS.get(c.status, "#fff")
        detail = "".join(
            f"<div><b>{e(k.column)}</b> {e(k.status)}: {e(k.summary)}"
            + (f"<pre>{e(chr(10).join(k.evidence))}</pre>" if k.evidence else "")
            + "</div>"
            for k in c.checks
        )
        unsup = "".join(f"<div><code>{e(o.key)}</code></div>" for o in c.unsupported_ops[:50])
        parts.append(
            f"<tr><td>{e(c.id)}</td><td style='background:{col};color:"
            f"{'#000' if c.status in ('not-applicable', 'unverifiable') else '#fff'}'>{e(c.status + _whose(c))}</td>"
            f"<td><details><summary>{e(c.reason[:160])}</summary>{detail}"
            + (f"<div>unsupported shapes:</div>{unsup}" if unsup else "")
            + f"</details></td><td>{c.durations.get('total', 0):.1f}</td></tr>"
        )
    parts.append("</table>")
    if run.baseline:
        d = run.baseline
        parts.append(f"<h2>Against the baseline</h2><p><b>{e(d.verdict)}</b></p><ul>")
        parts += [f"<li>newly broken: {e(c.id)} {e(c.before)} → {e(c.after)}</li>" for c in d.newly_broken]
        parts += [f"<li>fixed: {e(c.id)} {e(c.before)} → {e(c.after)}</li>" for c in d.fixed]
        parts += [f"<li>new unsupported: <code>{e(s)}</code></li>" for s in d.new_unsupported[:200]]
        parts.append("</ul>")
    parts.append(
        "<script type='application/json' id='coverage-summary'>"
        + html.escape(json.dumps({"counts": run.counts, "complete": run.complete}))
        + "</script>"
    )
    parts.append("</body></html>")
    return "".join(parts)


# --- all ---------------------------------------------------------------------------------------------
def write_reports(run: CoverageRun, reports_dir: Path) -> dict[str, Path]:
    paths = {
        "json": reports_dir / COVERAGE.name,
        "md": reports_dir / "coverage.md",
        "junit": reports_dir / "junit-coverage.xml",
        "html": reports_dir / "coverage.html",
        "summary": reports_dir / "coverage-summary.md",
    }
    write_json(run, paths["json"])
    md = markdown(run)
    atomic_write_text(paths["md"], md)
    atomic_write_text(paths["junit"], junit(run))
    atomic_write_text(paths["html"], html_page(run))
    short = step_summary(run)
    atomic_write_text(paths["summary"], short)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # the short form: the full coverage.md outgrows GitHub's 1 MiB per step
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(short)
    return paths


# --- back from JSON (pytest workers hand their cells to the controller as JSON) -----------------
def _shape_from(d: dict[str, Any] | None) -> TensorShape | None:
    if not d:
        return None
    return TensorShape(str(d["type"]), tuple(d["ne"]), tuple(d.get("nb", ())))


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
    device = (
        DeviceSummary(
            dev["backend"],
            dev.get("description", ""),
            dev.get("device_class", "unknown"),
            dict(dev.get("capabilities", {})),
            dev.get("reason", ""),
        )
        if dev
        else None
    )
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
    )
