"""``llama-toolchain doctor [LOG|-] [--gguf PATH] [run params] [--memory SIZE] [--build PATH] [--tree DIR]
[--no-dry-run] [--json]``
and ``llama-toolchain doctor run [options] -- CMD …``.

Exit status: 0 when no problem was found, ``DoctorFindingsError.exit_code`` (60) when one was;
bad input gets its own typed error (usage 2, bad GGUF file 42, …).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import settings_from
from ..core.jsonio import to_jsonable
from ..core.locking import work_dir_lock
from ..errors import DoctorFindingsError, InterruptedError_, NoLogLinesError, ToolchainError, UsageError
from ..log import LOG
from ..option_types import harden
from ..options import common_options
from ..records import DOCTOR, SCHEMA_VERSION, write_report
from .classify import RunParams
from .diagnose import DoctorInputs, diagnose, inputs_record
from .findings import DoctorReport, Finding, sort_findings
from .memory import gib, parse_size
from .params import run_params
from .run import params_from_command, run_command, run_findings

REPORT_KIND = DOCTOR.kind
DEFAULT_RUN_TIMEOUT = 1800.0


def _params(args: argparse.Namespace, base: RunParams | None = None) -> RunParams:
    """doctor's own run options (checked: UsageError naming the option), over ``base``."""
    base = base or RunParams()
    given = run_params(ctx=args.ctx, ngl=args.ngl, ub=args.ub, ctk=args.ctk, ctv=args.ctv)
    return RunParams(
        n_ctx=given.n_ctx if args.ctx is not None else base.n_ctx,
        n_gpu_layers=given.n_gpu_layers if args.ngl is not None else base.n_gpu_layers,
        cache_type_k=given.cache_type_k or base.cache_type_k,
        cache_type_v=given.cache_type_v or base.cache_type_v,
        n_ubatch=given.n_ubatch if args.ub is not None else base.n_ubatch,
        flash_attn=True if args.fa else base.flash_attn,
    )


def _check_memory(args: argparse.Namespace) -> None:
    if args.memory is not None:
        parse_size(args.memory)  # UsageError naming --memory, before anything is read


def _print_finding(f: Finding) -> None:
    head = f"{f.class_id}: {f.summary} (confidence {f.confidence:.2f}, observed by {f.observed_by})"
    if f.is_problem:
        if f.severity == "error":
            LOG.error(head, title=f"doctor: {f.title}")
        else:
            LOG.warn(f"{f.title}: {head}")
    else:
        LOG.info(f"note: {head}")
    for ev in f.evidence:
        where = f"line {ev.line}: " if ev.line is not None else ""
        LOG.info(f"    {where}{ev.text}")
    if f.is_problem:
        LOG.info(f"    fix: {f.fix}")


def print_report(report: DoctorReport) -> None:
    for note in report.notes:
        LOG.info(f"note: {note}")
    if report.memory is not None:
        m = report.memory
        rows = ", ".join(f"{r.cache_type}: -c {r.n_ctx}" for r in m.max_context)
        LOG.info(
            f"memory plan for {m.model}: budget {gib(m.budget_bytes)} ({m.budget_rule}); largest -c: {rows}"
        )
    for f in report.findings:
        _print_finding(f)
    problems = report.problems
    if problems:
        first = next((f for f in problems if f.severity == "error"), problems[0])
        LOG.info(f"most likely first: {first.class_id} ({first.title}) -> {first.fix}")
    elif report.log is None or report.log.recognised:  # else: its own error (finish), never ✓
        LOG.ok("doctor: no problem found")


def _started(args: argparse.Namespace, inputs: DoctorInputs) -> None:
    """Replace the previous run's doctor.json at once: until this run ends (or if it is killed),
    the report says it is incomplete."""
    settings = settings_from(args)
    placeholder = DoctorReport(
        findings=(),
        inputs=inputs_record(inputs),
        notes=("doctor is running (or was killed): no result yet",),
        complete=False,
        interrupted_during="start",
    )
    write_report(settings.reports_dir / DOCTOR.name, REPORT_KIND, placeholder)


