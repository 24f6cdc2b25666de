"""``coverage.html``: self-contained, a heatmap architectures × ops per backend and the matrix."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

from ..records import Cell, CoverageRun, OpResult, whose_suffix
from .baseline import rank

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
            f"{'#000' if c.status in ('not-applicable', 'unverifiable') else '#fff'}'>{e(c.status + whose_suffix(c))}</td>"
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
