"""The job summary a person reads in ten seconds (``coverage-summary.md``, and what goes to
``$GITHUB_STEP_SUMMARY``).

GitHub caps a step summary at 1 MiB, and the full ``coverage.md`` grows with every op of every
architecture. The summary opens with what needs action — the backend's and upstream's findings,
per column, the Metal columns (device, dry-run, predicted per GPU family) first and the CPU last —
then what is ours to fix (harness, spec, input), then what is expected by design, grouped apart
and counted, not listed among the findings (:data:`EXPECTED`), then one compact line per
architecture, and points at the uploaded HTML and JSON for the per-op detail. It is bounded by
construction (names, statuses and counts only, each list capped) and guarded by a hard limit:
under :data:`LIMIT` bytes whatever the size of the matrix.

Text that comes from the tree or a user (reasons, architecture names) is written inside code
spans with backticks and pipes neutralised, so Markdown never interprets it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..records import SEVERITY, Cell, CoverageRun, whose_suffix
from .sweep import summary as sweep_summary

LIMIT = 64_000  # bytes
ICONS = {
    "pass": "✅",
    "unsupported": "🟨",
    "fallback": "🟧",
    "wrong": "❌",
    "crash": "💥",
    "hang": "⏳",
    "error": "⚠️",
    "unverifiable": "❔",
    "not-applicable": "➖",
}
_GOOD = ("pass", "not-applicable")
# What is expected by design, never a finding: (column name prefix, statuses, why). "" = any column.
EXPECTED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "BLAS",
        ("unsupported", "fallback"),
        "the BLAS backend runs only large matrix products and leaves every other op to the CPU",
    ),
    (
        "",
        ("unverifiable",),
        "the device cannot give a verdict (the hosted runners' paravirtual GPU has no simdgroup "
        "reduction or matrix multiply): a self-hosted Apple Silicon runner can",
    ),
)
# Failures that are ours (the harness's, our spec's, the given input's): to fix here, not the backend's.
OURS = ("harness", "spec", "input")
_NAMES_PER_FINDING = 12
_OPS_PER_BACKEND = 8


def code(text: str, limit: int = 160) -> str:
    """``text`` as an inline code span, verbatim (backticks and pipes cannot break out)."""
    text = " ".join(str(text).split()).replace("`", "'").replace("|", "¦")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"`{text}`" if text else ""


def _label(cell: Cell) -> str:
    return cell.architecture + (f"-{cell.variant}" if cell.variant else "")


def _severity(status: str) -> int:
    """Higher is worse (SEVERITY lists the statuses worst first)."""
    return len(SEVERITY) - SEVERITY.index(status) if status in SEVERITY else 0


def expected_by_design(cell: Cell) -> str:
    """Why ``cell``'s status is expected by design ("" when it is a finding or a pass)."""
    for prefix, statuses, why in EXPECTED:
        if cell.status in statuses and cell.backend.startswith(prefix):
            return why
    return ""


def triage(cell: Cell) -> str:
    """ "good", "expected" (by design), "ours" (harness, spec, input) or "action" (the backend's or
    upstream's finding)."""
    if cell.status in _GOOD:
        return "good"
    if expected_by_design(cell):
        return "expected"
    return "ours" if cell.whose in OURS else "action"


def _metal_first(backend: str) -> tuple[int, str]:
    low = backend.lower()
    rank = (
        0 if low.startswith(("mtl", "metal:")) else 1 if low.startswith("metal") else 3 if low == "cpu" else 2
    )
    return rank, backend


def column_order(backends: tuple[str, ...] | list[str]) -> list[str]:
    """The Metal columns first (the device's, then dry-run and predicted per GPU family), the CPU last."""
    return sorted(backends, key=_metal_first)


def _expected(run: CoverageRun) -> list[str]:
    groups: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for c in run.cells:
        why = expected_by_design(c)
        if why:
            groups[why][c.backend][c.status] += 1
    if not groups:
        return []
    lines = ["## Expected by design (not findings)", ""]
    for why, columns in groups.items():
        counted = "; ".join(
            f"{code(b, 60)} "
            + ", ".join(f"{ICONS.get(s, '')} {s} ×{n}" for s, n in sorted(columns[b].items()))
            for b in column_order(list(columns))
        )
        lines.append(f"- {why}: {counted}")
    lines.append("")
    return lines


