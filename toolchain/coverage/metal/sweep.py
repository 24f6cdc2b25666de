"""The pinned tree's dry-run sweep classes in the coverage report, when ``nox -s sweep`` made them.

The sweep (``llama-toolchain dryrun sweep``) is its own session: on a cold machine it does not fit
the main job's budget beside the matrix. Its report, ``dryrun-sweep.json`` in the reports folder,
is shown here only when it is of the same commit as the coverage run; one of another commit is
named in a note and not shown.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...dryrun.sweep import Sweep
from ...records import DRYRUN_SWEEP, read_record_if_any
from ..records import CoverageRun, SweepClassRow, SweepSection


def sweep_section(found: Sweep, report: Path) -> SweepSection:
    return SweepSection(
        str(report),
        found.commit,
        found.observed_by,
        found.statement,
        found.profiles,
        sum(b.cases for b in found.batches),
        tuple(
            SweepClassRow(
                c.verdict, c.blame, c.family, c.what, c.profiles, c.cases, c.summary, c.fix, c.minimal.line
            )
            for c in found.classes
        ),
        found.baseline.summary if found.baseline else "",
        tuple(
            f"{label} on {', '.join(ch.profiles)}: {ch.verdict} {ch.name}"
            for label, changes in (
                ("no longer crashes", found.baseline.fixed if found.baseline else ()),
                ("new", found.baseline.new if found.baseline else ()),
            )
            for ch in changes
        )[:40],
    )


def with_sweep(run: CoverageRun, reports_dir: Path) -> CoverageRun:
    path = reports_dir / DRYRUN_SWEEP.name
    found = read_record_if_any(path, DRYRUN_SWEEP, Sweep)
    if found is None:
        return run
    commit = str(run.source.get("commit") or "")
    if not commit or found.commit != commit:
        note = (
            f"The dry-run sweep report {path} is of commit {found.commit[:12]}, not this run's "
            f"({commit[:12] or 'unknown'}): not shown; run `nox -s sweep` for this tree."
        )
        return dataclasses.replace(run, notes=(*run.notes, note))
    return dataclasses.replace(run, sweep=sweep_section(found, path))
