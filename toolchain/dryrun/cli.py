"""``llama-toolchain dryrun run …`` and ``llama-toolchain dryrun validate``."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..cli import settings_from
from ..config import Settings
from ..core.jsonio import atomic_write_text, to_jsonable
from ..core.locking import work_dir_lock
from ..errors import DryRunFindingsError, ReportError, UsageError, VerifyError
from ..log import LOG
from ..options import profiles_of, tree_of, tree_options
from ..records import (
    DRYRUN,
    DRYRUN_HISTORY,
    DRYRUN_SHIPPED,
    DRYRUN_SWEEP,
    DRYRUN_VALIDATION,
    read_record,
    write_report,
)
from .history import git_source, git_versions, history, load_cases, sdist_source, sdist_versions, table_lines
from .records import VERDICTS, DryRun, ProfileResult
from .run import dry_run
from .shipped import check_shipped, embedded_text
from .sweep import FAMILIES, Sweep, diff, sweep
from .sweep_text import console_lines, markdown_lines
from .validate import validate

REPORT = (DRYRUN.name, DRYRUN.kind)
VALIDATION_REPORT = (DRYRUN_VALIDATION.name, DRYRUN_VALIDATION.kind)
SHIPPED_REPORT = (DRYRUN_SHIPPED.name, DRYRUN_SHIPPED.kind)


def _dry_run(
    args: argparse.Namespace, settings: Settings, tree: Path, batches: list[tuple[str, Path | None]]
) -> DryRun:
    # the scratch files under work/dryrun are one run's: two at once mixed their records (#32 G)
    with work_dir_lock(settings.work_dir):
        return dry_run(
            tree,
            settings.cache_dir,
            settings.work_dir / "dryrun",
            batches=batches,
            profiles=profiles_of(args),
        )


def describe(p: ProfileResult) -> str:
    parts = [f"{p.column:28} {p.verdict:15}", ", ".join(f"{k} {v}" for k, v in p.counts.items())]
    return "  ".join(parts)


def print_findings(run: DryRun, limit: int = 10) -> None:
    for line in run.standin:
        LOG.info(line)
    for batch in run.runs:
        LOG.info(f"{batch.batch} ({batch.source}): {batch.cases} cases")
        for p in batch.results:
            LOG.info("    " + describe(p))
            for f in p.findings[:limit]:
                what = (
                    ", ".join(f"{m.base} ({m.name})" for m in f.missing)
                    or f.abort
                    or ", ".join(f"{lim.what} {lim.value} > {lim.limit} in {lim.kernel}" for lim in f.limits)
                )
                LOG.info(f"        {f.verdict}: {f.op} {f.case[:160]} -> {what[:300]}")
            if len(p.findings) > limit:
                LOG.info(f"        … {len(p.findings) - limit} more in the report")


def cmd_run(args: argparse.Namespace) -> int:

    settings = settings_from(args)
    fail_on = _fail_on(args)
    tree = tree_of(args, settings.src_dir)
    batches: list[tuple[str, Path | None]] = []
    if args.generation_ops:
        batches.append(("generation", args.generation_ops))
    if args.prompt_ops:
        batches.append(("prompt", args.prompt_ops))
    for ops in args.ops or ():
        batches.append(("ops", ops))
    if not batches:
        raise UsageError(
            "nothing to encode",
            "give --ops FILE (or --generation-ops/--prompt-ops), or use `dryrun validate`",
        )
    result = _dry_run(args, settings, tree, batches)
    name, kind = REPORT
    path = write_report(settings.reports_dir / name, kind, result)
    if args.json:
        print(json.dumps(to_jsonable(result), indent=2))
    LOG.info(f"dry run on {result.commit}: encoded by the tree's Metal backend, nothing ran on a device")
    print_findings(result)
    check_findings(result, fail_on, path)
    LOG.ok(f"dry run report: {path}")
    return 0


# what coverage counts as a crash cell (a Mac dies at the first token): the default of --fail-on
FAIL_ON = ("missing-kernel", "encoder-abort", "over-limit")


def _fail_on(args: argparse.Namespace) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in args.fail_on.split(",") if s.strip() and s.strip() != "none")
    bad = [s for s in chosen if s not in VERDICTS]
    if bad:
        raise UsageError(
            f"unknown verdict(s) in --fail-on: {', '.join(bad)}", f"verdicts: {', '.join(VERDICTS)}"
        )
    return chosen


def check_findings(run: DryRun, fail_on: tuple[str, ...], report: Path) -> None:
    """Raise ``DryRunFindingsError`` for a case with a ``fail_on`` verdict, or when nothing was encoded."""
    found = [
        f"{p.column} ({b.batch} batch): {p.counts[v]} {v}"
        for b in run.runs
        for p in b.results
        for v in fail_on
        if p.counts.get(v)
    ]
    encoded = any(v not in ("unsupported", "error") for b in run.runs for p in b.results for v in p.counts)
    if found:
        raise DryRunFindingsError(
            f"dry run: a Mac would fail at the first token: {'; '.join(found)} (report: {report})",
            "each case is listed above with its kernel names; `--fail-on none` reports without failing",
        )
    if not encoded:
        raise DryRunFindingsError(
            f"dry run: nothing was encoded (every case unsupported or ended in an error; report: {report})",
            "a case supports_op rejects runs on the CPU on a Mac; nothing of the Metal path was checked",
        )


def cmd_validate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    tree = tree_of(args, settings.src_dir)
    with work_dir_lock(settings.work_dir):
        report = validate(
            tree,
            settings.cache_dir,
            settings.work_dir / "dryrun",
            profiles=profiles_of(args),
            ops=args.op,
        )
    name, kind = VALIDATION_REPORT
    path = write_report(settings.reports_dir / name, kind, report)
    for line in report.summary_lines():
        LOG.info(line)
    if not report.ok:
        raise DryRunFindingsError(
            f"dry-run validation: {report.reason} (report: {path})",
            "each finding is listed with its case and kernel names; a stand-in gap must be fixed in toolchain/dryrun",
        )
    LOG.ok(f"dry-run validation: {report.reason} ({path})")
    return 0


def cmd_shipped(args: argparse.Namespace) -> int:
    embedded_text(args.binary)  # a damaged binary is refused before the dry run is built (exit 32)
    settings = settings_from(args)
    tree = tree_of(args, settings.src_dir)
    batches: list[tuple[str, Path | None]] = [("ops", o) for o in args.ops or ()] or [("built-in", None)]
    result = _dry_run(args, settings, tree, batches)
    libs = check_shipped(args.binary, result)
    name, kind = SHIPPED_REPORT
    path = write_report(settings.reports_dir / name, kind, {"libraries": libs, "dry_run": result})
    if not libs:
        raise VerifyError(
            f"{args.binary}: no __DATA,__ggml_metallib section (the Metal library is not embedded)",
            "check default.metallib beside the programs instead (llama-toolchain verify)",
        )
    lacking = [(lib, p) for lib in libs for p in lib.profiles if p.missing]
    for lib in libs:
        LOG.info(f"{lib.path} ({lib.arch}): embedded library {lib.bytes} bytes, {lib.kernels} kernels")
        for p in lib.profiles:
            LOG.info(
                f"    {p.profile:16} needs {p.needed}, lacks {len(p.missing)}: {' '.join(p.missing[:12])}"
            )
    if lacking:
        raise VerifyError(
            "the embedded Metal library lacks kernels the dry run needs: "
            + "; ".join(f"{p.profile} ({lib.arch}): {', '.join(p.missing[:8])}" for lib, p in lacking)
            + f" (report: {path})",
            "rebuild so that the library and the host code come from the same tree",
        )
    LOG.ok(f"the embedded library holds every kernel the dry run needs ({path})")
    return 0


def sweep_findings(result: Sweep, fail_on: tuple[str, ...], report: Path) -> None:
    """Exit 73 when nothing was encoded, or when a class has a ``fail_on`` verdict."""
    encoded = any(
        v not in ("unsupported", "error") and n
        for b in result.batches
        for c in b.counts.values()
        for v, n in c.items()
    )
    if not encoded:
        raise DryRunFindingsError(
            f"dry-run sweep: nothing was encoded (every case unsupported or ended in an error; report: {report})",
            "nothing of the Metal path was checked: no class can be named",
        )
    bad = [c for c in result.classes if c.verdict in fail_on]
    if bad:
        raise DryRunFindingsError(
            f"dry-run sweep: {len(bad)} class(es) with verdicts in --fail-on ({', '.join(fail_on)}); report: {report}",
            "each class is listed above with its minimal case; `--fail-on none` (the default) only reports",
        )


PREVIOUS_REPORT = "dryrun-sweep.previous.json"  # the last sweep of another tree, kept when compared


def _same_tree(a: Sweep, b: Sweep) -> bool:
    """The same commit, or (a tree outside git: commit "unknown") the same dry-run program content."""
    return (a.commit == b.commit and a.commit != "unknown") or a.program == b.program


def cmd_sweep(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    fail_on = _fail_on(args)
    tree = tree_of(args, settings.src_dir)
    families = [f.strip() for f in args.family.split(",") if f.strip()] if args.family else None
    unknown = sorted(set(families or ()) - set(FAMILIES))
    if unknown:  # checked before anything is built or swept
        raise UsageError(f"unknown sweep families: {', '.join(unknown)}", f"families: {', '.join(FAMILIES)}")
    base = read_record(args.baseline, DRYRUN_SWEEP, Sweep) if args.baseline else None
    base_path: Path | None = args.baseline
    previous = settings.reports_dir / DRYRUN_SWEEP.name
    found: Sweep | None = None
    if base is None and not args.no_baseline and previous.is_file():
        # the last sweep in this project (before `nox -s update`): compared with when of another tree
        try:
            found = read_record(previous, DRYRUN_SWEEP, Sweep)
        except ReportError as exc:
            LOG.warn(f"the previous sweep report is not compared with: {exc.message}")
    with work_dir_lock(settings.work_dir):
        result = sweep(
            tree,
            settings.cache_dir,
            settings.work_dir / "dryrun",
            profiles=profiles_of(args),
            families=families,
        )
    if found is not None and not _same_tree(found, result):
        base_path = settings.reports_dir / PREVIOUS_REPORT
        atomic_write_text(base_path, previous.read_text(encoding="utf-8"))
        base = found
    if base is not None and base_path is not None:
        result = replace(result, baseline=diff(result, base, base_path))
    name, kind = (DRYRUN_SWEEP.name, DRYRUN_SWEEP.kind)
    path = write_report(settings.reports_dir / name, kind, result)
    atomic_write_text(settings.reports_dir / "dryrun-sweep.md", "\n".join(markdown_lines(result, "#")) + "\n")
    if args.json:
        print(json.dumps(to_jsonable(result), indent=2))
    LOG.info(
        f"dry-run sweep of {result.commit}: encoded by the tree's Metal backend, nothing ran on a device"
    )
    for line in console_lines(result):
        LOG.info(line)
    for c in result.classes:
        if c.verdict in ("error", "invalid-case"):
            LOG.warn(f"not judged ({c.blame}): {c.what} ({c.cases} cases)")
    sweep_findings(result, fail_on, path)
    LOG.ok(f"dry-run sweep: {len(result.crash_classes())} class(es) of latent crashes; report {path}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    cases = load_cases(args.cases)
    profiles = profiles_of(args) or ["apple7", "apple9", "apple10"]
    if args.git:
        repo = tree_of(args, settings.src_dir)
        versions = git_versions(repo, args.from_, args.to)
        tree_for, source = git_source(settings, repo), f"git {repo}"
    else:
        versions = sdist_versions(settings, args.from_, args.to)
        tree_for, source = sdist_source(settings), "pypi-sdist llama-cpp-python"
    LOG.info(
        f"history: {len(cases)} case(s) over {len(versions)} versions of {source}, profiles {', '.join(profiles)}"
    )
    with work_dir_lock(settings.work_dir):
        result = history(versions, tree_for, cases, settings, profiles, every=args.every, source=source)
    path = write_report(settings.reports_dir / DRYRUN_HISTORY.name, DRYRUN_HISTORY.kind, result)
    for line in table_lines(result):
        LOG.info(line)
    judged = any(s in ("crash", "silent") for t in result.transitions for s in t.states)
    if not judged:
        raise DryRunFindingsError(
            f"dry-run history: no case could be judged on any version (report: {path})",
            "each version's reason is in the report; nothing was checked",
        )
    LOG.ok(f"dry-run history: {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dr = sub.add_parser(
        "dryrun", help="encode ops with the tree's real Metal backend on a stand-in device, per GPU family"
    )
    dsub = dr.add_subparsers(dest="dryrun_command", metavar="SUBCOMMAND", required=True)

    def shared(p: argparse.ArgumentParser) -> None:
        tree_options(
            p, "comma-separated profiles (default: apple7,apple9,apple10,paravirtual, those the tree knows)"
        )

    run = dsub.add_parser("run", help="dry-run a model's exported graph ops (test-export-graph-ops files)")
    shared(run)
    run.add_argument("--ops", type=Path, action="append", help="an ops file, encoded as it is (repeatable)")
    run.add_argument("--generation-ops", type=Path, default=None, help="ops exported at the 1-token batch")
    run.add_argument("--prompt-ops", type=Path, default=None, help="ops exported at a >= 512-token batch")
    run.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    run.add_argument(
        "--fail-on",
        default=",".join(FAIL_ON),
        help=f"verdicts that fail the run, exit 73 (default: {','.join(FAIL_ON)}; none: report only)",
    )
    run.set_defaults(func=cmd_run)

    val = dsub.add_parser(
        "validate", help="every built-in test-backend-ops case per profile; fails on unexplained findings"
    )
    shared(val)
    val.add_argument("-o", "--op", default=None, help="only these ops (test-backend-ops -o, comma-separated)")
    val.set_defaults(func=cmd_validate)

    sh = dsub.add_parser(
        "shipped", help="check a binary's embedded Metal library against the kernels the dry run needs"
    )
    shared(sh)
    sh.add_argument("binary", type=Path, help="a Mach-O (library, program or object) that embeds the library")
    sh.add_argument(
        "--ops", type=Path, action="append", help="a model's ops file (default: the built-in cases)"
    )
    sh.set_defaults(func=cmd_shipped)

    sw = dsub.add_parser(
        "sweep",
        help="generate op cases over what the tree's Metal encoders branch on; report what supports_op "
        "accepts but cannot be encoded (latent crashes), grouped into classes",
    )
    shared(sw)
    sw.add_argument(
        "--family",
        default=None,
        help=f"only these case families, comma-separated ({', '.join(FAMILIES)}; default: all)",
    )
    sw.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="an earlier dryrun-sweep.json (e.g. the previous pin's): say which latent crashes this tree "
        "fixes and which are new",
    )
    sw.add_argument(
        "--no-baseline",
        action="store_true",
        help="do not compare with the project's previous sweep report of another commit (kept as "
        f"{PREVIOUS_REPORT}; compared by default)",
    )
    sw.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    sw.add_argument(
        "--fail-on",
        default="none",
        help="verdicts whose classes fail the run, exit 73 (default none: report only; e.g. missing-kernel)",
    )
    sw.set_defaults(func=cmd_sweep)

    hi = dsub.add_parser(
        "history",
        help="the version where each case starts and stops crashing: dry runs over the llama-cpp-python "
        "sdists (or, with --git, the commits of --tree's repository) between --from and --to, bisected",
    )
    shared(hi)
    hi.add_argument(
        "cases", type=Path, help="a corpus TOML ([[case]] with [case.replay]) or a dryrun-sweep.json"
    )
    hi.add_argument("--from", dest="from_", required=True, help="the first version (sdist) or commit (--git)")
    hi.add_argument("--to", required=True, help="the last version or commit")
    hi.add_argument("--git", action="store_true", help="--from/--to are commits of the tree's git repository")
    hi.add_argument("--every", action="store_true", help="dry-run every version instead of bisecting")
    hi.set_defaults(func=cmd_history)
