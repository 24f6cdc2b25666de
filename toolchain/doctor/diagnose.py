"""Put the checks together: log, GGUF + memory plan, build, system -> one ordered report."""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

from ..core.jsonio import to_jsonable
from ..core.tree import has_metal_sources
from ..errors import GGUFError, UsageError
from ..log import LOG
from ..verify.inputs import discover, read_cmake_cache
from ..verify.tree_match import match_build
from .build_check import check_build
from .classify import LogScan, RunParams, classify_stream
from .files import open_regular
from .findings import DoctorReport, Evidence, Finding, ObservedBy, sort_findings
from .fit_params import find_program, fit_args, run_fit_params
from .gguf_check import GGUFInfo, check_gguf, known_architectures
from .kernel_dryrun import KernelDryRun, dry_run_kernel
from .memory import CTX_STEP, estimate, machine_memory, parse_size, plan, plan_findings
from .model_shape import shape_from_gguf
from .system import probe, system_findings


@dataclass(frozen=True)
class DoctorInputs:
    log: Path | None = None  # Path("-") = stdin
    gguf: Path | None = None
    params: RunParams = RunParams()
    memory: str | None = None  # "64GiB"; None: probe the machine
    build: Path | None = None
    profile: str = "metal"
    tree: Path | None = None  # a llama.cpp tree: architectures it knows; the missing-kernel dry run's
    system: bool = True
    cache_dir: Path | None = None  # where the dry run's program is built (None: no dry run)
    sdists_dir: Path | None = None  # trees a --build outside a checkout is matched against (verify's)
    observed_by_log: ObservedBy = "log"


def gguf_summary(info: GGUFInfo) -> dict[str, Any]:
    return {
        "path": str(info.path),
        "kind": info.kind,
        "magic": info.magic,
        "version": info.version,
        "endianness": info.endianness,
        "architecture": info.architecture,
        "tensor_count": info.tensor_count,
        "tensor_infos_read": len(info.tensors),
        "tensor_data_bytes": info.tensor_data_bytes,
        "file_size": info.file_size,
        "expected_size": info.expected_size,
        "reader": info.reader,
        "parse_error": info.parse_error,
    }


def _read_log(
    path: Path, params: RunParams, observed_by: ObservedBy, stdin: BinaryIO | None
) -> tuple[LogScan, list[Finding]]:
    hint = "give the log file (or - for stdin)"
    try:
        if str(path) == "-":
            if stdin is None and sys.stdin is None:  # started with stdin closed (`<&-`)
                raise UsageError("doctor -: standard input is closed, there is no log to read", hint)
            LOG.info("doctor: reading the log from stdin (end it with Ctrl-D; Ctrl-C stops)")
            return classify_stream(
                stdin or sys.stdin.buffer, source="-", params=params, observed_by=observed_by
            )
        with open_regular(path, UsageError, "log", hint) as fh:
            return classify_stream(fh, source=str(path), params=params, observed_by=observed_by)
    except OSError as exc:  # EIO from /proc/self/mem, a vanished network file, a bad stdin
        raise UsageError(f"cannot read the log {path}: {exc.strerror or exc}", hint) from None


_MB_VALUE = re.compile(r"\d{1,15}(?:\.\d{1,6})?")


def _working_set(scan: LogScan | None, notes: list[str]) -> int | None:
    """The device's recommendedMaxWorkingSetSize from the log (llama.cpp prints MB = 1e6 bytes);
    None, with a note, when the log's value is not a plausible number."""
    if scan is None:
        return None
    value = scan.fact("memory.recommended-working-set")
    if not value:
        return None
    if not _MB_VALUE.fullmatch(value):
        shown = value if len(value) <= 24 else f"{value[:12]}… ({len(value)} characters)"
        notes.append(f"recommendedMaxWorkingSetSize = {shown} MB in the log is not a size: ignored")
        return None
    return int(Fraction(value) * 1_000_000)