def finish(args: argparse.Namespace, report: DoctorReport) -> int:
    settings = settings_from(args)
    path = write_report(settings.reports_dir / DOCTOR.name, REPORT_KIND, report)
    print_report(report)
    LOG.info(f"report: {path}")
    if not report.complete:
        raise InterruptedError_(
            f"interrupted while checking the {report.interrupted_during}: {path} is incomplete "
            "(complete: false; the findings are those of the checks done)",
            "run doctor again and let it finish",
        )
    if args.json:
        print(
            json.dumps(
                {"schema_version": SCHEMA_VERSION, "kind": REPORT_KIND, **to_jsonable(report)}, indent=2
            )
        )
    if report.problems:
        return DoctorFindingsError.exit_code
    if report.log is not None and not report.log.recognised:
        scan = report.log
        raise NoLogLinesError(
            f"no llama.cpp log lines found in {scan.source} ({scan.lines} line(s), {scan.bytes} bytes): "
            "nothing was diagnosed, which is not a pass",
            "give the output of a llama.cpp program (llama-cli, llama-server, …: stderr included, "
            "2>&1), or run it under `llama-toolchain doctor run -- CMD …`",
        )
    return 0


def _inputs(args: argparse.Namespace, log: Path | None, params: RunParams, gguf: Path | None) -> DoctorInputs:
    settings = settings_from(args)
    tree = args.tree or (settings.src_dir if settings.src_dir.is_dir() else None)
    return DoctorInputs(
        log=log,
        gguf=gguf,
        params=params,
        memory=args.memory,
        build=args.build,
        profile=args.profile,
        tree=tree,
        system=not args.no_system,
        cache_dir=None if args.no_dry_run else settings.cache_dir,
        sdists_dir=None if args.no_dry_run else settings.sdists_dir,
    )


def _split_rest(args: argparse.Namespace) -> list[str]:
    """Parse the options given after LOG / run into ``args``; return the command (for ``run``)."""
    rest = list(args.rest or [])
    command: list[str] = []
    passthrough = list(getattr(args, "passthrough", ()) or ())
    if passthrough:  # toolchain.cli hands everything after `--` to the stage
        command = passthrough if args.target == "run" else []
        if args.target != "run":
            raise UsageError(
                f"unexpected arguments after --: {' '.join(passthrough)}",
                "to run a command: llama-toolchain doctor run -- CMD ...",
            )
    elif args.target == "run":
        if "--" in rest:
            cut = rest.index("--")
            rest, command = rest[:cut], rest[cut + 1 :]
        else:
            rest, command = [], rest
    _, unknown = _late_options().parse_known_args(rest, namespace=args)
    if unknown:
        raise UsageError(
            f"unexpected arguments: {' '.join(unknown)}",
            "to run a command: llama-toolchain doctor run -- CMD ...",
        )
    LOG.quiet = bool(args.quiet)
    return command


def cmd_doctor(args: argparse.Namespace) -> int:
    command = _split_rest(args)
    if args.target == "run":
        return cmd_run(args, command)
    log = Path(args.target) if args.target else None
    params = _params(args)
    _check_memory(args)
    if log is None and args.gguf is None and args.build is None and args.ctx is None:
        raise UsageError(
            "nothing to diagnose",
            "give a log (or - for stdin), --gguf MODEL, --build PATH, or doctor run -- CMD",
        )
    inputs = _inputs(args, log, params, args.gguf)
    _started(args, inputs)
    report = _diagnosed(args, inputs)
    return finish(args, report)


def _diagnosed(args: argparse.Namespace, inputs: DoctorInputs) -> DoctorReport:
    """:func:`diagnose`; when an input turns out unusable, the report says so (not the "start"
    placeholder of :func:`_started`) before the error goes to the user (#32 D)."""
    try:
        return diagnose(inputs)
    except ToolchainError as exc:
        failed = DoctorReport(
            findings=(),
            inputs=inputs_record(inputs),
            notes=(f"doctor stopped: {exc.message}",),
            complete=False,
            interrupted_during="",
        )
        write_report(settings_from(args).reports_dir / DOCTOR.name, REPORT_KIND, failed)
        raise


