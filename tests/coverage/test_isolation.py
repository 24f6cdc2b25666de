"""Crashing, hanging and flooding tools become the cell's verdict and the run goes on; Ctrl-C
writes a partial report marked incomplete and leaves no child running. Test doubles
(fixtures/coverage/fake_tool.py) stand in for the tools; verdicts are ``observed_by: fixture``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from tests.coverage.conftest import ROOT, no_children_left
from tests.signalled import start
from toolchain.core.isolate import SILENT_ATTEMPTS, live_count, run_isolated, run_until_heard
from toolchain.coverage import CoverageRequest, plan, run_matrix, write_reports
from toolchain.coverage.records import ModelInput
from toolchain.records import VERIFY
from toolchain.verify import write_verification
from toolchain.verify.records import DeviceInfo, Verification


def _request(
    tmp: Path,
    build: Path,
    models: tuple[ModelInput, ...],
    env: dict[str, str],
    timeout: float = 5.0,
    jobs: int = 2,
) -> CoverageRequest:
    return CoverageRequest(
        build_dir=build,
        reports_dir=tmp / "reports",
        scratch_dir=tmp / "scratch",
        models=models,
        types=("f16",),
        backends=("CPU", "BLAS"),
        timeout=timeout,
        jobs=jobs,
        env=env,
        observed_by="fixture",
    )


def test_crash_and_hang_are_verdicts_and_the_run_goes_on(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...], pids: Path
) -> None:
    # BLAS: test-backend-ops test aborts for the first model; a second (per-model) double hangs
    env = {"FAKE_CRASH": "BLAS", "FAKE_PIDS": str(pids)}
    req = _request(tmp_path, fake_build, fake_models[:2], env, timeout=3.0)
    planned = plan(req)
    start = time.monotonic()
    run = run_matrix(req, planned)
    by_id = {c.id: c for c in run.cells}
    assert run.complete and len(run.cells) == 4
    crashed = by_id["llama-f16-BLAS"]
    assert crashed.status == "crash" and crashed.observed_by == "fixture"
    test = next(c for c in crashed.checks if c.column == "test")
    assert "SIGABRT" in test.summary and "GGML_ASSERT(ne0 % 32 == 0) failed" in "\n".join(test.evidence)
    assert "next in order (the likely culprit)" in test.summary or "last finished" in test.summary
    # the other columns of the crashed cell still ran
    assert {c.column for c in crashed.checks} == {"support", "test", "e2e", "archs"}
    assert by_id["llama-f16-CPU"].status == "pass"
    assert by_id["qwen3-f16-CPU"].status == "pass"
    assert time.monotonic() - start < 60
    assert no_children_left(pids) == [] and live_count() == 0

    env = {"FAKE_HANG": "BLAS", "FAKE_PIDS": str(pids)}
    req = _request(tmp_path / "h", fake_build, fake_models[:1], env, timeout=2.0)
    run = run_matrix(req, plan(req))
    hung = next(c for c in run.cells if c.backend == "BLAS")
    assert hung.status == "hang"
    test = next(c for c in hung.checks if c.column == "test")
    assert "hang: no exit after 2 s" in test.summary and any("Backend 1/2: BLAS" in e for e in test.evidence)
    assert next(c for c in run.cells if c.backend == "CPU").status == "pass"
    assert no_children_left(pids) == []
    paths = write_reports(run, tmp_path / "reports")
    junit = paths["junit"].read_text()
    assert 'type="hang"' in junit and 'failures="1"' in junit


def test_flood_is_bounded_and_killed(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...]
) -> None:
    tool = fake_build / "bin" / "test-backend-ops"
    log = tmp_path / "flood.log"
    start = time.monotonic()
    out = run_isolated(
        [str(tool), "test", "-b", "BLAS"],
        log_path=log,
        timeout=60,
        env={**os.environ, "FAKE_FLOOD": "BLAS"},
        max_log_bytes=1 << 20,
        flood_bytes=32 << 20,
        max_stdout_lines=1000,
    )
    assert out.kind == "flood" and time.monotonic() - start < 30
    assert log.stat().st_size < (1 << 20) + 4096 and "log capped" in log.read_text()
    assert len(out.stdout) == 1000 and len(out.tail) <= 40
    # and in a cell: its verdict, the run goes on
    req = _request(tmp_path, fake_build, fake_models[:1], {"FAKE_FLOOD": "BLAS"}, timeout=60)
    run = run_matrix(req, plan(req))
    blas = next(c for c in run.cells if c.backend == "BLAS")
    test = next(c for c in blas.checks if c.column == "test")
    assert blas.status == "crash" and test.summary.startswith("test-backend-ops test: flood")


def test_tool_missing_columns_are_marked_with_the_reason(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...]
) -> None:
    (fake_build / "bin" / "test-export-graph-ops").unlink()
    (fake_build / "bin" / "test-llama-archs").unlink()
    req = _request(tmp_path, fake_build, fake_models[:1], {})
    planned = plan(req)
    cols = {c.column: c for c in planned.tools.columns}
    assert not cols["support"].available and "test-export-graph-ops" in cols["support"].reason
    assert not cols["archs"].available and "test-llama-archs" in cols["archs"].reason
    run = run_matrix(req, planned)
    cell = run.cells[0]
    assert cell.status == "pass"  # e2e still ran
    assert {c.column: c.status for c in cell.checks}["support"] == "not-applicable"


def test_ctrl_c_writes_a_partial_report_and_leaves_no_child(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...], pids: Path
) -> None:
    """Ctrl-C while cells are open: the cells of the last model are held by their tools (blocked on a
    FIFO nobody writes), so the signal always lands with some cells finished and some not."""
    project = tmp_path / "project"
    project.mkdir()
    hold = tmp_path / "hold"
    hold.mkdir()
    os.mkfifo(hold / "fifo")
    held_model = fake_models[-1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
        "FAKE_PIDS": str(pids),
        "FAKE_HOLD": str(hold),
        "FAKE_HOLD_MATCH": str(held_model.path),
    }
    env.pop("GITHUB_ACTIONS", None)
    models = [f"--model={m.architecture}:f16:{m.path}" for m in fake_models]
    proc = start(
        [
            sys.executable,
            "-m",
            "toolchain.coverage",
            "--build-dir",
            str(fake_build),
            *models,
            "--types",
            "f16",
            "--backends",
            "CPU,BLAS",
            "--jobs",
            "2",
            "--timeout",
            "3600",  # a held tool is never given up as a hang: only the signal ends it
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
    )
    # a safety net only (a broken run must not hang the suite); the test never depends on it
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        # the progress line the run prints once a cell is in its results (non-TTY: every 10 %)
        for line in proc.stderr:
            seen.append(line)
            if re.search(r"cells: [1-9]\d*/6 ", line):
                break
        assert proc.poll() is None, "".join(seen)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130, "".join(seen) + err
    report = project / ".toolchain" / "reports" / "coverage.json"
    data = json.loads(report.read_text())
    assert data["complete"] is False and data["interrupted"] is True
    assert 0 < len(data["cells"]) < 6, len(data["cells"])
    assert not any(c["architecture"] == held_model.architecture for c in data["cells"])
    assert "INCOMPLETE" in (report.parent / "coverage.md").read_text()
    assert "INCOMPLETE" in (report.parent / "coverage.html").read_text()
    # every child was waited for before the run exited: none may be alive now
    assert no_children_left(pids) == []


def test_gpu_cells_without_a_real_device_are_unverifiable(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...]
) -> None:
    """Device honesty: MTL0 with verify's paravirtual device -> unverifiable, capabilities named."""
    reports = tmp_path / "reports"
    reports.mkdir()
    write_verification(
        Verification(
            path=fake_build,
            profile="metal",
            checks=(),
            runtime_requested=True,
            devices=(
                DeviceInfo(
                    backend="metal",
                    name="MTL0",
                    description="Apple Paravirtual device",
                    device_class="paravirtual",
                    class_reason="no simdgroup reduction, no simdgroup mm",
                    gpu_family=5,
                    simdgroup_reduction=False,
                    simdgroup_mm=False,
                    bfloat=False,
                ),
            ),
            device_class="paravirtual",
        ),
        reports / VERIFY.name,
    )
    req = CoverageRequest(
        build_dir=fake_build,
        reports_dir=reports,
        scratch_dir=tmp_path / "s",
        models=fake_models[:1],
        types=("f16",),
        backends=("CPU", "MTL0"),
        timeout=10,
        observed_by="fixture",
    )
    run = run_matrix(req, plan(req))
    mtl = next(c for c in run.cells if c.backend == "MTL0")
    assert mtl.status == "unverifiable" and run.device_class == "paravirtual"
    assert "simdgroup_reduction=False" in mtl.reason and "paravirtual" in mtl.reason
    assert all(c.status in ("unverifiable", "not-applicable") for c in mtl.checks)
    assert next(c for c in run.cells if c.backend == "CPU").status == "pass"


