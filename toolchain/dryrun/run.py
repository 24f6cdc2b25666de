"""Run the dry run over a model's ops (per batch) or the built-in cases, and judge each case.

The program (``build.py``) appends one JSON line per case to a records file. A case whose encoder
aborts (``GGML_ASSERT``) writes its record with the message and ends the process; the run is then
started again with ``--skip`` past it, so every case is encoded exactly once and the culprit is
named. The parameter string of each case comes from test-backend-ops' own CSV (the last,
complete run), matched to the records per device in order.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..core.diskfull import disk_full_error, is_disk_full
from ..core.git import tree_commit
from ..core.opsinput import checked_lines, write_checked
from ..errors import BuildError, DryRunUnavailableError, UsageError
from ..log import LOG
from ..oracle.extract import ExtractionFailed
from ..oracle.probe import SupportCall, parse_support_csv, profiles_file
from ..oracle.profiles import DeviceProfile, default_profiles, select
from .build import DryRunProgram, DryRunUnavailable, ensure_program
from .library import KernelLibrary, kernel_library
from .records import (
    OBSERVED_BY,
    STATEMENT,
    VERDICTS,
    BatchRun,
    CaseResult,
    DryRun,
    Limit,
    MissingKernel,
    ProfileInfo,
    ProfileResult,
    Tensor,
)

DEFAULT_PROFILES = ("apple7", "apple9", "apple10", "paravirtual")
MAX_THREADS = 1024  # threads per threadgroup on every Apple GPU
MAX_RESTARTS = 2000
TIMEOUT = 900.0  # seconds, each run of the program
# native/toolchain_dryrun_main.cpp: a record could not be written (EX_IOERR), with one stderr line
# "toolchain-metal-dryrun: cannot write PATH: STRERROR (errno N)"
WRITE_FAILED = 74
_WRITE_FAILED_LINE = re.compile(
    r"^toolchain-metal-dryrun: cannot write (?P<path>.*): .* \(errno (?P<errno>\d+)\)$", re.M
)


def program(tree: Path, cache_dir: Path) -> DryRunProgram:
    try:
        return ensure_program(tree, cache_dir, compiler_cache_dir=cache_dir / "ccache")
    except DryRunUnavailable as exc:
        raise DryRunUnavailableError(
            f"Metal dry run unavailable for {tree} (commit {tree_commit(tree)}): " + "; ".join(exc.problems),
            "a verdict-deciding function of the Objective-C layer changed in a way the stand-in cannot follow (named "
            "above): model it in toolchain/dryrun/native/toolchain_dryrun_standin.cpp; no dry-run verdicts are made "
            "for this commit",
        ) from exc


def profiles_for(tree: Path, prog: DryRunProgram, names: Sequence[str] | None) -> tuple[DeviceProfile, ...]:
    try:
        allp = default_profiles(tree, prog.extraction.props_fields, prog.extraction.props_used)
    except ExtractionFailed as exc:
        raise DryRunUnavailableError(
            f"Metal dry run unavailable for {tree} (commit {tree_commit(tree)}): {exc.reason}",
            "a profile would have to guess a device property the tree reads; no dry-run verdicts are made",
        ) from exc
    if names:
        return select(allp, names)
    known = {p.name for p in allp}
    return select(allp, [n for n in DEFAULT_PROFILES if n in known])


def _tensor(d: dict[str, Any]) -> Tensor:
    return Tensor(str(d["type"]), tuple(int(x) for x in d["ne"]))


def _merge(lines: Sequence[str]) -> dict[int, dict[str, Any]]:
    """One record per case: the encoded (or aborted) one over the placeholders of reruns."""
    out: dict[int, dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        seq = int(rec["seq"])
        have = out.get(seq)
        if have is None or (have.get("skipped") and not rec.get("skipped")) or "abort" in rec:
            out[seq] = rec
    return out


def run_program(
    call: SupportCall, records: Path, extra: Sequence[str] = ()
) -> tuple[dict[int, dict[str, Any]], list[tuple[str, str, str]], int, float]:
    """(records by seq, CSV rows (device, op, case), restarts, seconds); ``records``: the file the
    program appends its records to; ``extra``: more options of the program's own (``--cases FILE``)."""
    start = time.monotonic()
    records.unlink(missing_ok=True)
    skip, restarts = 0, 0
    crashes: dict[int, str] = {}
    merged: dict[int, dict[str, Any]] = {}
    seen = 0  # bytes of the records file read so far: each restart reads only what it appended

    def read_new() -> None:
        nonlocal seen
        if not records.is_file():
            return
        with records.open("rb") as fh:
            fh.seek(seen)
            data = fh.read()
        cut = data.rfind(b"\n") + 1  # a line cut short by a crash is read with the next restart's
        seen += cut
        for seq, rec in _merge(data[:cut].decode("utf-8", "replace").splitlines()).items():
            have = merged.get(seq)
            if have is None or (have.get("skipped") and not rec.get("skipped")) or "abort" in rec:
                merged[seq] = rec

    while True:
        options = ("--records", str(records), "--skip", str(skip), *extra)
        done = call.run(*options)
        if done.returncode == WRITE_FAILED:
            _write_failed(done.stderr, records)
        read_new()
        if done.returncode == 0:
            break
        aborted = [s for s, r in merged.items() if "abort" in r and s >= skip]
        if aborted:
            culprit = min(aborted)
        else:
            # ended without writing the case's record (a signal, or an abort outside encoding)
            culprit = max([s for s in merged if s >= skip] or [skip - 1]) + 1
            err = (done.stderr or done.stdout).strip().splitlines()[-6:]
            crashes[culprit] = f"exit {done.returncode}: " + " | ".join(err)
        restarts += 1
        if restarts > MAX_RESTARTS or culprit < skip:
            raise BuildError(
                f"the dry run keeps ending at case {culprit}: {' | '.join(done.stderr.strip().splitlines()[-6:])}",
                f"rerun by hand: {' '.join(call.args(*options))}",
            )
        skip = culprit + 1
    for seq, text in crashes.items():
        if seq in merged:
            merged[seq] = {**merged[seq], "crash": text}
    rows = [(r.backend, r.op, r.case) for r in parse_support_csv(done.stdout)]
    return merged, rows, restarts, time.monotonic() - start


