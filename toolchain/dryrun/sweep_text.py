"""The sweep's classes as text: the console, ``dryrun-sweep.md`` and the coverage report's section."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .sweep import Sweep, SweepClass

HEADING = "Latent Metal crashes of this llama.cpp (dry-run sweep)"


class ClassRow(Protocol):
    """A sweep class as a table row: ``SweepClass`` here, ``SweepClassRow`` in coverage.json."""

    @property
    def verdict(self) -> str: ...
    @property
    def blame(self) -> str: ...
    @property
    def profiles(self) -> tuple[str, ...]: ...
    @property
    def cases(self) -> int: ...
    @property
    def summary(self) -> str: ...
    @property
    def fix(self) -> str: ...


def class_table(rows: Iterable[ClassRow]) -> list[str]:
    """The classes as one Markdown table (dryrun-sweep.md and coverage.md's section)."""
    out = [
        "| verdict | whose | GPU families | cases | what would crash | fix |",
        "|---|---|---|---|---|---|",
    ]
    for c in rows:
        what, fix = c.summary.replace("|", "\\|"), c.fix.replace("|", "\\|")
        out.append(f"| {c.verdict} | {c.blame} | {', '.join(c.profiles)} | {c.cases} | {what} | {fix} |")
    return out


def class_line(c: SweepClass) -> str:
    return f"[{c.verdict}, {c.blame}] {c.summary}"


def console_lines(s: Sweep, limit: int = 40) -> list[str]:
    total = sum(b.cases for b in s.batches)
    out = [
        f"sweep of {s.commit[:12]} ({s.tree}): {total} cases x {len(s.profiles)} profiles "
        f"({', '.join(s.profiles)}) in {s.seconds:.0f} s" + (" (cached)" if s.cached else ""),
    ]
    crash = s.crash_classes()
    out.append(f"{len(crash)} class(es) of latent crashes; {len(s.classes) - len(crash)} other")
    for c in s.classes[:limit]:
        out.append("  " + class_line(c))
        out.append(f"      fix: {c.fix}")
        out.append(f"      minimal case (test-backend-ops --test-file line): {c.minimal.line}")
    if len(s.classes) > limit:
        out.append(f"  … {len(s.classes) - limit} more classes in the report")
    for reason, n in s.skipped.items():
        out.append(f"  not written for this tree ({n} cases): {reason}")
    if s.baseline is not None:
        out.append(s.baseline.summary)
        for label, changes in (("no longer crashes", s.baseline.fixed), ("new", s.baseline.new)):
            for ch in changes[:limit]:
                out.append(f"  {label} on {', '.join(ch.profiles)}: {ch.verdict} {ch.name}")
            if len(changes) > limit:
                out.append(f"  … {len(changes) - limit} more {label} in the report")
    return out


def markdown_lines(s: Sweep, level: str = "##") -> list[str]:
    total = sum(b.cases for b in s.batches)
    out = [
        f"{level} {HEADING}",
        "",
        f"> {s.statement}",
        "",
        f"Tree commit `{s.commit[:12]}`; {total} generated cases x {len(s.profiles)} profiles "
        f"({', '.join(s.profiles)}); observed by `{s.observed_by}`.",
        "",
    ]
    crash = s.crash_classes()
    if s.baseline is not None:
        out += [f"**{s.baseline.summary}**", ""]
        for label, changes in (("No longer crash", s.baseline.fixed), ("New", s.baseline.new)):
            if changes:
                out += [f"{level}# {label} ({len(changes)})", ""]
                out += [f"- {ch.verdict} on {', '.join(ch.profiles)}: `{ch.name}`" for ch in changes[:200]]
                out.append("")
    if not crash:
        out += ["No class: every generated case supports_op accepts was encoded.", ""]
    out += [*class_table(s.classes), ""]
    if s.classes:
        out += [f"{level}# Minimal cases (one test-backend-ops `--test-file` line of this tree each)", ""]
        for i, c in enumerate(s.classes, start=1):
            out.append(f"{i}. {c.verdict} `{c.what}`: `{c.minimal.line}`")
        out.append("")
    return out