def test_a_gpu_cell_whose_device_is_unknown_is_unverifiable(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...]
) -> None:
    """A missing fact is unknown, never "real": a MTL0 cell with no device summary proves nothing."""
    req = _request(tmp_path, fake_build, fake_models[:1], {})
    req = replace(req, backends=("CPU", "MTL0"))
    planned = plan(req)
    # the device summary of MTL0 is missing (as for a runner made without verify's devices)
    planned = replace(planned, devices={k: v for k, v in planned.devices.items() if k != "MTL0"})
    run = run_matrix(req, planned)
    mtl = next(c for c in run.cells if c.backend == "MTL0")
    assert mtl.status == "unverifiable", mtl.reason
    assert "unknown" in mtl.reason
    assert next(c for c in run.cells if c.backend == "CPU").status == "pass"


def test_a_cell_read_back_without_its_device_class_is_unknown() -> None:
    from toolchain.coverage.records import DeviceSummary
    from toolchain.coverage.reports.write import cell_from_json

    assert DeviceSummary("MTL0").device_class == "unknown"
    cell = {
        "id": "llama-f16-MTL0",
        "architecture": "llama",
        "weight_type": "f16",
        "backend": "MTL0",
        "model": "m.gguf",
        "status": "pass",
        "reason": "",
        "observed_by": "device",
        "checks": [],
        "device": {"backend": "MTL0", "description": "Apple M2"},
    }
    assert cell_from_json(cell).device is not None
    assert cell_from_json(cell).device.device_class == "unknown"  # type: ignore[union-attr]