def _write_failed(stderr: str, records: Path) -> NoReturn:
    """The program could not write a record: a full disk is DiskFullError naming the records file
    (never a case's crash, never a harness bug); any other errno the OSError it is. The cut-short
    records go: no partial file is left behind."""
    found = _WRITE_FAILED_LINE.search(stderr)
    if found is None:  # exit 74 without our line: not ours to explain
        raise BuildError(
            f"the dry run ended with exit {WRITE_FAILED} without saying what it could not write: "
            + " | ".join(stderr.strip().splitlines()[-6:]),
            "report this as a harness bug",
        )
    code = int(found["errno"])
    failure = OSError(code, os.strerror(code), str(records))
    if is_disk_full(failure):  # asked before the cut-short file goes: what was free when it failed
        err = disk_full_error(failure, records, f"the dry run could not write its records to {records}")
        records.unlink(missing_ok=True)
        raise err
    records.unlink(missing_ok=True)
    raise failure


def run_profiles(
    prog: DryRunProgram,
    profs: Sequence[DeviceProfile],
    folder: Path,
    test_file: Path | None,
    ops: str | None,
) -> tuple[dict[int, dict[str, Any]], list[tuple[str, str, str]], int, float]:
    """``run_program`` over every profile: one process with one device per profile, or, for a tree
    whose Metal backend has one device per process (``StandIn.single_device``: its
    ``ggml_metal_device_init(void)``), one process per profile, each given a one-profile file,
    their records and CSV rows merged in profile order, named by the profile. A case file goes to
    the tree's test-backend-ops (``--test-file``), or to the driver where the tree's cannot read one."""
    extra: tuple[str, ...] = ()
    if test_file is not None and not prog.reads_test_file:
        extra, test_file = ("--cases", str(test_file)), None
    if prog.standin is None or not prog.standin.single_device:
        pfile = profiles_file(profs, prog.fields, folder / "dryrun-profiles.tsv")
        call = SupportCall(prog, pfile, "the dry run", TIMEOUT, test_file, ops)
        return run_program(call, folder / "dryrun-records.jsonl", extra)
    merged: dict[int, dict[str, Any]] = {}
    rows: list[tuple[str, str, str]] = []
    restarts, seconds = 0, 0.0
    for p in profs:
        pfile = profiles_file([p], prog.fields, folder / f"dryrun-profiles-{p.name}.tsv")
        call = SupportCall(prog, pfile, f"the dry run ({p.name})", TIMEOUT, test_file, ops)
        recs, csv_rows, n, secs = run_program(call, folder / f"dryrun-records-{p.name}.jsonl", extra)
        # the process's one device is named by the tree (single-device trees: "Metal"), not by the profile
        devices = {str(r.get("device")) for r in recs.values()} | {d for d, _, _ in csv_rows}
        if len(devices) > 1:
            raise BuildError(
                f"dry run {p.name}: the single-device process reported devices {sorted(devices)}",
                "each process is given one profile; report this as a harness bug",
            )
        offset = max(merged) + 1 if merged else 0
        merged.update({offset + seq: {**rec, "device": p.name} for seq, rec in recs.items()})
        rows += [(p.name, op, case) for _d, op, case in csv_rows]
        restarts += n
        seconds += secs
    return merged, rows, restarts, seconds