def cmd_run(args: argparse.Namespace, command: list[str]) -> int:
    # doctor-run.log and doctor.json are one run's: two at once blamed one for the other's
    # GGML_ASSERT (#32 G)
    with work_dir_lock(settings_from(args).work_dir):
        return _run_locked(args, command)


def _run_locked(args: argparse.Namespace, command: list[str]) -> int:
    settings = settings_from(args)
    base, model = params_from_command(command)
    params = _params(args, base)
    _check_memory(args)
    log_path = settings.reports_dir / "doctor-run.log"
    LOG.info(f"doctor run: {' '.join(command)} (timeout {args.timeout:.0f} s, output -> {log_path})")
    gguf = args.gguf or (model if model is not None and model.is_file() else None)
    inputs = _inputs(args, log_path, params, gguf)
    _started(args, inputs)
    result = run_command(command, log_path, timeout=args.timeout)
    report = _diagnosed(args, inputs)
    extra = [] if result.interrupted else run_findings(result)

    stopped = result.interrupted and report.complete
    report = DoctorReport(
        findings=sort_findings([*report.findings, *extra]),
        inputs=report.inputs,
        log=report.log,
        gguf=report.gguf,
        memory=report.memory,
        system=report.system,
        build=report.build,
        run=result,
        notes=(
            *report.notes,
            *(["interrupted (Ctrl-C) during the run: the log is its output so far"] if stopped else []),
        ),
        complete=report.complete and not result.interrupted,
        interrupted_during="run" if stopped else report.interrupted_during,
    )
    return finish(args, report)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gguf", type=Path, metavar="PATH", help="check this GGUF and plan its memory")
    group = p.add_argument_group("the run's parameters (as llama.cpp takes them)")
    group.add_argument("-c", "--ctx-size", dest="ctx", metavar="N", help="context size (0: the model's)")
    group.add_argument(
        "-ngl", "--gpu-layers", dest="ngl", metavar="N", help="layers on the GPU (or auto, all)"
    )
    group.add_argument("-ctk", "--cache-type-k", dest="ctk", metavar="T", help="K cache type (f16, q8_0, …)")
    group.add_argument("-ctv", "--cache-type-v", dest="ctv", metavar="T", help="V cache type")
    group.add_argument("-ub", "--ubatch-size", dest="ub", metavar="N", help="physical batch size")
    group.add_argument("-fa", "--flash-attn", dest="fa", action="store_true", help="flash attention on")
    p.add_argument(
        "--memory", metavar="SIZE", help="machine memory, e.g. 64GiB (default: probe this machine)"
    )
    p.add_argument(
        "--build", type=Path, metavar="PATH", help="check a build dir or binary (uses the verify stage)"
    )
    p.add_argument(
        "--profile", default="metal", help="backend profile the build should carry (default: metal)"
    )
    p.add_argument(
        "--tree",
        type=Path,
        metavar="PATH",
        help="llama.cpp tree whose architectures the GGUF must match, and with which a missing kernel's case is "
        "dry-run (default: the work dir's src, or --build's CMakeCache.txt)",
    )
    p.add_argument("--no-system", action="store_true", help="do not probe memory pressure / GPU users")
    p.add_argument(
        "--no-dry-run",
        action="store_true",
        help="do not dry-run a missing kernel's case with the tree (the first time builds the dry run: minutes)",
    )
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_RUN_TIMEOUT, help="doctor run: seconds before stopping"
    )
    p.add_argument("--json", action="store_true", help="also print the report as JSON on stdout")


def _late_options() -> argparse.ArgumentParser:
    """Options given after LOG / run (argparse stops at the first positional's remainder)."""
    late = argparse.ArgumentParser(prog="llama-toolchain doctor", add_help=False)
    common_options(late)
    _options(late)
    return harden(late)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="diagnose a failed or slow llama.cpp run (log, GGUF, memory, build, system)",
        description="Walk the Apple Silicon diagnostic order with evidence. Forms: "
        "`doctor [LOG|-] [options]` and `doctor run [options] -- CMD ...`.",
    )
    common_options(p)
    _options(p)
    p.add_argument("target", nargs="?", metavar="LOG|-|run", help="a log file, - for stdin, or `run`")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="[options] [-- CMD ...]", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_doctor)