def diagnose(inputs: DoctorInputs, *, stdin: BinaryIO | None = None) -> DoctorReport:
    """The report. On Ctrl-C: the report of the stages done, ``complete=False`` and the stage
    that was cut short in ``interrupted_during`` (the caller writes it, then exits 130)."""
    findings: list[Finding] = []
    notes: list[str] = []
    state: dict[str, Any] = {}
    complete, stage = True, ""
    try:
        _stages(inputs, stdin, findings, notes, inputs.params, state)
    except KeyboardInterrupt:
        complete, stage = False, str(state.get("stage", ""))
        notes.append(f"interrupted (Ctrl-C) while checking the {stage}: this report is incomplete")
    gguf_info = state.get("gguf")
    return DoctorReport(
        findings=sort_findings(findings),
        inputs=inputs_record(inputs),
        log=state.get("scan"),
        gguf=gguf_summary(gguf_info) if gguf_info else None,
        memory=state.get("memory"),
        system=state.get("system"),
        build=state.get("build"),
        dry_run=state.get("dry_run"),
        notes=tuple(notes),
        complete=complete,
        interrupted_during=stage,
    )


def _stages(
    inputs: DoctorInputs,
    stdin: BinaryIO | None,
    findings: list[Finding],
    notes: list[str],
    params: RunParams,
    state: dict[str, Any],
) -> None:
    """Run the checks in order; what each produced goes into ``state`` as soon as it is done."""
    scan = None
    if inputs.log is not None:
        state["stage"] = "log"
        scan, found = _read_log(inputs.log, params, inputs.observed_by_log, stdin)
        state["scan"] = scan
        findings += found
        if not scan.recognised:
            notes.append(f"no llama.cpp log lines found in {scan.source}: the log was not diagnosed")
        if scan.empty:
            notes.append(f"the log {scan.source} is empty: nothing to classify")
        elif scan.binary:
            notes.append(f"the log {scan.source} looks like binary data, not text: read it as text anyway")

    if inputs.gguf is not None:
        state["stage"] = "gguf"
        try:
            archs = known_architectures(inputs.tree) if inputs.tree else frozenset()
            check = check_gguf(inputs.gguf, known_archs=archs)
        except OSError as exc:
            raise GGUFError(
                f"cannot read the GGUF {inputs.gguf}: {exc.strerror or exc}", "check the path and permissions"
            ) from exc
        gguf_info = state["gguf"] = check.info
        findings += check.findings
        if not check.findings or all(f.class_id != "gguf-format" for f in check.findings):
            mem_plan = state["memory"] = _plan(gguf_info, inputs, scan, notes)
            if mem_plan is not None:
                findings += plan_findings(mem_plan, observed_by="gguf")

    if inputs.build is not None:
        state["stage"] = "build"
        state["build"], found = check_build(inputs.build, inputs.profile)
        findings += found

    missing = _missing_kernels(findings)
    if missing and inputs.cache_dir is not None:
        state["stage"] = "dry-run"
        state["dry_run"], found = _dry_run_missing(missing, inputs, state.get("gguf"), notes)
        findings += found

    if inputs.system:
        state["stage"] = "system"
        status = state["system"] = probe()
        if not status.available:
            notes.append(f"memory pressure / other GPU users: {status.reason}")
        findings += system_findings(status)


_FUNCTION_NOT_FOUND = re.compile(r"Function (kernel_\w+) was not found in the library")
MAX_DRY_RUN_KERNELS = 3


def _missing_kernels(findings: list[Finding]) -> list[str]:
    names = [
        m.group(1)
        for f in findings
        if f.class_id == "kernel-missing"
        for e in f.evidence
        for m in _FUNCTION_NOT_FOUND.finditer(e.text)
    ]
    return list(dict.fromkeys(names))[:MAX_DRY_RUN_KERNELS]


def _tree_for_dry_run(inputs: DoctorInputs, notes: list[str]) -> Path | None:
    """--tree; else the checkout --build's CMakeCache.txt names; else the fetchable tree whose Metal
    library --build ships byte for byte (verify's tree match over the cached sdists)."""
    if inputs.tree is not None:
        return inputs.tree
    if inputs.build is None:
        return None
    path = (inputs.build if inputs.build.is_dir() else inputs.build.parent) / "CMakeCache.txt"
    home = read_cmake_cache(path).get("CMAKE_HOME_DIRECTORY") if path.is_file() else None
    if home and has_metal_sources(Path(home)):
        return Path(home)
    if inputs.sdists_dir is None or inputs.cache_dir is None:
        return None
    tree, result = match_build(discover(inputs.build).files, inputs.sdists_dir, inputs.cache_dir)
    if result is not None:
        notes.append(f"dry-run tree: {result.describe()}")
    return tree


