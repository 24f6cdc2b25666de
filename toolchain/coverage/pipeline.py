"""The coverage stage as one call: ``run_coverage(job, settings)`` -> (the run, its report paths).

In order, under the work dir's lock: the plan (tools, models, cells; one slice of it with a
shard), the cells, the off-device Metal columns (``metal-predicted`` from the oracle,
``metal-dryrun`` from the tree's Metal encoders), the diff against a baseline, the reports. The
command line (``coverage/cli.py``) builds the job from its arguments and turns the run into an
exit code; a test or a library caller calls this directly.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ..config import Settings
from ..core.locking import work_dir_lock
from ..errors import UsageError
from ..log import LOG
from .engine.run import CoverageRequest, plan, run_matrix, with_baseline
from .engine.shard import parse_shard, shard_plan
from .metal.dryrun import add_dryrun
from .metal.predicted import add_predictions
from .metal.predicted_dryrun import mark_predicted
from .metal.sweep import with_sweep
from .records import Cell, CoverageRun
from .reports.baseline import load_baseline
from .reports.write import write_reports


@dataclass(frozen=True)
class CoverageJob:
    """What one ``coverage`` run does beyond its :class:`CoverageRequest` (the matrix)."""

    request: CoverageRequest
    shard: str | None = None  # "K/N": this run's slice of the matrix
    predict_profiles: tuple[str, ...] = ()  # metal-predicted columns, one per GPU-family profile
    dryrun_profiles: tuple[str, ...] = ()  # metal-dryrun columns
    baseline: Path | None = None  # an earlier coverage.json to compare with
    fresh: bool = False  # run every cell and column again (nothing kept is reused)


@contextmanager
def sigterm_stops() -> Iterator[threading.Event]:
    """An event SIGTERM sets (in the main thread; elsewhere it is never set): the matrix then stops
    starting cells and writes what it has, marked incomplete."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_sigterm(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_coverage(
    job: CoverageJob, settings: Settings, *, should_stop: Callable[[], bool] = lambda: False
) -> tuple[CoverageRun, dict[str, Path]]:
    request = job.request
    shard = parse_shard(job.shard) if job.shard else None
    if shard and job.baseline:
        raise UsageError(
            "--baseline with --shard: a slice cannot be compared with a whole run",
            "give --baseline to `llama-toolchain coverage merge` of the shards",
        )
    # checked before anything runs: a bad baseline must not cost the matrix
    old = load_baseline(job.baseline) if job.baseline else None
    with work_dir_lock(settings.work_dir):
        with LOG.step(f"coverage: plan ({request.build_dir.name})"):
            planned = plan(request, LOG.info)
            whole = planned
            if shard:
                planned = shard_plan(planned, *shard)
                LOG.info(f"shard {job.shard}: {len(planned.inputs)} model(s) of this slice")
            for col in planned.tools.columns:
                if not col.available:
                    LOG.warn(f"column {col.column} not computed: {col.reason}")
            LOG.info(
                f"{len(planned.specs)} cells: {len(planned.inputs)} model(s) × {', '.join(planned.backends)}"
                + (f"; {len(planned.skips)} model(s) skipped" if planned.skips else "")
            )
        with LOG.step("coverage: cells"), LOG.progress("cells", total=len(planned.specs)) as bar:

            def on_cell(cell: Cell, i: int, n: int) -> None:
                bar.update(i, n, cell.id)
                if cell.status not in ("pass", "not-applicable", "unsupported", "unverifiable"):
                    LOG.warn(f"{cell.id}: {cell.status}: {cell.reason}")

            run = run_matrix(request, planned, on_cell=on_cell, should_stop=should_stop)
            if shard:  # the axes of the whole matrix, so that a merge orders cells as one run would
                run = dataclasses.replace(
                    run,
                    shard=job.shard or "",
                    architectures=tuple(dict.fromkeys(s.model.label for s in whole.specs)),
                    weight_types=tuple(dict.fromkeys(s.model.weight_type for s in whole.specs)),
                )
        # a model's cells of the off-device columns, kept like the finished cells (not with --fresh)
        column_cache = None if job.fresh else settings.cache_dir / "columns"
        if job.predict_profiles and not run.interrupted:
            with LOG.step("coverage: metal-predicted columns (from the tree's source)"):
                run = add_predictions(
                    run, planned, request.scratch_dir, settings.cache_dir, job.predict_profiles, column_cache
                )
        if job.dryrun_profiles and not run.interrupted:
            with LOG.step("coverage: metal-dryrun columns (the tree's Metal encoders on a stand-in)"):
                run = add_dryrun(
                    run, planned, request.scratch_dir, settings.cache_dir, job.dryrun_profiles, column_cache
                )
            run = mark_predicted(run)  # no clean predicted pass where the dry run cannot encode
        run = with_baseline(run, job.baseline, old)
        run = with_sweep(run, settings.reports_dir)  # nox -s sweep's classes, when of this commit
        paths = write_reports(run, settings.reports_dir)
    return run, paths