def test_a_hang_names_the_timeout_it_ran_under(tmp_path: Path) -> None:
    """The e2e summary of a cached hang says the real limit, never a fixed 120 s or the run's length."""
    from toolchain.coverage.engine.outcomes import outcome_json as _outcome_json
    from toolchain.coverage.engine.outcomes import run_failure as _run_failure

    hold = tmp_path / "fifo"
    os.mkfifo(hold)
    # blocks on the FIFO until killed: a hang whatever the machine's speed
    out = run_isolated(
        [sys.executable, "-c", f"open({str(hold)!r}).read()"], log_path=tmp_path / "hang.log", timeout=0.5
    )
    assert out.kind == "hang" and out.timeout == 0.5
    data = {"runner": _outcome_json(out)}
    # the run took longer than its limit (killing costs time): the limit is what is named
    data["runner"]["seconds"] = 9.6
    found = _run_failure(data)
    assert found is not None and found[0] == "hang"
    assert "no exit after 0.5 s" in found[1], found[1]
    # a cache written before the limit was recorded: said to be unknown
    del data["runner"]["timeout"]
    found = _run_failure(data)
    assert found is not None and "timeout not recorded" in found[1], found[1]
    # an exit names no timeout at all
    exited = run_isolated(
        [sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "x.log", timeout=60
    )
    found = _run_failure({"runner": _outcome_json(exited)})
    assert found is not None and found[1].endswith("exit status 3"), found[1]


def test_the_logs_command_line_reruns_what_ran(tmp_path: Path) -> None:
    """A log's first line names the variables the harness set (MALLOC_PERTURB_ for the test
    column, the plain-CPU switch) before the program, quoted so a shell reruns exactly that."""
    import shlex

    env = {**os.environ, "MALLOC_PERTURB_": "255", "ODD": "a b;c"}
    args = [sys.executable, "-c", "import os; print(os.environ['MALLOC_PERTURB_'])"]
    out = run_isolated(args, log_path=tmp_path / "x.log", timeout=60, env=env)
    assert out.kind == "ok" and out.stdout == ("255",)
    first = (tmp_path / "x.log").read_text().splitlines()[0]
    assert first.startswith("$ ")
    assert shlex.split(first[2:]) == ["MALLOC_PERTURB_=255", "ODD=a b;c", *args]
    # nothing is added when the environment is this process's own
    plain = run_isolated(args[:2] + ["pass"], log_path=tmp_path / "y.log", timeout=60)
    assert (tmp_path / "y.log").read_text().splitlines()[0] == f"$ {shlex.join(args[:2] + ['pass'])}"
    assert plain.kind == "ok"


def test_a_failure_that_printed_nothing_is_run_again(tmp_path: Path) -> None:
    """llama.cpp's logger can lose a fast failure's lines at exit (common/log.cpp, #22142): a run
    that exits non-zero with no output is repeated until it says something, a bounded number of
    times; a failure with output, a success and a crash are never repeated."""
    counter = tmp_path / "runs"
    script = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "if n >= int(sys.argv[1]):\n"
        "    print('error loading model: key not found', file=sys.stderr)\n"
        "sys.exit(int(sys.argv[2]))\n"
    )

    def run(speaks_at: int, code: int) -> tuple[str, int, int]:
        counter.unlink(missing_ok=True)
        args = [sys.executable, "-c", script, str(speaks_at), str(code)]
        out, runs = run_until_heard(args, log_path=tmp_path / "x.log", timeout=60)
        return out.kind, runs, int(counter.read_text())

    assert run(3, 1) == ("exit", 3, 3)  # silent twice, then the message
    assert "key not found" in (tmp_path / "x.log").read_text()  # the log is the run that spoke
    assert run(99, 1) == ("exit", SILENT_ATTEMPTS, SILENT_ATTEMPTS)  # silent every time: bounded
    assert run(1, 1) == ("exit", 1, 1)  # spoke at once
    assert run(99, 0) == ("ok", 1, 1)  # a silent success is a success


