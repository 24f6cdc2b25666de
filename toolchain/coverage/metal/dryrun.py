"""Dry-run Metal columns: the tree's own Metal backend encoding each model's ops, per GPU family.

For every model of the matrix, ``toolchain.dryrun`` encodes the very ops file the device cells
used (the exporter's prompt and generation graphs) once per profile. Each profile becomes a
column ``metal-dryrun:<profile>`` whose cells say ``observed_by: dry-run``. A case a Mac would
die on at the first token (a missing kernel, an encoder assert, a limit) is a ``crash`` cell with
the dry-run verdict, op, shapes and kernel names as its evidence; nothing ran on a device.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ...dryrun.records import DryRun
from ...dryrun.run import dry_run, worst
from ...errors import DryRunUnavailableError
from ..engine.run import Plan
from ..records import Cell, CheckResult, CoverageRun, ModelInput, OpResult, Status, TensorShape
from .columns import add_columns, profile_cell

DEFAULT_PROFILES = ("apple7", "apple9", "apple10", "paravirtual")
_STATUS: dict[str, Status] = {
    "pass": "pass",
    "unsupported": "unsupported",
    "missing-kernel": "crash",
    "encoder-abort": "crash",
    "over-limit": "crash",
    "error": "error",
}


def _shape(t: object) -> TensorShape:
    ne = tuple(getattr(t, "ne", ()))
    return TensorShape(str(getattr(t, "type", "")), (ne + (1, 1, 1, 1))[:4])


def add_dryrun(
    run: CoverageRun,
    planned: Plan,
    scratch_dir: Path,
    cache_dir: Path,
    profiles: tuple[str, ...],
    column_cache: Path | None = None,
) -> CoverageRun:
    """``run`` with the dry-run columns added (or a column note saying why there are none)."""

    def compute(tree: Path, chosen: list[str], model: ModelInput, ops_file: Path) -> list[Cell]:
        work = scratch_dir / "dryrun" / f"{model.label}-{model.weight_type}"
        return dryrun_cells(
            model, dry_run(tree, cache_dir, work, batches=[("ops", ops_file)], profiles=chosen)
        )

    def finish(
        cells: list[Cell], columns: list[str], matching: dict[str, str]
    ) -> tuple[list[Cell], tuple[str, ...], str]:
        cells, cross_notes = cross_checked(run.cells, cells, matching)
        commit = str(run.source.get("commit") or "")
        note = (
            f"Columns {', '.join(f'`{c}`' for c in columns)} are DRY RUNS: this tree's own Metal backend "
            f"(commit {commit[:12]}) encoded each op on a stand-in device per GPU-family profile, every kernel "
            "name checked against the tree's Metal sources. No kernel ran; numbers are not checked."
        )
        return cells, (note, *cross_notes), "the tree's Metal encoders on a stand-in device, no kernel ran"

    return add_columns(
        run,
        planned,
        scratch_dir,
        profiles,
        ("metal-dryrun", "dryrun"),
        DryRunUnavailableError,
        compute,
        finish,
        column_cache,
    )


def dryrun_cells(model: ModelInput, result: DryRun) -> list[Cell]:
    """One cell per profile of a model's dry run (every batch of ``result`` counted together)."""
    infos = {p.profile: p for p in result.profiles}
    cells: list[Cell] = []
    for info in result.profiles:
        profs = [r for b in result.runs for r in b.results if r.profile == info.profile]
        verdict = worst([r.verdict for r in profs])
        status = _STATUS.get(verdict, "error")
        findings = [
            (b.batch, f)
            for b in result.runs
            for r in b.results
            if r.profile == info.profile
            for f in (*r.findings, *r.unsupported)
        ]
        ops = tuple(
            OpResult(
                f.op,
                f.case,
                name=f.case.split(",")[0].removeprefix("name="),
                output=_shape(f.out),
                sources=tuple(_shape(s) for s in f.srcs),
                supported="no" if f.verdict == "unsupported" else "yes",
                message=f"{f.verdict} ({batch} batch): "
                + (
                    ", ".join(f"{m.base} ({m.name})" for m in f.missing)
                    or f.abort
                    or ", ".join(f"{x.what} {x.value} > {x.limit} ({x.kernel})" for x in f.limits)
                    or f.rejected_node
                ),
            )
            for batch, f in findings
        )
        counts: Counter[str] = Counter()
        for r in profs:
            counts.update(r.counts)
        n = sum(b.cases for b in result.runs)
        column = f"metal-dryrun:{info.profile}"
        summary = (
            f"dry run ({verdict}): " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {n} op shapes"
        )
        check = CheckResult(
            "support",
            status,
            summary,
            evidence=tuple(o.message for o in ops if not o.message.startswith("unsupported"))[:8],
            details={
                "profile": info.profile,
                "verdict": verdict,
                "dispatches": sum(r.dispatches for r in profs),
                # what `verify` checks an embedded library against (verify/kernels)
                "kernels_needed": sorted({k for r in profs for k in r.kernels_needed}),
                "library_defines": {d.name: d.value for d in info.library_defines if d.active},
            },
        )
        cells.append(
            profile_cell(
                model,
                column,
                result.commit,
                check,
                ops,
                ("dry-run", "dry-run", "profile on a stand-in device, not a device"),
                (infos[info.profile].description, {v.name: v.value for v in info.props}),
            )
        )
    return cells


