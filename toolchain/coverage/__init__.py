"""Coverage stage: which ops and tensor shapes each backend cannot run, per architecture and type.

    from toolchain.coverage import CoverageRequest, plan, run_matrix, write_reports
    request = CoverageRequest(build_dir, reports_dir=settings.reports_dir,
                              scratch_dir=settings.work_dir / "coverage")
    planned = plan(request)                       # tools of the tree, model inputs, cells
    run = run_matrix(request, planned)            # CoverageRun (cells in parallel, isolated)
    write_reports(run, settings.reports_dir)      # coverage.json/.md/.html, junit-coverage.xml

One cell = (architecture, weight type, backend); columns: ``support`` (test-backend-ops support
on the model's exported graph ops), ``test`` (test-backend-ops test, vs the CPU), ``e2e`` (the
tree's runner and logits tool on the backend vs a CPU-only run; fallback from the scheduler) and
``archs`` (test-llama-archs). Modules: ``tools`` (what the tree has), ``models`` (inputs),
``isolate`` (one tool run: timeout, flood guard, no leftovers), ``backend_ops`` / ``e2e``
(parsers), ``cell`` (the cell runner, shared with ``kernels_tests/``), ``run`` (the matrix),
``report`` (reports and the baseline diff), ``records`` (the JSON), ``cli``.
"""

from __future__ import annotations

from .cell import CellOptions, CellRunner, CellSpec, cell_id
from .models import DEFAULT_ARCHITECTURES, DEFAULT_TYPES
from .records import BaselineDiff, Cell, CheckResult, CoverageRun, ModelInput, OpResult, ToolColumn
from .report import diff_baseline, write_reports
from .run import CoverageRequest, Plan, plan, run_matrix, with_baseline
from .tools import Toolset, detect

__all__ = [
    "DEFAULT_ARCHITECTURES",
    "DEFAULT_TYPES",
    "BaselineDiff",
    "Cell",
    "CellOptions",
    "CellRunner",
    "CellSpec",
    "CheckResult",
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
    "run_matrix",
    "with_baseline",
    "write_reports",
]