def test_an_export_stopped_by_the_clock_is_not_kept(
    fake_build: Path, fake_models: tuple[ModelInput, ...], tmp_path: Path
) -> None:
    """A graph-op export that hung (the machine's load, not the model) or was stopped is not the
    model's result: the next run exports again instead of reusing the failure."""
    from toolchain.coverage.engine.cell import CellOptions, CellRunner
    from toolchain.coverage.engine.tools import detect

    hold = tmp_path / "hold"
    hold.mkdir()
    os.mkfifo(hold / "fifo")  # the held export blocks on it until killed: a hang at any speed
    tools = detect(fake_build / "bin")
    env = {"FAKE_HOLD": str(hold), "FAKE_HOLD_MATCH": "-o"}
    model = fake_models[0]
    held = CellRunner(tools, tmp_path / "cache", tmp_path / "logs", CellOptions(timeout=1.0, env=env))
    ops, out, problem = held.export_ops(model)
    assert ops is None and out is not None and out.kind == "hang" and "no exit after 1 s" in problem
    (hold / "released").touch()
    again = CellRunner(tools, tmp_path / "cache", tmp_path / "logs", CellOptions(timeout=60.0, env=env))
    ops, out, problem = again.export_ops(model)
    assert ops is not None and out is not None and out.kind == "ok", problem
    # a result about the model is kept: the third run reuses it
    reused = CellRunner(tools, tmp_path / "cache", tmp_path / "logs", CellOptions(timeout=60.0))
    assert reused.export_ops(model)[0] == ops