# What the tree's library lookup logs on a Mac when it has no pipeline for a kernel
# (ggml-metal-device.m, ggml_metal_library_compile_pipeline).
_DEVICE_KERNEL = re.compile(
    r"(?:kernel not found in any metal library|failed to compile pipeline|failed to create pipeline state): "
    r"base = '(kernel_\w+)'"
)


def cross_check(device_cell: Cell, dryrun_cell: Cell) -> CheckResult:
    """The dry run's verdict against what the device's own `test` column saw on the same model: a
    crash with the kernel names the device's log gives, or a pass. Only what the device observed is
    compared; a device cell without a test verdict compares nothing."""
    test = next((c for c in device_cell.checks if c.column == "test"), None)
    details: dict[str, object] = {"device": device_cell.backend}
    if device_cell.observed_by != "device" or test is None or test.status not in ("pass", "crash", "wrong"):
        why = (
            "no test verdict observed on the device"
            if test is None
            else f"the device's test is {test.status}"
        )
        return CheckResult("cross-check", "unverifiable", f"{why}: nothing to compare", details=details)
    # missing-kernel messages: "missing-kernel (<batch> batch): <base> (<name>), …"
    dry = {
        base
        for o in dryrun_cell.ops
        if o.message.startswith("missing-kernel")
        for base in re.findall(r"(kernel_\w+) \(", o.message.split("): ", 1)[-1])
    }
    seen = {
        m
        for line in (*test.evidence, *(o.message for o in device_cell.ops))
        for m in _DEVICE_KERNEL.findall(line)
    }
    dry_crash, dev_crash = dryrun_cell.status == "crash", test.status == "crash"
    differ: list[str] = []
    if dry_crash != dev_crash:
        differ.append(f"dry run {dryrun_cell.status}, device test {test.status}")
    for k in sorted(seen - dry):
        differ.append(f"the device found no pipeline for {k}; the dry run did not flag it")
    for k in sorted(dry - seen) if seen else ():
        differ.append(f"the dry run flags {k}; the device's log names other kernels")
    details.update({"dry_run": dryrun_cell.status, "device_test": test.status, "kernels_seen": sorted(seen)})
    if differ:
        return CheckResult(
            "cross-check",
            "wrong",
            f"the dry run differs from {device_cell.backend}",
            tuple(differ),
            details=details,
        )
    agreed = f" (both name {', '.join(sorted(seen))})" if seen else ""
    if test.status == "wrong":
        agreed += " (wrong numbers: a dry run checks no numbers)"
    return CheckResult(
        "cross-check",
        "pass",
        f"the dry run matches {device_cell.backend}'s test: {test.status}{agreed}",
        details=details,
    )


def cross_checked(
    device_cells: tuple[Cell, ...], dryrun: list[Cell], matching: dict[str, str]
) -> tuple[list[Cell], tuple[str, ...]]:
    """Dry-run cells with a cross-check against the matching device's cells, and report notes."""
    by_id = {c.id: i for i, c in enumerate(dryrun)}
    notes: list[str] = []
    compared: list[str] = []
    for cell in device_cells:
        prof = matching.get(cell.backend)
        did = f"{cell.id.removesuffix('-' + cell.backend)}-metal-dryrun:{prof}"
        if prof is None or did not in by_id:
            continue
        check = cross_check(cell, dryrun[by_id[did]])
        dryrun[by_id[did]] = replace(dryrun[by_id[did]], checks=(*dryrun[by_id[did]].checks, check))
        if check.status == "wrong":
            notes.append(
                f"Dry-run cross-check on {cell.backend} ({prof}), {cell.id}: " + "; ".join(check.evidence[:3])
            )
        elif check.status == "pass":
            compared.append(cell.id)
    if compared and not notes:
        notes.append(
            f"Dry-run cross-check: {len(compared)} model(s) on {', '.join(sorted(matching))}: the dry run "
            "matches the device's own test runs."
        )
    return dryrun, tuple(notes)
