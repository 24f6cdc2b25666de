"""Coverage stage: which ops and tensor shapes each backend cannot run, per architecture and type.

    from toolchain.coverage import CoverageJob, CoverageRequest, run_coverage
    request = CoverageRequest(build_dir, reports_dir=settings.reports_dir,
                              scratch_dir=settings.work_dir / "coverage")
    run, paths = run_coverage(CoverageJob(request, predict_profiles=("apple9",)), settings)
    # plan -> cells in parallel, isolated -> Metal columns -> baseline -> coverage.json/.md/.html

One cell = (architecture, weight type, backend); columns: ``support`` (test-backend-ops support
on the model's exported graph ops), ``test`` (test-backend-ops test, vs the CPU), ``e2e`` (the
tree's runner and logits tool on the backend vs a CPU-only run; fallback from the scheduler),
``archs`` (test-llama-archs), and off a Mac ``metal-predicted`` / ``metal-dryrun``.

The stage is five parts, one sub-package each, read in this order: ``engine/`` (plan, cells,
isolation, kept cells, shards), ``device/`` (the on-device columns and the parsers of their
tools), ``metal/`` (the oracle's and the dry run's columns), ``reports/`` (JSON, Markdown, HTML,
JUnit, the step summary, the baseline diff), and ``pipeline.py`` (the stage as one call), with
``records.py`` (the JSON) under all of them and ``cli.py`` over them.
"""

from __future__ import annotations

from .engine.cell import CellOptions, CellRunner, CellSpec, cell_id
from .engine.inputs import DEFAULT_ARCHITECTURES, DEFAULT_TYPES
from .engine.run import CoverageRequest, Plan, plan, run_matrix, with_baseline
from .engine.tools import Toolset, detect
from .pipeline import CoverageJob, run_coverage
from .records import BaselineDiff, Cell, CheckResult, CoverageRun, ModelInput, OpResult, ToolColumn
from .reports.write import diff_baseline, write_reports

__all__ = [
    "DEFAULT_ARCHITECTURES",
    "DEFAULT_TYPES",
    "BaselineDiff",
    "Cell",
    "CellOptions",
    "CellRunner",
    "CellSpec",
    "CheckResult",
    "CoverageJob",
    "CoverageRequest",
    "CoverageRun",
    "ModelInput",
    "OpResult",
    "Plan",
    "ToolColumn",
    "Toolset",
    "cell_id",
    "detect",
    "diff_baseline",
    "plan",
    "run_coverage",
    "run_matrix",
    "with_baseline",
    "write_reports",
]
