"""``llama-toolchain coverage``: the kernel-coverage matrix of the current build (``nox -s coverage``).

Exit codes: 0 — every cell ran and none is in ``--fail-on`` (default crash, hang, wrong), and
``--baseline`` (when given) says the bump is safe; 50 (:class:`CoverageFindingsError`) — findings,
or no cell at all (nothing was covered), all four reports written; 2 — a bad ``--baseline``
(checked before any cell runs); 130 — Ctrl-C, a partial report written and marked incomplete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..builder.manifest import last_build_dir
from ..cli import settings_from
from ..config import Settings
from ..core.locking import work_dir_lock
from ..errors import CoverageFindingsError, InterruptedError_, UsageError
from ..log import LOG
from ..options import arch_option, chosen_archs, common_options
from .engine.inputs import DEFAULT_TYPES, parse_model_arg
from .engine.run import CoverageRequest, with_baseline
from .engine.shard import merge_runs
from .metal.dryrun import DEFAULT_PROFILES as DRYRUN_PROFILES
from .metal.predicted import DEFAULT_PROFILES
from .metal.sweep import with_sweep
from .pipeline import CoverageJob, run_coverage, sigterm_stops
from .records import COLUMNS, SEVERITY, Cell, CoverageRun
from .reports.baseline import load_baseline, rank
from .reports.write import write_reports


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def default_build_dir(settings: Settings) -> Path:
    path = last_build_dir(settings.reports_dir)
    if path is not None and path.is_dir():
        return path
    dirs = (
        sorted(p for p in settings.build_root.glob("*-*") if (p / "bin").is_dir())
        if settings.build_root.is_dir()
        else []
    )
    if len(dirs) == 1:
        return dirs[0]
    raise UsageError(
        "no build to cover: no build-manifest.json in the reports and "
        + (
            f"{len(dirs)} build dirs under {settings.build_root}"
            if dirs
            else f"nothing under {settings.build_root}"
        ),
        "run `nox -s build -- --targets build,coverage` first, or pass --build-dir",
    )


def request_from(args: argparse.Namespace, settings: Settings) -> CoverageRequest:
    build_dir = (args.build_dir or default_build_dir(settings)).resolve()
    columns = _csv(args.columns) or COLUMNS
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise UsageError(f"unknown column(s): {', '.join(unknown)}", f"choose from {', '.join(COLUMNS)}")
    models = tuple(parse_model_arg(m) for m in args.model or ())
    return CoverageRequest(
        build_dir=build_dir,
        reports_dir=settings.reports_dir,
        scratch_dir=settings.work_dir / "coverage",
        architectures=tuple(chosen_archs(args) or ()),
        types=_csv(args.types) or DEFAULT_TYPES,
        backends=_csv(args.backends),
        columns=columns,
        timeout=args.timeout,
        jobs=args.jobs or 0,
        models=models,
        convert_report=args.convert_report,
        use_archs_models=not args.no_archs_models,
        variants=_csv(args.variants) or ("dense",),
        cell_cache=None if getattr(args, "fresh", False) else settings.cache_dir / "cells",
    )


def findings(cells: tuple[Cell, ...], fail_on: tuple[str, ...]) -> list[Cell]:
    return [c for c in cells if c.status in fail_on]


# statuses that say something was checked on the backend (error, not-applicable and
# unverifiable cells checked nothing)
CHECKED = frozenset({"pass", "unsupported", "fallback", "wrong", "crash", "hang"})


def uncovered(cells: tuple[Cell, ...]) -> list[Cell]:
    """Cells whose model could not be covered because the tree cannot load it and that is not
    upstream's known defect: a given GGUF (``input``) or one of our tiny models (``spec``)."""
    return [c for c in cells if c.status == "error" and c.whose in ("input", "spec")]


def _fail_on(args: argparse.Namespace) -> tuple[str, ...]:
    fail_on = tuple(s for s in _csv(args.fail_on) if s != "none")
    bad = [s for s in fail_on if s not in SEVERITY]
    if bad:
        raise UsageError(
            f"unknown status(es) in --fail-on: {', '.join(bad)}", f"statuses: {', '.join(SEVERITY)}"
        )
    if args.baseline and not args.baseline.is_file():
        raise UsageError(
            f"--baseline {args.baseline}: no such file", "give a coverage.json of an earlier run"
        )
    return fail_on


