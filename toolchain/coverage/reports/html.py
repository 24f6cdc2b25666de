"""``coverage.html``: self-contained. It opens with what needs action (the backend's and upstream's
findings per column, the Metal columns first), then what is ours to fix, then what is expected by
design (counted apart, :data:`summary.EXPECTED`); then a heatmap architectures × ops per column
(Metal first; one row per architecture, its weight types' worst status; only the ops that are not
a pass somewhere in that column) and the matrix of the cells that are findings (with their
evidence). Passing and expected cells are counted, not listed: the page stays a few MB at 200
architectures × 4 types (tests/coverage/test_summary.py measures it)."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

from ..records import Cell, CoverageRun, OpResult, whose_suffix
from .baseline import rank
from .summary import column_order, expected_by_design, triage
from .sweep import html_parts as sweep_html

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


# one-letter CSS classes of the heatmap's squares (a square per architecture and op adds up)
_CLASS = {status: chr(ord("a") + i) for i, status in enumerate(COLOURS)}
_SHAPES_PER_CELL = 12
_REASON = 300


def heatmap(cells: Iterable[Cell], backend: str) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """(architectures, ops, (arch, op) -> worst op status over its weight types) for one backend."""
    grid: dict[tuple[str, str], str] = {}
    archs: list[str] = []
    ops: set[str] = set()
    for c in cells:
        if c.backend != backend:
            continue
        row = f"{c.architecture}{'-' + c.variant if c.variant else ''}"
        archs.append(row)
        for o in c.ops:
            ops.add(o.op)
            st = _op_status(o)
            prev = grid.get((row, o.op))
            if prev is None or rank(st) < rank(prev):
                grid[(row, o.op)] = st
    return list(dict.fromkeys(archs)), sorted(ops), grid


def _fg(status: str) -> str:
    return "#000" if status in ("not-applicable", "unverifiable", "unsupported") else "#fff"


def _cell_row(c: Cell) -> str:
    e = html.escape
    detail = "".join(
        f"<div><b>{e(k.column)}</b> {e(k.status)}: {e(k.summary)}"
        + (f"<pre>{e(chr(10).join(k.evidence))}</pre>" if k.evidence else "")
        + "</div>"
        for k in c.checks
    )
    shapes = c.unsupported_ops
    unsup = "".join(f"<div><code>{e(o.key)}</code></div>" for o in shapes[:_SHAPES_PER_CELL])
    if len(shapes) > _SHAPES_PER_CELL:
        unsup += f"<div>… {len(shapes) - _SHAPES_PER_CELL} more in coverage.json</div>"
    return (
        f"<tr><td>{e(c.id)}<td class={_CLASS.get(c.status, 'x')}>{e(c.status + whose_suffix(c))}"
        f"<td><details><summary>{e(c.reason[:_REASON])}</summary>{detail}"
        + (f"<div>unsupported shapes:</div>{unsup}" if unsup else "")
        + f"</details><td>{c.durations.get('total', 0):.1f}</tr>"
    )


def html_page(run: CoverageRun) -> str:
    e = html.escape
    src = run.source
    squares = "".join(f"td.{_CLASS[k]}{{background:{col};color:{_fg(k)}}}" for k, col in COLOURS.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Kernel coverage</title><style>",
        "body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px}th.op{writing-mode:vertical-rl;transform:rotate(180deg);"
        "font-weight:normal}table.h td{width:12px;height:12px;padding:0}.legend span{display:inline-block;padding:2px 8px;"
        "margin-right:4px;color:#fff}details{margin:.2em 0}code{font-size:12px}.inc{background:#ffe0b2;padding:.5em}"
        + squares,
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
    parts += [f"<span style='background:{col};color:{_fg(k)}'>{e(k)}</span>" for k, col in COLOURS.items()]
    parts.append("</p>")
    order = column_order(list(run.backends))
    kinds: dict[str, list[Cell]] = {"action": [], "ours": [], "expected": [], "good": []}
    for c in run.cells:
        kinds[triage(c)].append(c)
    if run.baseline:
        d = run.baseline
        parts.append(f"<h2>Against the baseline</h2><p><b>{e(d.verdict)}</b></p><ul>")
        parts += [f"<li>newly broken: {e(c.id)} {e(c.before)} → {e(c.after)}</li>" for c in d.newly_broken]
        parts += [f"<li>fixed: {e(c.id)} {e(c.before)} → {e(c.after)}</li>" for c in d.fixed]
        parts += [f"<li>new unsupported: <code>{e(s)}</code></li>" for s in d.new_unsupported[:200]]
        parts.append("</ul>")
    if run.sweep is not None:
        parts += sweep_html(run.sweep)
    parts.append("<h2 id='action'>Needs action: the backend's and upstream's findings</h2>")
    if not kinds["action"]:
        parts.append("<p>None.</p>")
    else:
        parts.append("<ul>")
        for b in order:
            mine = [c for c in kinds["action"] if c.backend == b]
            if mine:
                counts: dict[str, int] = {}
                for c in mine:
                    counts[c.status + whose_suffix(c)] = counts.get(c.status + whose_suffix(c), 0) + 1
                listed = ", ".join(
                    f"{e(k)} ×{n}" for k, n in sorted(counts.items(), key=lambda kv: rank(kv[0].split()[0]))
                )
                parts.append(f"<li><b>{e(b)}</b>: {listed} (<a href='#m-action'>cells</a>)</li>")
        parts.append("</ul>")
    if kinds["ours"]:
        parts.append(
            f"<h2>Ours to fix (harness, spec, input)</h2><p>{len(kinds['ours'])} cell(s), listed in "
            "<a href='#m-ours'>the matrix</a>; not the backend's findings.</p>"
        )
    if kinds["expected"]:
        groups: dict[str, dict[str, int]] = {}
        for c in kinds["expected"]:
            key = f"{c.backend} {c.status}"
            groups.setdefault(expected_by_design(c), {})
            groups[expected_by_design(c)][key] = groups[expected_by_design(c)].get(key, 0) + 1
        parts.append("<h2>Expected by design (not findings)</h2><ul>")
        for why, counted in groups.items():
            listed = ", ".join(
                f"{e(k)} ×{n}" for k, n in sorted(counted.items(), key=lambda kv: _metal_key(kv[0], order))
            )
            parts.append(f"<li>{e(why)}: {listed}</li>")
        parts.append("</ul>")
    for b in order:
        archs, ops, grid = heatmap(run.cells, b)
        if not archs:
            continue
        shown = [op for op in ops if any(grid.get((a, op)) not in (None, "pass") for a in archs)]
        if not shown:
            parts.append(
                f"<h2>Heatmap — {e(b)}</h2><p>Every op of every architecture passes or is not needed.</p>"
            )
            continue
        parts.append(
            f"<h2>Heatmap — {e(b)}: architectures × the {len(shown)} ops that are not a pass somewhere "
            f"(of {len(ops)})</h2><table class=h><tr><th>"
        )
        parts += [f"<th class=op>{e(op)}" for op in shown]
        for a in archs:
            parts.append(f"<tr><th>{e(a)}")
            parts += [f"<td class={_CLASS.get(grid.get((a, op)) or '', 'x')}>" for op in shown]
        parts.append("</table>")
    for kind, title in (("action", "Needs action"), ("ours", "Ours to fix")):
        cells = sorted(
            kinds[kind], key=lambda c: (_metal_first_index(c.backend, order), rank(c.status), c.id)
        )
        if cells:
            parts.append(
                f"<h2 id='m-{kind}'>Matrix — {title} ({len(cells)})</h2>"
                "<table><tr><th>cell<th>status<th>reason<th>s</tr>"
            )
            parts += [_cell_row(c) for c in cells]
            parts.append("</table>")
    parts.append(
        f"<p>{len(kinds['good'])} cell(s) pass or do not apply and {len(kinds['expected'])} are expected by "
        "design: counted here, each in coverage.json.</p>"
    )
    parts.append(
        "<script type='application/json' id='coverage-summary'>"
        + html.escape(json.dumps({"counts": run.counts, "complete": run.complete}))
        + "</script>"
    )
    parts.append("</body></html>")
    return "".join(parts)


def _metal_first_index(backend: str, order: list[str]) -> int:
    return order.index(backend) if backend in order else len(order)


def _metal_key(key: str, order: list[str]) -> tuple[int, str]:
    return _metal_first_index(key.rsplit(" ", 1)[0], order), key
