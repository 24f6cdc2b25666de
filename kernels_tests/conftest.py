"""The kernel-coverage matrix as a pytest suite: one test per cell, ids ``<arch>-<type>-<backend>``.

    pytest kernels_tests -n auto -k "qwen3 and BLAS" --junitxml=junit.xml
    pytest kernels_tests --architectures llama,qwen3 --types f16 --backends CPU,BLAS --cell-timeout 60

Cells run through :class:`toolchain.coverage.CellRunner` (the same runner as
``llama-toolchain coverage``); each worker hands its cells to the controller as JSON, which writes
``coverage.json/.md/.html`` and ``junit-coverage.xml`` into the reports dir at the end (marked
incomplete when interrupted). A cell fails when its status is in ``--fail-on`` (crash, hang,
wrong); unverifiable and not-applicable cells are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from toolchain.config import load_settings  # noqa: E402
from toolchain.coverage import CellOptions, CellRunner, CellSpec, CoverageRequest, plan  # noqa: E402
from toolchain.coverage.engine.cellcache import locked as _locked  # noqa: E402
from toolchain.coverage.engine.inputs import DEFAULT_TYPES  # noqa: E402
from toolchain.coverage.records import COLUMNS  # noqa: E402


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kernel coverage")
    g.addoption(
        "--project", default=os.environ.get("COVERAGE_PROJECT", "."), help="project root (default: .)"
    )
    g.addoption("--build-dir", default=None, help="build dir (default: the one of build-manifest.json)")
    g.addoption(
        "--architectures", default=os.environ.get("COVERAGE_ARCHITECTURES", ""), help="comma-separated"
    )
    g.addoption(
        "--types", default=os.environ.get("COVERAGE_TYPES", ",".join(DEFAULT_TYPES)), help="comma-separated"
    )
    g.addoption("--backends", default=os.environ.get("COVERAGE_BACKENDS", ""), help="comma-separated")
    g.addoption("--columns", default=",".join(COLUMNS), help="comma-separated columns")
    g.addoption("--cell-timeout", type=float, default=120.0, help="seconds per tool run")
    g.addoption(
        "--baseline", default=None, help="an earlier coverage.json: diff and bump verdict in the reports"
    )
    g.addoption("--fail-on", default="crash,hang,wrong", help="statuses that fail a cell's test")


def _request(config: pytest.Config) -> CoverageRequest:
    from toolchain.coverage.cli import default_build_dir

    settings = load_settings(Path(config.getoption("--project")))
    build = config.getoption("--build-dir")
    return CoverageRequest(
        build_dir=Path(build).resolve() if build else default_build_dir(settings),
        reports_dir=settings.reports_dir,
        scratch_dir=settings.work_dir / "coverage",
        architectures=_csv(config.getoption("--architectures")),
        types=_csv(config.getoption("--types")) or DEFAULT_TYPES,
        backends=_csv(config.getoption("--backends")),
        columns=_csv(config.getoption("--columns")) or COLUMNS,
        timeout=float(config.getoption("--cell-timeout")),
        jobs=1,
    )


def _state(config: pytest.Config) -> dict[str, Any]:
    state: dict[str, Any] | None = getattr(config, "_coverage_state", None)
    if state is None:
        request = _request(config)
        # workers plan at once: the model files are made once, under a lock
        with _locked(request.scratch_dir / ".plan.lock"):
            planned = plan(request)
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        options = CellOptions(
            timeout=request.timeout, columns=request.columns, threads=1 if workers > 1 else 0
        )
        run_dir = request.scratch_dir / "pytest-cells"
        runner = CellRunner(
            planned.tools,
            request.scratch_dir / "cache",
            request.scratch_dir / "logs" / "pytest",
            options,
            planned.devices,
        )
        state = {"request": request, "plan": planned, "runner": runner, "run_dir": run_dir}
        config._coverage_state = state  # type: ignore[attr-defined]
    return state


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell_spec" in metafunc.fixturenames:
        planned = _state(metafunc.config)["plan"]
        metafunc.parametrize("cell_spec", planned.specs, ids=[s.id for s in planned.specs])


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist) starts a fresh run dir
        import shutil
        import time

        request = _request(config)
        run_dir = request.scratch_dir / "pytest-cells"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        from datetime import UTC, datetime

        config._coverage_t0 = time.monotonic()  # type: ignore[attr-defined]
        # the run's real start, stamped now (not when the session ends)
        config._coverage_started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def cell_runner(request: pytest.FixtureRequest) -> CellRunner:
    runner: CellRunner = _state(request.config)["runner"]
    return runner


@pytest.fixture(scope="session")
def cell_results_dir(request: pytest.FixtureRequest) -> Path:
    path: Path = _state(request.config)["run_dir"]
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def fail_on(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return tuple(s for s in _csv(request.config.getoption("--fail-on")) if s != "none")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    import time

    from toolchain.coverage.engine.run import build_run, with_baseline
    from toolchain.coverage.reports.write import cell_from_json, write_reports

    try:
        state = _state(config)
    except Exception:  # no build: nothing to report
        return
    request, planned, run_dir = state["request"], state["plan"], state["run_dir"]
    cells = []
    for path in sorted(run_dir.glob("*.json")):
        try:
            cells.append(cell_from_json(json.loads(path.read_text())))
        except (ValueError, KeyError):
            continue
    if not cells:
        return
    order = {s.id: i for i, s in enumerate(planned.specs)}
    cells.sort(key=lambda c: order.get(c.id, len(order)))
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    wanted = {item.callspec.id for item in session.items if hasattr(item, "callspec")}
    complete = not interrupted and wanted <= {c.id for c in cells}
    started = str(getattr(config, "_coverage_started", "unknown"))
    seconds = time.monotonic() - getattr(config, "_coverage_t0", time.monotonic())
    run = build_run(
        request, planned, tuple(cells), started, seconds, complete=complete, interrupted=interrupted
    )
    baseline = config.getoption("--baseline")
    run = with_baseline(run, Path(baseline) if baseline else None)
    paths = write_reports(run, request.reports_dir)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"coverage reports: {', '.join(str(p) for p in paths.values())}")
        if run.verdict:
            reporter.write_line(run.verdict)


__all__ = ["CellSpec"]
