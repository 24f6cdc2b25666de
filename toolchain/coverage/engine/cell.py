"""Run one cell (architecture × weight type × backend): every column, each tool in isolation.

Work shared by the cells of one model (the op export, the CPU reference run) or of one
architecture (test-llama-archs without ``-b``) is done once and cached on disk under a lock, so
cells can run in threads of one process or in pytest-xdist workers alike. A tool that crashes,
hangs or floods gives that column its verdict with the last log lines; the cell goes on with the
next column and the run with the next cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...convert.load import loader_message
from ...core.isolate import Outcome, run_isolated, run_until_heard
from ...core.tree import ENCODER_UBATCH_ABORT, EXPORT_ARGS, PLAIN_CPU_ENV
from ..device.archs import archs_check
from ..device.e2e import PROMPT
from ..device.e2e_column import decode, e2e_check
from ..device.op_columns import support_check, test_check
from ..records import (
    COLUMNS,
    Cell,
    CheckResult,
    DeviceSummary,
    ModelInput,
    ObservedBy,
    OpResult,
    Status,
    Whose,
    worst,
)
from ..reports.write import cell_from_json, cell_json
from .backends import CoverageBackend, backend, reference_args
from .cases import CaseMemo
from .cellcache import CellCache, file_key, locked
from .opsfile import contiguous_index_views, ggml_ids, tree_of_build
from .outcomes import evidence_of, outcome_from, outcome_json, read_log, status_of
from .tools import Toolset


@dataclass(frozen=True)
class CellOptions:
    timeout: float = 120.0  # seconds per tool run
    columns: tuple[str, ...] = COLUMNS
    n_predict: int = 4
    prompt: str = PROMPT
    threads: int = 0  # -t for llama programs (0: the program's default)
    env: Mapping[str, str] = field(default_factory=dict)
    observed_by: ObservedBy = "device"
    seed: int = 1


@dataclass(frozen=True)
class CellSpec:
    model: ModelInput
    backend: str

    @property
    def id(self) -> str:
        return cell_id(self.model, self.backend)


def cell_id(model: ModelInput, backend_name: str) -> str:
    return f"{model.label}-{model.weight_type}-{backend_name}"


class CellRunner:
    """Runs cells against one build's tools; ``cache_dir`` holds the shared per-model work."""

    def __init__(
        self,
        tools: Toolset,
        cache_dir: Path,
        log_dir: Path,
        options: CellOptions | None = None,
        devices: Mapping[str, DeviceSummary] | None = None,
        cell_cache: Path | None = None,
    ) -> None:
        self.tools = tools
        self.cache_dir = cache_dir
        self.log_dir = log_dir
        self.options = options or CellOptions()
        self.devices = dict(devices or {})
        self.env = {
            **os.environ,
            "GGML_NO_BACKTRACE": "1",
            "LLAMA_LOG_COLORS": "off",
            "NO_COLOR": "1",
            **self.options.env,
        }
        self.cells = CellCache(cell_cache, tools, self.options, self.devices) if cell_cache else None
        self.cases = CaseMemo()  # the test column's finished verdicts, shared by this run's cells

    # --- helpers ---------------------------------------------------------------------------------
    def run_tool(self, args: list[str], log: Path, env: Mapping[str, str] | None = None) -> Outcome:
        return run_isolated(args, log_path=log, timeout=self.options.timeout, env=env or self.env)

    def model_dir(self, model: ModelInput) -> Path:
        return self.cache_dir / "models" / f"{model.label}-{model.weight_type}-{file_key(model.path)}"

    def threads(self) -> list[str]:
        return ["-t", str(self.options.threads)] if self.options.threads > 0 else []

    # --- shared, cached: op export ---------------------------------------------------------------
    def export_ops(self, model: ModelInput) -> tuple[Path | None, Outcome | None, str]:
        """(ops file, outcome of the exporter run, problem) — cached per model."""
        exporter = self.tools.exporter
        if exporter is None:
            return None, None, self.tools.column("support").reason or "no graph-op exporter"
        d = self.model_dir(model)
        # the export runs the plain CPU kernels like the reference (backends.PLAIN_CPU_ENV), for one
        # fixed context (backends.EXPORT_ARGS); the name of the cached result says how it was run
        how_run = [sorted(PLAIN_CPU_ENV.items()), list(EXPORT_ARGS)]
        how = hashlib.sha256(json.dumps(how_run).encode()).hexdigest()[:8]
        ops, meta = d / "ops.txt", d / f"export-{how}.json"
        with locked(d / ".export.lock"):
            if meta.is_file():
                data = json.loads(meta.read_text())
                out = outcome_from(data["outcome"])
                return (ops if data["ok"] else None), out, data["problem"]
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / "ops.txt.tmp"
            tmp.unlink(missing_ok=True)
            out, _ = run_until_heard(  # a refusal's lines can be lost at exit (isolate.py)
                [str(exporter), "-m", str(model.path), "-o", str(tmp), *EXPORT_ARGS, *self.threads()],
                log_path=d / "export.log",
                timeout=self.options.timeout,
                env={**self.env, **PLAIN_CPU_ENV},
            )
            problem = ""
            ok = out.kind == "ok" and tmp.is_file() and tmp.stat().st_size > 0
            load_error = ""
            if ok:
                tmp.replace(ops)
            else:
                problem = (
                    out.describe(self.options.timeout) if out.kind != "ok" else "the exporter wrote no ops"
                )
                load_error = loader_message(read_log(Path(out.log)))
                if load_error:
                    problem = f"the tree cannot load this model: {load_error} ({problem})"
            # kept: a result about the model; not kept: a run stopped by Ctrl-C or the clock (the
            # machine's load), or one that failed saying nothing (its lines lost at exit)
            if ok or (out.kind not in ("cancelled", "hang") and out.output_bytes > 0):
                meta.write_text(
                    json.dumps(
                        {"ok": ok, "problem": problem, "load_error": load_error, "outcome": outcome_json(out)}
                    )
                )
            return (ops if ok else None), out, problem

    def test_file(self, model: ModelInput, ops_file: Path) -> tuple[Path, tuple[str, ...]]:
        """The ops file for ``test``: strided GET_ROWS index views made contiguous (opsfile.py),
        with the cases rewritten; the exported file itself when nothing needs it (cached per model)."""
        d = self.model_dir(model)
        out, meta = d / "ops-test.txt", d / "ops-test.json"
        with locked(d / ".export.lock"):
            if meta.is_file() and out.is_file():
                data = json.loads(meta.read_text())
                return out, tuple(data["rewritten"])
            tree = tree_of_build(self.tools.bin_dir.parent)
            op_ids, type_ids = ggml_ids(tree) if tree is not None else ({}, {})
            done = contiguous_index_views(ops_file.read_text(encoding="utf-8"), op_ids, type_ids)
            out.write_text(done.text, encoding="utf-8")
            meta.write_text(json.dumps({"rewritten": list(done.rewritten), "tree": str(tree or "")}))
            return out, done.rewritten

    # --- shared, cached: CPU reference -------------------------------------------------------------
    def reference(self, model: ModelInput) -> dict[str, Any]:
        d = self.model_dir(model)
        with locked(d / ".reference.lock"):
            # keyed on how the reference is run: a change of placement invalidates old results
            how = [reference_args(), reference_args(True), PLAIN_CPU_ENV]
            key = hashlib.sha256(json.dumps(how).encode()).hexdigest()[:10]
            meta = d / f"reference-{key}.json"
            if meta.is_file():
                return dict(json.loads(meta.read_text()))
            data = decode(self, model, reference_args(), d / "reference", "reference", PLAIN_CPU_ENV)
            if ENCODER_UBATCH_ABORT in json.dumps(data):
                # an encoder: the whole prompt must fit one ubatch; the reference's node
                # assignments (recorded) show what, if anything, left the CPU
                data = decode(
                    self,
                    model,
                    reference_args(whole_prompt=True),
                    d / "reference",
                    "reference",
                    PLAIN_CPU_ENV,
                )
                data["reference_note"] = "encoder model: prompt in one ubatch of 512"
            meta.write_text(json.dumps(data))
            return data

    def run(self, spec: CellSpec, should_stop: Callable[[], bool] = lambda: False) -> Cell:
        """The cell's verdict: reused from the cell cache when every input is unchanged, else run."""
        if self.cells is None:
            return self._run_cell(spec, should_stop)

        key = self.cells.key(spec.model, spec.backend)
        kept = self.cells.load(key)
        if kept is not None:
            return replace(cell_from_json(kept), model=str(spec.model.path), reused=True)
        cell = self._run_cell(spec, should_stop)
        if not should_stop():
            self.cells.store(key, cell.status, cell_json(cell))
        return cell

    def _run_cell(self, spec: CellSpec, should_stop: Callable[[], bool]) -> Cell:
        start = time.monotonic()
        be = backend(spec.backend)
        checks: list[CheckResult] = []
        ops: tuple[OpResult, ...] = ()
        durations: dict[str, float] = {}
        cols = self.options.columns
        export_problem = ""
        ops_file: Path | None = None
        if "support" in cols or "test" in cols:
            t0 = time.monotonic()
            ops_file, exp_out, export_problem = self.export_ops(spec.model)
            durations["export"] = round(time.monotonic() - t0, 3)
            if ops_file is None and exp_out is not None:
                st = status_of(exp_out) or "error"
                unloadable = export_problem.startswith("the tree cannot load this model")
                checks.append(
                    CheckResult(
                        "support",
                        "error" if unloadable else st,
                        export_problem if unloadable else f"op export failed: {export_problem}",
                        evidence_of(exp_out),
                        round(exp_out.seconds, 3),
                        exp_out.args,
                        exp_out.log,
                        {"load_error": export_problem} if unloadable else {},
                    )
                )
        for column in COLUMNS:
            if column not in cols or should_stop():
                continue
            avail = self.tools.column(column)
            if not avail.available:
                checks.append(CheckResult(column, "not-applicable", avail.reason))
                continue
            t0 = time.monotonic()
            if column == "support":
                if ops_file is None:
                    continue  # the export's verdict stands for this column
                check, ops = support_check(self, spec, be, ops_file)
            elif column == "test":
                if ops_file is None:
                    checks.append(CheckResult("test", "not-applicable", f"no ops to test: {export_problem}"))
                    continue
                check, ops = test_check(self, spec, be, ops_file, ops)
            elif column == "e2e":
                if export_problem.startswith("the tree cannot load this model"):
                    checks.append(CheckResult("e2e", "not-applicable", f"not run: {export_problem}"))
                    continue
                check = e2e_check(self, spec, be, ops)
            else:
                check = archs_check(self, spec, be)
            durations[column] = round(time.monotonic() - t0, 3)
            checks.append(replace(check, seconds=durations[column]) if not check.seconds else check)
        durations["total"] = round(time.monotonic() - start, 3)
        return self._verdict(spec, be, checks, ops, durations)

    def _verdict(
        self,
        spec: CellSpec,
        be: CoverageBackend,
        checks: list[CheckResult],
        ops: tuple[OpResult, ...],
        durations: dict[str, float],
    ) -> Cell:
        device = self.devices.get(spec.backend) or DeviceSummary(spec.backend)
        counted = [c.status for c in checks if c.status != "not-applicable"]
        status = worst(counted) if counted else "not-applicable"
        decisive = [c for c in checks if c.status == status]
        reason = (
            "; ".join(f"{c.column}: {c.summary}" for c in decisive[:2]) if decisive else "no column could run"
        )
        if be.needs_device_class and device.device_class != "real":
            caps = ", ".join(f"{k}={v}" for k, v in device.capabilities.items()) or "none reported"
            reason = (
                (
                    f"{spec.backend} is a {device.device_class} device"
                    if device.device_class != "unknown"
                    else f"{spec.backend}'s device class is unknown"
                )
                + f" ({device.reason or 'no device summary'}; capabilities: "
                f"{caps}): results on it prove nothing (observed: {status})"
            )
            checks = [
                replace(c, status="unverifiable", details={**c.details, "observed_status": c.status})
                if c.status != "not-applicable"
                else c
                for c in checks
            ]
            status = "unverifiable"
        return Cell(
            id=spec.id,
            architecture=spec.model.architecture,
            weight_type=spec.model.weight_type,
            backend=spec.backend,
            model=str(spec.model.path),
            status=status,
            reason=reason,
            observed_by=self.options.observed_by,
            checks=tuple(checks),
            ops=ops,
            durations=durations,
            device=device,
            variant=spec.model.variant,
            whose=_whose(status, checks),
        )

    # --- columns -----------------------------------------------------------------------------------


def _whose(status: Status, checks: list[CheckResult]) -> Whose:
    """Whose the cell's status is: the harness's when a deciding check says so, the input's when
    the tree cannot load the model, else the backend's for a finding ("" for pass and the like)."""
    deciding = [c for c in checks if c.status == status]
    if any(c.details.get("harness") for c in deciding):
        return "harness"
    if any(c.details.get("load_error") for c in deciding):
        return "input"
    if status in ("crash", "hang", "wrong", "unsupported", "fallback"):
        return "backend"
    return ""


def blocked_cell(
    model: ModelInput, backend_name: str, reason: str, whose: Whose, evidence: tuple[str, ...] = ()
) -> Cell:
    """A cell whose model exists but could not be loaded by the tree (convert.json's ``load``
    verdict): nothing ran on the backend; the cell says why and whose it is."""
    return Cell(
        id=cell_id(model, backend_name),
        architecture=model.architecture,
        weight_type=model.weight_type,
        backend=backend_name,
        model=str(model.path),
        status="error",
        reason=reason,
        observed_by="static",
        checks=(CheckResult("support", "error", reason, evidence, details={"load_error": reason}),),
        whose=whose,
    )