def _dry_run_missing(
    kernels: list[str], inputs: DoctorInputs, info: GGUFInfo | None, notes: list[str]
) -> tuple[list[KernelDryRun], list[Finding]]:
    """The dry run of each missing kernel's case (the op, sized from the GGUF), on the tree."""
    assert inputs.cache_dir is not None
    tree = _tree_for_dry_run(inputs, notes)
    runs: list[KernelDryRun] = []
    found: list[Finding] = []
    for kernel in kernels:
        with tempfile.TemporaryDirectory(prefix="doctor-dryrun-") as tmp:
            got = dry_run_kernel(kernel, info, tree, inputs.cache_dir, Path(tmp))
        if isinstance(got, str):
            notes.append(f"dry-run: {got}")
            continue
        runs.append(got)
        per = "; ".join(f"{p}: {v}" for p, v in got.verdicts.items())
        if got.named:
            summary = (
                f"dry-run with the tree {got.tree}: the case ({', '.join(got.from_gguf)}) fails the same way "
                f"({per}): this tree has the gap too"
            )
            fix = "the fix above; this tree does not have it either: update past it"
        else:
            summary = (
                f"dry-run with the tree {got.tree}: the case ({', '.join(got.from_gguf)}) does not name {kernel} "
                f"({per}): this tree's host code and library agree on it, so the build that failed is not this "
                "tree's (or the library it loaded is older than its host code)"
            )
            fix = "run a build of this tree (its library and host code come from one checkout)"
        found.append(
            Finding(
                class_id="kernel-missing",
                title="the missing kernel's case, dry-run",
                severity="info",
                confidence=1.0,
                summary=summary,
                fix=fix,
                observed_by="dry-run",
                evidence=(Evidence(f"test-file line: {got.line}"),),
                order=99,
            )
        )
    return runs, found


def _plan(info: GGUFInfo, inputs: DoctorInputs, scan: LogScan | None, notes: list[str]) -> Any:
    try:
        shape = shape_from_gguf(info)
    except UsageError as exc:
        notes.append(f"memory plan skipped: {exc.message}")
        return None
    if inputs.memory:
        memory, source = parse_size(inputs.memory), "--memory"
    else:
        probed = machine_memory()
        if probed is None:
            notes.append("memory plan skipped: machine memory unknown here (give --memory 64GiB)")
            return None
        memory, source = probed
    p = inputs.params
    type_k, type_v = p.cache_type_k or "f16", p.cache_type_v or "f16"
    flash = bool(p.flash_attn) or type_v != "f16"
    mem_plan = plan(
        shape,
        memory,
        memory_source=source,
        working_set_bytes=_working_set(scan, notes),
        n_ctx=p.n_ctx,
        type_k=type_k,
        type_v=type_v,
        flash_attn=flash,
        n_ubatch=p.n_ubatch or 512,
    )
    program = find_program(inputs.build)
    if program is None or inputs.gguf is None:
        return mem_plan
    # the context compared: the one asked for, else the largest that fits by our plan
    n_ctx = mem_plan.requested.n_ctx if mem_plan.requested else (mem_plan.max_context[0].n_ctx or CTX_STEP)
    ours = estimate(
        shape, n_ctx, mem_plan.budget_bytes, type_k=type_k, type_v=type_v, flash_attn=flash,
        n_ubatch=p.n_ubatch or 512,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="doctor-fit-") as tmp:
        fit = run_fit_params(program, fit_args(inputs.gguf, p, n_ctx), Path(tmp) / "fit-params.log")
    return replace(mem_plan, upstream=fit, upstream_ours=ours)


def inputs_record(inputs: DoctorInputs) -> dict[str, Any]:
    data = to_jsonable(replace(inputs))
    return data if isinstance(data, dict) else {}
