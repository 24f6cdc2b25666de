"""The sweep section of coverage.md, the step summary and coverage.html (one text, three forms)."""

from __future__ import annotations

import html

from ...dryrun.contradict import CANNOT_ENCODE as CRASH
from ...dryrun.sweep_text import HEADING as TITLE
from ...dryrun.sweep_text import class_table
from ..records import SweepSection


def _intro(s: SweepSection) -> str:
    crash = sum(1 for c in s.classes if c.verdict in CRASH)
    return (
        f"{crash} class(es) of cases supports_op accepts that the tree's Metal encoders cannot encode, "
        f"from {s.cases} generated cases on {', '.join(s.profiles)} (observed by `{s.observed_by}`, "
        f"not on a device; report `{s.report}`)."
    )


def markdown(s: SweepSection, limit: int = 60) -> list[str]:
    out = [f"## {TITLE}", "", f"> {s.statement}", "", _intro(s), ""]
    if s.against:
        out += [f"**{s.against}**", "", *[f"- {c}" for c in s.changes], ""]
    if s.classes:
        out += class_table(s.classes[:limit])
        if len(s.classes) > limit:
            out.append(f"\n… {len(s.classes) - limit} more classes in {s.report}")
        out += ["", "Minimal cases (test-backend-ops `--test-file` lines of this tree):", ""]
        out += [f"{i}. `{c.minimal_case}`" for i, c in enumerate(s.classes[:limit], start=1)]
    out.append("")
    return out


def summary(s: SweepSection, limit: int = 8) -> list[str]:
    crash = [c for c in s.classes if c.verdict in CRASH]
    out = [f"**{TITLE}:** {_intro(s)}", ""]
    if s.against:
        out += [f"**{s.against}**", "", *[f"- {c[:200]}" for c in s.changes[:limit]], ""]
    for c in crash[:limit]:
        out.append(f"- {c.verdict} on {', '.join(c.profiles)}: {c.summary[:300]}")
    if len(crash) > limit:
        out.append(f"- … {len(crash) - limit} more in coverage.md")
    out.append("")
    return out


def html_parts(s: SweepSection) -> list[str]:
    e = html.escape
    parts = [f"<h2 id='sweep'>{e(TITLE)}</h2><p class='note'>{e(s.statement)}</p><p>{e(_intro(s))}</p>"]
    if s.against:
        parts.append(
            f"<p><b>{e(s.against)}</b></p><ul>" + "".join(f"<li>{e(c)}</li>" for c in s.changes) + "</ul>"
        )
    if s.classes:
        parts.append(
            "<table><tr><th>verdict</th><th>whose</th><th>GPU families</th><th>cases</th>"
            "<th>what would crash</th><th>fix</th><th>minimal case</th></tr>"
        )
        for c in s.classes:
            parts.append(
                f"<tr><td>{e(c.verdict)}</td><td>{e(c.blame)}</td><td>{e(', '.join(c.profiles))}</td>"
                f"<td>{c.cases}</td><td>{e(c.summary)}</td><td>{e(c.fix)}</td>"
                f"<td><code>{e(c.minimal_case)}</code></td></tr>"
            )
        parts.append("</table>")
    return parts