def cmd_coverage(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    request = request_from(args, settings)
    fail_on = _fail_on(args)
    job = CoverageJob(
        request=request,
        shard=args.shard,
        predict_profiles=tuple(p for p in _csv(args.predict) if p != "none"),
        dryrun_profiles=tuple(p for p in _csv(args.dryrun) if p != "none"),
        baseline=args.baseline,
        fresh=bool(getattr(args, "fresh", False)),
    )
    with sigterm_stops() as stop:
        run, paths = run_coverage(job, settings, should_stop=stop.is_set)
    return finish(run, paths, args, fail_on, given_models=bool(request.models))


def cmd_merge(args: argparse.Namespace) -> int:
    """``coverage merge REPORT…``: the shards' reports as one run, all four reports written."""
    settings = settings_from(args)
    fail_on = _fail_on(args)
    old = load_baseline(args.baseline) if args.baseline else None
    with work_dir_lock(settings.work_dir):
        run = merge_runs([Path(p) for p in args.reports])
        LOG.info(f"merged {len(args.reports)} report(s): {len(run.cells)} cells")
        run = with_baseline(run, args.baseline, old)
        run = with_sweep(run, settings.reports_dir)
        paths = write_reports(run, settings.reports_dir)
    code = finish(run, paths, args, fail_on)
    if not run.complete:
        raise CoverageFindingsError(
            "the merged report is incomplete: " + "; ".join(run.notes[-1:] or ["a shard was incomplete"]),
            f"rerun the missing or interrupted shard(s) and merge again ({paths['json']} is marked incomplete)",
        )
    return code


def finish(
    run: CoverageRun,
    paths: dict[str, Path],
    args: argparse.Namespace,
    fail_on: tuple[str, ...],
    given_models: bool = False,
) -> int:
    """Print the counts and reports; the exit code of the run (findings 50, interrupted 130)."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items(), key=lambda kv: rank(kv[0])))
    reused = sum(c.reused for c in run.cells)
    again = (
        f" ({reused} reused: tools, model, options and harness unchanged; --fresh runs them again)"
        if reused
        else ""
    )
    LOG.info(f"{len(run.cells)} cells in {run.seconds:.0f} s{again}: {counts}")
    for path in paths.values():
        LOG.info(f"report: {path}")
    if args.json:
        print(
            json.dumps(
                {
                    "counts": run.counts,
                    "complete": run.complete,
                    "reports": {k: str(v) for k, v in paths.items()},
                    "verdict": run.verdict,
                },
                indent=2,
            )
        )
    if run.interrupted:
        raise InterruptedError_("interrupted: the partial report is marked incomplete", str(paths["json"]))
    if run.baseline is not None:
        LOG.info(run.baseline.verdict)
    if not run.cells:  # nothing checked is never a pass
        why = "; ".join(run.models_skipped[:5])
        raise CoverageFindingsError(
            "nothing was covered: the matrix has 0 cells"
            + (f" ({len(run.models_skipped)} model(s) skipped: {why})" if why else " (no model)")
            + (f"\n  {run.baseline.verdict}" if run.baseline is not None else ""),
            "convert models first (`nox -s convert`), pass --model ARCH:TYPE:PATH, or drop "
            "--no-archs-models / widen -a, -t, -b",
        )
    found = findings(run.cells, fail_on)
    lost = uncovered(run.cells)
    upstream = [c for c in run.cells if c.status == "error" and c.whose == "upstream"]
    for c in upstream:
        LOG.warn(f"{c.id}: not covered, upstream defect: {c.reason}")
    nothing = not any(c.status in CHECKED for c in run.cells)
    skipped = list(run.models_skipped) if given_models else []  # a given model that became no cell
    if found or lost or nothing or skipped or (run.baseline is not None and not run.baseline.safe_to_bump):
        parts = []
        if found:
            parts.append(f"{len(found)} cell(s) {'/'.join(fail_on)}")
        if lost:
            parts.append(f"{len(lost)} cell(s) could not be covered: the tree cannot load the model")
        if skipped:
            parts.append(f"{len(skipped)} given model input(s) could not be made")
        if nothing:
            parts.append(f"nothing could be checked ({len(run.cells)} cell(s), none ran on a backend)")
        lines = [f"{c.id}: {c.status}: {c.reason}" for c in found[:20]]
        lines += [f"{c.id}: {c.status} ({c.whose}): {c.reason}" for c in lost[:20]]
        lines += skipped[:20]
        if run.baseline is not None and not run.baseline.safe_to_bump:
            lines.append(run.baseline.verdict)
        raise CoverageFindingsError(
            ("; ".join(parts) or "the baseline says the bump is not safe") + ":\n  " + "\n  ".join(lines),
            f"see {paths['md']} (and {paths['html']})"
            + ("; `--fail-on none` reports findings without failing" if found else "")
            + (
                "; a model the tree cannot load is never covered: the loader's message says why"
                if lost
                else ""
            ),
        )
    errors = sum(c.status == "error" for c in run.cells)
    if fail_on:
        msg = "coverage: no cell crashes, hangs or computes wrong numbers"
        if errors:
            msg += f" ({errors} cell(s) could not be checked: see the warnings above and {paths['md']})"
        LOG.ok(msg)
    else:
        LOG.ok("coverage done")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "coverage",
        help="kernel-coverage matrix: which ops and shapes each backend cannot run (architecture × type × backend)",
        description=sys.modules[__name__].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common_options(p)
    p.add_argument("--build-dir", type=Path, help="build dir (default: the one in build-manifest.json)")
    arch_option(p, default="convert.json's, else ~50")
    p.add_argument("--types", "-t", help=f"comma-separated weight types (default: {','.join(DEFAULT_TYPES)})")
    p.add_argument(
        "--backends", "-b", help="comma-separated test-backend-ops names (default: CPU + the profile's)"
    )
    p.add_argument("--columns", help=f"comma-separated columns (default: {','.join(COLUMNS)})")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds each tool run may take (default 120)"
    )
    p.add_argument("--jobs", "-j", type=int, help="cells in parallel (default: core count)")
    p.add_argument("--baseline", type=Path, help="an earlier coverage.json: report a diff and a bump verdict")
    p.add_argument("--model", action="append", metavar="ARCH:TYPE:PATH", help="a GGUF to cover (repeatable)")
    p.add_argument(
        "--convert-report", type=Path, help="convert.json to read models from (default: reports dir)"
    )
    p.add_argument(
        "--no-archs-models",
        action="store_true",
        help="do not make tiny models with the tree's test-llama-archs -o",
    )
    p.add_argument("--variants", help="test-llama-archs model variants: dense, moe (default: dense)")
    p.add_argument(
        "--predict",
        default=",".join(DEFAULT_PROFILES),
        help="Metal GPU-family profiles to predict from the tree's source, comma-separated, or none "
        f"(default: {','.join(DEFAULT_PROFILES)}; see `llama-toolchain oracle`)",
    )
    p.add_argument(
        "--dryrun",
        default=",".join(DRYRUN_PROFILES),
        help="Metal GPU-family profiles to dry-run with the tree's own Metal encoders, comma-separated, or none "
        f"(default: {','.join(DRYRUN_PROFILES)}; see `llama-toolchain dryrun`)",
    )
    p.add_argument(
        "--fail-on",
        default="crash,hang,wrong",
        help="statuses that make the run exit 50 (default: crash,hang,wrong; `none`)",
    )
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="run slice K of N of the matrix (deterministic, balanced by model); merge with `coverage merge`",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="run every cell again and compute the metal-predicted/metal-dryrun columns again (default: a "
        "cell or a model's off-device cells whose inputs are all unchanged are reused from the cache)",
    )
    p.add_argument("--json", action="store_true", help="print counts and report paths as JSON on stdout")
    p.set_defaults(func=cmd_coverage)
    actions = p.add_subparsers(dest="action", metavar="{merge}")
    m = actions.add_parser(
        "merge",
        help="merge shard reports (coverage.json of --shard K/N runs) into one run's four reports",
        description="Refuses reports of different trees, profiles or columns, a shard given twice and a "
        "cell in two reports; a missing shard makes the merged report incomplete.",
    )
    common_options(m)
    m.add_argument("reports", nargs="+", metavar="REPORT", help="the shards' coverage.json files")
    m.add_argument("--baseline", type=Path, help="an earlier coverage.json: report a diff and a bump verdict")
    m.add_argument(
        "--fail-on", default="crash,hang,wrong", help="as for coverage (default: crash,hang,wrong)"
    )
    m.add_argument("--json", action="store_true", help="print counts and report paths as JSON on stdout")
    m.set_defaults(func=cmd_merge)