def judge(rec: dict[str, Any], library: KernelLibrary, max_tg_memory: int) -> tuple[str, CaseResult]:
    dispatches = rec.get("dispatches", [])
    kernels = tuple(dict.fromkeys(str(d[1]) for d in dispatches))
    asked = [(str(b), str(n)) for b, n in rec.get("compiled", [])] + [
        (str(d[0]), str(d[1])) for d in dispatches
    ]
    missing = tuple(dict.fromkeys(MissingKernel(b, n) for b, n in asked if not library.has(b)))
    limits: list[Limit] = []
    for d in dispatches:
        smem, threads = int(d[8]), int(d[5]) * int(d[6]) * int(d[7])
        if smem > max_tg_memory:
            limits.append(Limit(str(d[1]), "threadgroup memory", smem, max_tg_memory))
        if threads > min(MAX_THREADS, int(d[9])):
            limits.append(Limit(str(d[1]), "threads per threadgroup", threads, min(MAX_THREADS, int(d[9]))))
    abort = str(rec.get("abort", "") or rec.get("crash", "")).strip()
    if not rec.get("supported"):
        verdict = "unsupported"
    elif missing:
        verdict = "missing-kernel"
    elif "abort" in rec:
        verdict = "encoder-abort"
    elif "crash" in rec:
        verdict = "error"  # ended outside an encoder's assert: the harness's, until shown otherwise
    elif limits:
        verdict = "over-limit"
    else:
        verdict = "pass"
    result = CaseResult(
        0,
        str(rec.get("op", "")),
        "",
        _tensor(rec["out"]),
        tuple(_tensor(s) for s in rec.get("srcs", [])),
        verdict,
        kernels,
        len(dispatches),
        missing,
        abort,
        tuple(dict.fromkeys(limits)),
        str(rec.get("rejected_node", "")),
    )
    return verdict, result


def worst(verdicts: Sequence[str]) -> str:
    present = set(verdicts)
    return next((v for v in VERDICTS if v in present), "pass")


