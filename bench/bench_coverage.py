"""Coverage benchmark: the full matrix (>= 30 architectures × {f16, q8_0} × {CPU, BLAS}) on a build.

    python bench/bench_coverage.py [--build-dir DIR] [--architectures a,b,…] [--jobs N]

Two passes over the same scratch dir: ``cold`` makes the tiny models (the tree's
``test-llama-archs -o`` and ``llama-quantize``) and runs every cell; ``warm`` reuses the models
(as ``nox -s coverage`` does on a second run) but clears the per-model result cache, so every tool
of every cell runs again. Prints seconds per cell and per column; goal: warm <= 600 s on 2 cores.
Writes ``.toolchain/reports/bench-coverage.json``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain.config import load_settings  # noqa: E402
from toolchain.coverage import CoverageRequest, plan, run_matrix  # noqa: E402
from toolchain.coverage.cli import default_build_dir  # noqa: E402
from toolchain.coverage.engine.inputs import DEFAULT_ARCHITECTURES  # noqa: E402
from toolchain.records import write_report  # noqa: E402

GOAL_SECONDS = 600.0


def one_pass(request: CoverageRequest, label: str) -> dict[str, object]:
    t0 = time.monotonic()
    planned = plan(request)
    t_plan = time.monotonic() - t0
    run = run_matrix(request, planned)
    total = time.monotonic() - t0
    per_cell = [c.durations.get("total", 0.0) for c in run.cells]
    per_col: dict[str, float] = {}
    for c in run.cells:
        for k, v in c.durations.items():
            if k != "total":
                per_col[k] = per_col.get(k, 0.0) + v
    archs = sorted({c.architecture for c in run.cells})
    out = {
        "pass": label,
        "architectures": len(archs),
        "cells": len(run.cells),
        "seconds": round(total, 1),
        "plan_seconds": round(t_plan, 1),
        "cell_seconds_mean": round(statistics.mean(per_cell), 3) if per_cell else 0,
        "cell_seconds_max": round(max(per_cell), 3) if per_cell else 0,
        "wall_per_cell": round(total / max(1, len(run.cells)), 3),
        "column_seconds": {k: round(v, 1) for k, v in per_col.items()},
        "counts": run.counts,
        "models_skipped": len(planned.skips),
        "jobs": request.jobs,
    }
    print(
        f"{label:5s}: {len(archs)} architectures, {len(run.cells)} cells in {total:.1f} s "
        f"(plan {t_plan:.1f} s; {out['wall_per_cell']} s wall per cell, {out['cell_seconds_mean']} s mean cell time, "
        f"max {out['cell_seconds_max']} s); goal {GOAL_SECONDS:.0f} s: {'met' if total <= GOAL_SECONDS else 'MISSED'}"
    )
    print(f"       columns (cell-seconds): {out['column_seconds']}; statuses: {run.counts}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", type=Path)
    ap.add_argument("--architectures", default=",".join(DEFAULT_ARCHITECTURES))
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="scratch dir to use and keep (default: a temporary one)")
    args = ap.parse_args(argv)
    settings = load_settings(ROOT)
    build = (args.build_dir or default_build_dir(settings)).resolve()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench-coverage-"))
    request = CoverageRequest(
        build_dir=build,
        reports_dir=scratch / "reports",
        scratch_dir=scratch,
        architectures=tuple(a for a in args.architectures.split(",") if a),
        types=("f16", "q8_0"),
        backends=("CPU", "BLAS"),
        jobs=args.jobs,
    )
    results = [one_pass(request, "cold")]
    shutil.rmtree(scratch / "cache", ignore_errors=True)  # keep the models, rerun every tool
    results.append(one_pass(request, "warm"))
    write_report(
        settings.reports_dir / "bench-coverage.json",
        "bench-coverage",
        {"build_dir": str(build), "goal_seconds": GOAL_SECONDS, "passes": results},
    )
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