def _findings(run: CoverageRun) -> list[str]:
    by_backend: dict[str, dict[str, list[Cell]]] = defaultdict(lambda: defaultdict(list))
    ours: dict[str, list[Cell]] = defaultdict(list)
    for c in run.cells:
        kind = triage(c)
        if kind == "action":
            by_backend[c.backend][c.status + whose_suffix(c)].append(c)
        elif kind == "ours":
            ours[c.status + whose_suffix(c)].append(c)
    lines: list[str] = []
    if not by_backend:
        lines += ["## Findings: none need action", "", "No backend or upstream finding.", ""]
    else:
        lines += ["## Findings: needs action (the backend's or upstream's)", ""]
    for b in column_order(list(run.backends)):
        statuses = by_backend.get(b)
        if not statuses:
            continue
        parts = []
        for status, cells in sorted(statuses.items(), key=lambda kv: -_severity(kv[1][0].status)):
            types: dict[str, list[str]] = defaultdict(list)
            for c in cells:
                types[_label(c)].append(c.weight_type)
            names = [f"{code(a, 48)} ({', '.join(sorted(set(t)))})" for a, t in sorted(types.items())]
            shown = ", ".join(names[:_NAMES_PER_FINDING])
            more = f", … {len(names) - _NAMES_PER_FINDING} more" if len(names) > _NAMES_PER_FINDING else ""
            parts.append(f"{ICONS.get(status, '')} {status} ×{len(cells)}: {shown}{more}")
        lines.append(f"- **{code(b, 60)}** — " + "; ".join(parts))
        ops = Counter(
            o.op
            for cells in statuses.values()
            for c in cells
            for o in {o.op: o for o in c.unsupported_ops}.values()
        )
        if ops:
            top = ", ".join(f"{code(op, 40)} in {n} cell(s)" for op, n in ops.most_common(_OPS_PER_BACKEND))
            more = f", … {len(ops) - _OPS_PER_BACKEND} more ops" if len(ops) > _OPS_PER_BACKEND else ""
            lines.append(f"  - unsupported ops: {top}{more}")
        worst = [
            c for cells in statuses.values() for c in cells if c.status not in ("unsupported", "unverifiable")
        ]
        for c in sorted(worst, key=lambda c: -_severity(c.status))[:3]:
            lines.append(f"  - {code(c.id, 80)}: {code(c.reason)}")
    lines.append("")
    if ours:
        lines += ["## Ours to fix (harness, spec, input; not the backend's)", ""]
        for status, cells in sorted(ours.items(), key=lambda kv: -_severity(kv[1][0].status)):
            names = sorted({code(c.id, 80) for c in cells})
            more = f", … {len(names) - _NAMES_PER_FINDING} more" if len(names) > _NAMES_PER_FINDING else ""
            lines.append(
                f"- {ICONS.get(cells[0].status, '')} {status} ×{len(cells)}: "
                + ", ".join(names[:_NAMES_PER_FINDING])
                + more
            )
        lines.append("")
    return [*lines, *_expected(run)]


def _architectures(run: CoverageRun) -> list[str]:
    rows: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for c in run.cells:
        rows[_label(c)][c.backend][c.weight_type] = c.status
    types = list(run.weight_types) or sorted({c.weight_type for c in run.cells})
    lines = [
        "## Architectures",
        "",
        f"One icon per weight type ({', '.join(types)}), per column: "
        + ", ".join(f"{ICONS[s]} {s}" for s in ICONS),
        "",
        "| architecture | " + " | ".join(code(b, 40) for b in column_order(list(run.backends))) + " |",
        "|---|" + "---|" * len(run.backends),
    ]
    for arch in sorted(rows):
        cols = []
        for b in column_order(list(run.backends)):
            got = rows[arch].get(b, {})
            cols.append("".join(ICONS.get(got[t], "?") if t in got else "·" for t in types))
        lines.append(f"| {code(arch, 48)} | " + " | ".join(cols) + " |")
    lines.append("")
    return lines


def step_summary(run: CoverageRun, *, limit: int = LIMIT) -> str:
    src = run.source
    head = [
        f"# Kernel coverage: {code(str(src.get('location') or '?'), 80)} @ "
        f"{code(str(src.get('commit') or '?')[:12], 20)}",
        "",
    ]
    if not run.complete:
        head += ["> **INCOMPLETE**" + (": the run was interrupted" if run.interrupted else ""), ""]
    if run.verdict:
        head += [f"**Verdict:** {code(run.verdict, 300)}", ""]
    counts = ", ".join(f"{ICONS.get(k, '')} {k} {v}" for k, v in sorted(run.counts.items()))
    head += [
        f"Profile {code(run.profile, 30)}, device class **{code(run.device_class, 30)}**; "
        f"{len(run.cells)} cells in {run.seconds:.0f} s. {counts}",
        "",
    ]
    for note in run.notes[:6]:
        head += [f"> {code(note, 400)}", ""]
    if run.baseline is not None:
        d = run.baseline
        broken = ", ".join(code(c.id, 60) for c in d.newly_broken[:20])
        more = f", … {len(d.newly_broken) - 20} more" if len(d.newly_broken) > 20 else ""
        head += [
            f"**Against the baseline** (commit {code(d.baseline_commit[:12], 20)}): {code(d.verdict, 300)}",
            "",
        ]
        if d.newly_broken:
            head += [f"Newly broken: {broken}{more}", ""]
    tail = [
        "Per-op detail (every unsupported shape, evidence, logs): `coverage.html` and `coverage.json` "
        "in the uploaded reports.",
        "",
    ]
    swept = sweep_summary(run.sweep) if run.sweep is not None else []
    text = "\n".join([*head, *_findings(run), *swept, *_architectures(run), *tail])
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    # hard guard: cut at a line boundary and say so (the caps above keep real runs far below it)
    note = "\n\n> … cut here to stay under the step-summary limit: see coverage.html / coverage.json\n"
    cut = encoded[: limit - len(note.encode()) - 4].decode("utf-8", errors="ignore")
    return cut[: cut.rfind("\n")] + note