def results(
    merged: dict[int, dict[str, Any]],
    rows: Sequence[tuple[str, str, str]],
    profiles: Sequence[DeviceProfile],
    libraries: dict[str, KernelLibrary],
) -> tuple[ProfileResult, ...]:
    from dataclasses import replace

    by_device: dict[str, list[dict[str, Any]]] = {p.name: [] for p in profiles}
    for seq in sorted(merged):
        rec = merged[seq]
        by_device.setdefault(str(rec["device"]), []).append(rec)
    csv_by_device: dict[str, list[tuple[str, str]]] = {p.name: [] for p in profiles}
    for device, op, case in rows:
        csv_by_device.setdefault(device, []).append((op, case))
    out: list[ProfileResult] = []
    for p in profiles:
        recs, csv_rows = by_device[p.name], csv_by_device[p.name]
        if len(recs) != len(csv_rows):
            raise BuildError(
                f"dry run {p.name}: {len(recs)} records but {len(csv_rows)} test-backend-ops rows",
                "the records and the CSV must describe the same cases; report this as a harness bug",
            )
        lib = libraries[p.name]
        max_tg = int(p.prop("max_theadgroup_memory_size") or 0) or 32768
        counts = dict.fromkeys(VERDICTS, 0)
        findings: list[CaseResult] = []
        unsupported: list[CaseResult] = []
        dispatches = 0
        needed: set[str] = set()
        for i, (rec, (op, case)) in enumerate(zip(recs, csv_rows, strict=True), start=1):
            needed.update(str(b) for b, _n in rec.get("compiled", []))
            needed.update(str(d[0]) for d in rec.get("dispatches", []))
            verdict, res = judge(rec, lib, max_tg)
            res = replace(res, index=i, op=op or res.op, case=case)
            counts[verdict] += 1
            dispatches += res.dispatches
            if verdict == "unsupported":
                unsupported.append(res)
            elif verdict != "pass":
                findings.append(res)
        verdict = worst([v for v, n in counts.items() if n]) if recs else "error"
        out.append(
            ProfileResult(
                p.name,
                f"metal-dryrun:{p.name}",
                verdict,
                {k: v for k, v in counts.items() if v},
                dispatches,
                tuple(findings),
                tuple(unsupported),
                tuple(sorted(needed)),
            )
        )
    return tuple(out)


def profile_info(tree: Path, p: DeviceProfile, lib: KernelLibrary) -> ProfileInfo:
    return ProfileInfo(p.name, p.description, p.props, lib.defines, lib.sources, len(lib.names))


def dry_run(
    tree: Path,
    cache_dir: Path,
    work: Path,
    *,
    batches: Sequence[tuple[str, Path | None]],
    profiles: Sequence[str] | None = None,
    ops: str | None = None,
) -> DryRun:
    """Encode each batch (``(label, ops file)``; ``None`` = the built-in cases) on every profile."""
    tree = tree.resolve()
    # every ops file parsed and range-checked before anything is built or run (#32 F)
    lines = [checked_lines(f, tree) if f is not None and f.is_file() else [] for _, f in batches]
    prog = program(tree, cache_dir)
    profs = profiles_for(tree, prog, profiles)
    libraries = {p.name: kernel_library(tree, p) for p in profs}
    runs: list[BatchRun] = []
    for index, (label, test_file) in enumerate(batches):
        if test_file is not None and not test_file.is_file():
            raise UsageError(f"ops file {test_file} does not exist", "export it with test-export-graph-ops")
        folder = work / f"dryrun-{label}"
        checked = None
        if test_file is not None:  # parsed and range-checked before the program sees it (#32 F)
            checked = write_checked(lines[index], folder / "ops-checked.txt")
        merged, rows, restarts, seconds = run_profiles(prog, profs, folder, checked, ops)
        res = results(merged, rows, profs, libraries)
        n = len(rows) // max(1, len(profs))
        runs.append(
            BatchRun(
                label,
                str(test_file) if test_file else "built-in test-backend-ops cases",
                n,
                res,
                restarts,
                round(seconds, 2),
            )
        )
        LOG.info(
            f"dryrun {label}: {n} cases x {len(profs)} profiles in {seconds:.1f} s"
            + (f" ({restarts} aborts, rerun past each)" if restarts else "")
        )
    return DryRun(
        OBSERVED_BY,
        STATEMENT,
        str(tree),
        tree_commit(tree),
        prog.key,
        tuple(profile_info(tree, p, libraries[p.name]) for p in profs),
        tuple(runs),
        tuple(prog.standin.report_lines()) if prog.standin else (),
    )
