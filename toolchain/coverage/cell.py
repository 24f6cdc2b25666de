"""Run one cell (architecture × weight type × backend): every column, each tool in isolation.

Work shared by the cells of one model (the op export, the CPU reference run) or of one
architecture (test-llama-archs without ``-b``) is done once and cached on disk under a lock, so
cells can run in threads of one process or in pytest-xdist workers alike. A tool that crashes,
hangs or floods gives that column its verdict with the last log lines; the cell goes on with the
next column and the run with the next cell.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..convert.load import loader_message
from .backend_ops import SupportParse, TestLine, merge_test, parse_support_csv, parse_test_output, strip_ansi
from .backends import ENCODER_UBATCH_ABORT, PLAIN_CPU_ENV, CoverageBackend, backend, reference_args
from .e2e import (
    NMSE_GROSS,
    NMSE_THRESHOLD_QUANTIZED,
    PROMPT,
    SchedReport,
    first_divergence,
    nmse,
    nmse_threshold,
    output_sample,
    parse_eval_callback,
    parse_sched,
    read_logits,
)
from .isolate import Outcome, run_isolated
from .opsfile import contiguous_index_views, ggml_ids, tree_of_build
from .records import (
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
from .tools import Toolset

EVIDENCE_LINES = 15


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


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """A lock held across threads (threading.Lock) and processes (flock) on ``path``."""
    with _THREAD_LOCKS_GUARD:
        tlock = _THREAD_LOCKS.setdefault(str(path), threading.Lock())
    with tlock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def file_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# An index-range assertion in the CPU backend's own op code (ggml-cpu/ops.cpp: GET_ROWS and kin).
_CPU_INDEX_ASSERT = re.compile(r"ggml-cpu/[\w./-]+:\d+: GGML_ASSERT\((?=[^)]*<\s*ne\d)[^)]*\) failed")


# an integer index source printed with its strides in a case string: "i32[2,256,1,1]nb[4,16,4096,4096]"
_INDEX_NB = re.compile(r"(i(?:32|64)\[[\d,]+\])nb\[[\d,]+\]")


def _dense_index(params: str) -> str:
    return _INDEX_NB.sub(r"\1", params)


def _harness_index_crash(out: Outcome, culprit: OpResult | None) -> str:
    """test-backend-ops fills integer (index) sources of an op taken out of its graph with random
    values; the CPU reference's own bounds check may then abort. Returns the explanation when
    that is what happened (abort inside ggml-cpu on an index bound, culprit with integer
    sources), else ""."""
    if culprit is None or not any(src.type in ("i32", "i64") for src in culprit.sources):
        return ""
    found = next((m for line in (*out.abort_lines, *out.tail) if (m := _CPU_INDEX_ASSERT.search(line))), None)
    if found is None:
        return ""
    return (
        f"harness, not the backend: {culprit.op} got random indices out of context and the CPU "
        f"reference's bounds check aborted ({found[0]})"
    )


def _outcome_json(o: Outcome) -> dict[str, Any]:
    return {
        "args": list(o.args),
        "kind": o.kind,
        "returncode": o.returncode,
        "seconds": o.seconds,
        "tail": list(o.tail),
        "log": o.log,
        "output_bytes": o.output_bytes,
        "abort_lines": list(o.abort_lines),
        "timeout": o.timeout,
    }


def _outcome_from(d: Mapping[str, Any]) -> Outcome:
    return Outcome(
        tuple(d["args"]),
        d["kind"],
        d["returncode"],
        d["seconds"],
        tuple(d["tail"]),
        (),
        d["log"],
        d["output_bytes"],
        tuple(d["abort_lines"]),
        d.get("timeout"),  # absent in caches written before it was recorded: unknown
    )


def _status_of(o: Outcome) -> Status | None:
    """The verdict a failed run gives its column (None: it ran to a normal exit)."""
    if o.kind == "hang":
        return "hang"
    if o.kind in ("crash", "flood"):
        return "crash"
    if o.kind == "missing":
        return "error"
    return None


def _evidence(o: Outcome) -> tuple[str, ...]:
    lines = [strip_ansi(x) for x in o.tail if x.strip()]
    abort = [a for a in o.abort_lines if a not in lines[-EVIDENCE_LINES:]]
    return tuple(abort[:2] + lines[-EVIDENCE_LINES:])


class CellRunner:
    """Runs cells against one build's tools; ``cache_dir`` holds the shared per-model work."""

    def __init__(
        self,
        tools: Toolset,
        cache_dir: Path,
        log_dir: Path,
        options: CellOptions | None = None,
        devices: Mapping[str, DeviceSummary] | None = None,
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

    # --- helpers ---------------------------------------------------------------------------------
    def _run(self, args: list[str], log: Path, env: Mapping[str, str] | None = None) -> Outcome:
        return run_isolated(args, log_path=log, timeout=self.options.timeout, env=env or self.env)

    def _model_dir(self, model: ModelInput) -> Path:
        return self.cache_dir / "models" / f"{model.label}-{model.weight_type}-{file_key(model.path)}"

    def _threads(self) -> list[str]:
        return ["-t", str(self.options.threads)] if self.options.threads > 0 else []

    # --- shared, cached: op export ---------------------------------------------------------------
    def export_ops(self, model: ModelInput) -> tuple[Path | None, Outcome | None, str]:
        """(ops file, outcome of the exporter run, problem) — cached per model."""
        exporter = self.tools.exporter
        if exporter is None:
            return None, None, self.tools.column("support").reason or "no graph-op exporter"
        d = self._model_dir(model)
        # the export runs the plain CPU kernels like the reference (backends.PLAIN_CPU_ENV); the
        # name of the cached result says how it was run
        how = hashlib.sha256(json.dumps(sorted(PLAIN_CPU_ENV.items())).encode()).hexdigest()[:8]
        ops, meta = d / "ops.txt", d / f"export-{how}.json"
        with _locked(d / ".export.lock"):
            if meta.is_file():
                data = json.loads(meta.read_text())
                out = _outcome_from(data["outcome"])
                return (ops if data["ok"] else None), out, data["problem"]
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / "ops.txt.tmp"
            tmp.unlink(missing_ok=True)
            out = self._run(
                [str(exporter), "-m", str(model.path), "-o", str(tmp), *self._threads()],
                d / "export.log",
                {**self.env, **PLAIN_CPU_ENV},
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
                load_error = loader_message(_read_log(Path(out.log)))
                if load_error:
                    problem = f"the tree cannot load this model: {load_error} ({problem})"
            meta.write_text(
                json.dumps(
                    {"ok": ok, "problem": problem, "load_error": load_error, "outcome": _outcome_json(out)}
                )
            )
            return (ops if ok else None), out, problem

    def test_file(self, model: ModelInput, ops_file: Path) -> tuple[Path, tuple[str, ...]]:
        """The ops file for ``test``: strided GET_ROWS index views made contiguous (opsfile.py),
        with the cases rewritten; the exported file itself when nothing needs it (cached per model)."""
        d = self._model_dir(model)
        out, meta = d / "ops-test.txt", d / "ops-test.json"
        with _locked(d / ".export.lock"):
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
        d = self._model_dir(model)
        with _locked(d / ".reference.lock"):
            # keyed on how the reference is run: a change of placement invalidates old results
            how = [reference_args(), reference_args(True), PLAIN_CPU_ENV]
            key = hashlib.sha256(json.dumps(how).encode()).hexdigest()[:10]
            meta = d / f"reference-{key}.json"
            if meta.is_file():
                return dict(json.loads(meta.read_text()))
            data = self._decode(model, reference_args(), d / "reference", "reference", PLAIN_CPU_ENV)
            if ENCODER_UBATCH_ABORT in json.dumps(data):
                # an encoder: the whole prompt must fit one ubatch; the reference's node
                # assignments (recorded) show what, if anything, left the CPU
                data = self._decode(
                    model, reference_args(whole_prompt=True), d / "reference", "reference", PLAIN_CPU_ENV
                )
                data["reference_note"] = "encoder model: prompt in one ubatch of 512"
            meta.write_text(json.dumps(data))
            return data

    def _decode(
        self,
        model: ModelInput,
        placement: tuple[str, ...],
        out_dir: Path,
        label: str,
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run the runner (tokens) and the logits tool on ``placement``; returns JSON-able data."""
        out_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "GGML_SCHED_DEBUG": "2", **(extra_env or {})}
        flags = self.tools.runner_flags
        data: dict[str, Any] = {"label": label, "placement": list(placement)}
        common = [
            "-m",
            str(model.path),
            "-p",
            self.options.prompt,
            "-c",
            "256",
            "-s",
            str(self.options.seed),
            "--temp",
            "0",
            *self._threads(),
            *placement,
        ]
        # tokens (and the scheduler's report) from the runner
        if self.tools.runner is not None:
            args = [str(self.tools.runner), *common, "-n", str(self.options.n_predict)]
            args += [f for f in ("-no-cnv", "--no-warmup", "--no-display-prompt") if f in flags]
            if "-v" in flags:
                args.append("-v")
            out = self._run(args, out_dir / f"{label}-runner.log", env)
            gen = [ln for ln in out.stdout if ln.strip()]
            data["runner"] = _outcome_json(out)
            data["text"] = "\n".join(gen)[-2000:]
            data["sched"] = _sched_json(parse_sched(_read_log(Path(out.log))))
        # logits
        logits_tool = self.tools.logits or self.tools.eval_callback
        if logits_tool is not None:
            lines: list[str] = []
            if self.tools.logits is not None:
                ldir = out_dir / f"{label}-logits"
                args = [str(logits_tool), *common, "--save-logits", "--logits-output-dir", str(ldir), "-v"]
                out = self._run(args, out_dir / f"{label}-logits.log", env)
                files = sorted(ldir.glob("llamacpp-*.bin")) if ldir.is_dir() else []
                data["logits_kind"] = "full"
                data["logits"] = list(read_logits(files[0])) if files and out.kind == "ok" else None
            else:
                args = [str(logits_tool), *common, "-v"]
                if self.tools.has("tensor-filter"):  # only the output: small logs, nothing capped
                    args += ["--tensor-filter", "result_output"]
                out = self._run(args, out_dir / f"{label}-eval-callback.log", env)
                lines = _read_log(Path(out.log))
                nodes = parse_eval_callback(out.stdout)  # stdout only: stderr lines interleave in the log
                sample = output_sample(nodes)
                data["logits_kind"] = "sampled"
                data["logits"] = list(sample.values) if sample else None
                data["logits_sum"] = sample.sum if sample else None
                data["nodes"] = [[n.name, n.op, n.sum] for n in nodes]
            data["logits_run"] = _outcome_json(out)
            if "sched" not in data:
                data["sched"] = _sched_json(parse_sched(lines or _read_log(Path(out.log))))
        return data

    # --- the cell ----------------------------------------------------------------------------------
    def run(self, spec: CellSpec, should_stop: Callable[[], bool] = lambda: False) -> Cell:
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
                st = _status_of(exp_out) or "error"
                unloadable = export_problem.startswith("the tree cannot load this model")
                checks.append(
                    CheckResult(
                        "support",
                        "error" if unloadable else st,
                        export_problem if unloadable else f"op export failed: {export_problem}",
                        _evidence(exp_out),
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
                check, ops = self._support(spec, be, ops_file)
            elif column == "test":
                if ops_file is None:
                    checks.append(CheckResult("test", "not-applicable", f"no ops to test: {export_problem}"))
                    continue
                check, ops = self._test(spec, be, ops_file, ops)
            elif column == "e2e":
                if export_problem.startswith("the tree cannot load this model"):
                    checks.append(CheckResult("e2e", "not-applicable", f"not run: {export_problem}"))
                    continue
                check = self._e2e(spec, be, ops)
            else:
                check = self._archs(spec, be)
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
    def _support(
        self, spec: CellSpec, be: CoverageBackend, ops_file: Path
    ) -> tuple[CheckResult, tuple[OpResult, ...]]:
        assert self.tools.backend_ops is not None
        args = [
            str(self.tools.backend_ops),
            "support",
            "--test-file",
            str(ops_file),
            "-b",
            spec.backend,
            "--output",
            "csv",
        ]
        out = self._run(args, self.log_dir / spec.id / "support.log")
        parsed: SupportParse = parse_support_csv(out.stdout, backend=spec.backend)
        ops = parsed.ops
        bad = _status_of(out)
        if bad:
            return CheckResult(
                "support",
                bad,
                f"test-backend-ops support: {out.describe(self.options.timeout)}",
                _evidence(out),
                out.seconds,
                out.args,
                out.log,
            ), ops
        if not ops:
            why = "; ".join(parsed.problems[:3]) or f"no rows ({out.describe(self.options.timeout)})"
            return CheckResult(
                "support",
                "error",
                f"no support rows for {spec.backend}: {why}",
                _evidence(out),
                out.seconds,
                out.args,
                out.log,
                {"problems": list(parsed.problems[:20])},
            ), ops
        no = [o for o in ops if o.supported == "no"]
        details: dict[str, object] = {
            "ops": len(ops),
            "unsupported": len(no),
            "problems": list(parsed.problems[:20]),
        }
        if no:
            first = ", ".join(o.key for o in no[:3])
            return CheckResult(
                "support",
                "unsupported",
                f"{len(no)} of {len(ops)} op shapes not supported by "
                f"{spec.backend}: {first}{' …' if len(no) > 3 else ''}",
                (),
                out.seconds,
                out.args,
                out.log,
                details,
            ), ops
        return CheckResult(
            "support",
            "pass",
            f"all {len(ops)} op shapes supported",
            (),
            out.seconds,
            out.args,
            out.log,
            details,
        ), ops

    def _test(
        self, spec: CellSpec, be: CoverageBackend, ops_file: Path, ops: tuple[OpResult, ...]
    ) -> tuple[CheckResult, tuple[OpResult, ...]]:
        assert self.tools.backend_ops is not None
        test_ops, rewritten = self.test_file(spec.model, ops_file)
        args = [str(self.tools.backend_ops), "test", "--test-file", str(test_ops), "-b", spec.backend]
        out = self._run(args, self.log_dir / spec.id / "test.log")
        lines = list(out.stdout) or _read_log(Path(out.log))
        # a rewritten case prints its index source without the strides: map it back to the export's
        as_run = [
            replace(o, params=_dense_index(o.params))
            if rewritten and o.op in ("GET_ROWS", "GET_ROWS_BACK")
            else o
            for o in ops
        ]
        alias = {new.key: old.key for new, old in zip(as_run, ops, strict=True) if new.key != old.key}
        results: dict[str, TestLine] = {
            alias.get(k, k): v for k, v in parse_test_output(lines, spec.backend, as_run).items()
        }
        if not ops:  # support did not run: take the cases from the test output itself
            from .backend_ops import op_result

            ops = tuple(op_result(t.op, t.params) for t in results.values())
        merged = merge_test(ops, results)
        bad = _status_of(out)
        if bad:
            done = [o for o in merged if o.test != "not-run"]
            pending = [o for o in merged if o.test == "not-run" and o.supported != "no"]
            where = (f"; last finished: {done[-1].key}" if done else "") + (
                f"; next in order (the likely culprit): {pending[0].key}" if pending else ""
            )
            harness = _harness_index_crash(out, pending[0] if pending else None) if bad == "crash" else ""
            if harness:
                # like the NaN trap: the op ran out of its graph on random inputs, and the CPU
                # reference itself refused them; not a finding about the backend
                assert pending
                merged = tuple(replace(o, message=harness) if o.key == pending[0].key else o for o in merged)
                return CheckResult(
                    "test",
                    "error",
                    f"test-backend-ops test: {harness}{where}",
                    _evidence(out),
                    out.seconds,
                    out.args,
                    out.log,
                    {"harness": harness},
                ), merged
            if pending and bad == "crash":
                merged = tuple(
                    replace(o, test="crash", message=out.describe(self.options.timeout))
                    if o.key == pending[0].key
                    else o
                    for o in merged
                )
            return CheckResult(
                "test",
                bad,
                f"test-backend-ops test: {out.describe(self.options.timeout)}{where}",
                _evidence(out),
                out.seconds,
                out.args,
                out.log,
            ), merged
        fails = [o for o in merged if o.test == "fail"]
        nans = [o for o in merged if o.test in ("nan-both", "nan-reference")]
        oks = [o for o in merged if o.test == "ok"]
        details: dict[str, object] = {
            "ok": len(oks),
            "fail": len(fails),
            "nan": len(nans),
            "not_supported": sum(o.test == "not-supported" for o in merged),
        }
        if rewritten:
            details["index_views_made_contiguous"] = list(rewritten)
        if fails:
            first = "; ".join(f"{o.key}: {o.message or 'FAIL'}" for o in fails[:2])
            return CheckResult(
                "test",
                "wrong",
                f"{len(fails)} op shape(s) differ from the CPU: {first}",
                tuple(o.message for o in fails[:EVIDENCE_LINES] if o.message),
                out.seconds,
                out.args,
                out.log,
                details,
            ), merged
        if not oks and not nans:
            if out.kind != "ok" and not results:
                return CheckResult(
                    "test",
                    "error",
                    f"test-backend-ops test: {out.describe(self.options.timeout)}, no case lines",
                    _evidence(out),
                    out.seconds,
                    out.args,
                    out.log,
                    details,
                ), merged
            return CheckResult(
                "test",
                "not-applicable",
                f"no op shape runs on {spec.backend} (all unsupported)",
                (),
                out.seconds,
                out.args,
                out.log,
                details,
            ), merged
        note = (
            f"; {len(nans)} with NaN on both sides (random inputs out of context: not the backend's result)"
            if nans
            else ""
        )
        if rewritten:
            note += (
                f"; {len(rewritten)} GET_ROWS case(s) ran with their strided index view made contiguous "
                "(test-backend-ops fills it as one block: the rows beyond would be uninitialised)"
            )
        return CheckResult(
            "test",
            "pass",
            f"{len(oks)} op shape(s) match the CPU{note}",
            (),
            out.seconds,
            out.args,
            out.log,
            details,
        ), merged

    def _e2e(self, spec: CellSpec, be: CoverageBackend, ops: tuple[OpResult, ...] = ()) -> CheckResult:
        ref = self.reference(spec.model)
        ref_bad = _run_failure(ref)
        if be.kind == "cpu":
            # the reference itself: the plain CPU kernels (backends.PLAIN_CPU_ENV); the CPU's extra
            # buffer types (AMX, repacked layouts) are not covered by this column
            dev = ref
        else:
            d = self.log_dir / spec.id
            dev = self._decode(spec.model, be.device_args(self.tools.runner_flags), d, "device")
        bad = _run_failure(dev)
        cmd = tuple(dev.get("runner", dev.get("logits_run", {})).get("args", ()))
        log = str(dev.get("runner", {}).get("log", ""))
        if bad:
            status, summary, evidence = bad
            return CheckResult(
                "e2e",
                status,
                f"{'CPU reference' if be.kind == 'cpu' else spec.backend} run: {summary}",
                evidence,
                0.0,
                cmd,
                log,
            )
        if ref_bad:
            return CheckResult(
                "e2e",
                "error",
                f"the CPU reference run failed ({ref_bad[1]}): nothing to compare with",
                ref_bad[2],
                0.0,
                cmd,
                log,
            )
        sched: dict[str, Any] = dev.get("sched", {})
        details: dict[str, object] = {
            "splits_pp": sched.get("splits_pp"),
            "splits_tg": sched.get("splits_tg"),
            "nodes_by_backend": sched.get("nodes_by_backend", {}),
            "cpu_ops": sched.get("cpu_ops", {}),
            "disabled": sched.get("disabled", []),
            "prompt_tokens": sched.get("prompt_tokens"),
            "logits": dev.get("logits_kind", "none"),
            "reference_backends": ref.get("sched", {}).get("nodes_by_backend", {}),
        }
        if be.kind == "cpu":
            return CheckResult(
                "e2e",
                "pass",
                f"decoded {self.options.n_predict} token(s) on the CPU (the reference, plain CPU kernels)",
                (),
                0.0,
                cmd,
                log,
                details,
            )
        # logits
        findings: list[tuple[Status, str]] = []
        a, b = ref.get("logits"), dev.get("logits")
        if a and b:
            err = nmse(a, b)
            details["nmse"] = err if math.isfinite(err) else "inf"
            kind = dev.get("logits_kind")
            what = (
                "last-token logits" if kind == "full" else f"{len(a)} sampled output values (eval-callback)"
            )
            limit = nmse_threshold(spec.model.weight_type)
            details["nmse_threshold"] = limit
            ops_ok = (
                bool(ops)
                and not any(o.test in ("fail", "crash") for o in ops)
                and any(o.test == "ok" for o in ops)
            )
            if err > limit and limit == NMSE_THRESHOLD_QUANTIZED and err <= NMSE_GROSS and ops_ok:
                # every op the backend ran matched the CPU in isolation: the drift is the CPU's q8
                # activations vs the backend's dequantized weights, accumulated over the layers
                details["nmse_note"] = (
                    f"NMSE {err:.1e} above {limit:g} but every op the backend ran matched the "
                    "CPU in test-backend-ops: attributed to the CPU's q8 activation quantization"
                )
            elif err > limit:
                # node sums are comparable only when both runs split the prompt alike
                same_split = kind == "sampled" and len(_nodes(ref)) == len(_nodes(dev))
                div = first_divergence(_nodes(ref), _nodes(dev)) if same_split else ""
                findings.append(
                    (
                        "wrong",
                        f"NMSE {err:.2e} > {limit:g} on {what}"
                        + (f"; first diverging node: {div}" if div else ""),
                    )
                )
        same_tokens = ref.get("text") == dev.get("text")
        details["tokens_agree"] = same_tokens
        if not same_tokens and not (a and b):
            if "logits_kind" in dev:
                findings.append(
                    (
                        "error",
                        "generated tokens differ from the CPU run and the logits could not be read "
                        "to tell a near-tie from a wrong result",
                    )
                )
            else:
                findings.append(
                    ("wrong", "generated tokens differ from the CPU run (tokens only: no logits tool)")
                )
        # fallback
        on_backend = sum(
            n for k, n in sched.get("nodes_by_backend", {}).items() if k.startswith(be.sched_prefix[:4])
        )
        cpu_ops: dict[str, int] = sched.get("cpu_ops", {})
        if sched.get("disabled"):
            findings.append(("fallback", "; ".join(sched["disabled"][:2])))
        if be.kind == "gpu" and cpu_ops:
            listed = ", ".join(f"{op}×{n}" for op, n in sorted(cpu_ops.items(), key=lambda x: -x[1])[:6])
            findings.append(
                (
                    "fallback",
                    f"the scheduler ran {sum(cpu_ops.values())} compute node(s) on the CPU: "
                    f"{listed} (splits {sched.get('splits_pp')}/{sched.get('splits_tg')})",
                )
            )
        if be.kind == "accel" and sched.get("nodes_by_backend") and on_backend == 0:
            tokens = sched.get("prompt_tokens")
            findings.append(
                (
                    "fallback",
                    f"{spec.backend} received no node of the graph (prompt of {tokens} tokens; "
                    f"it takes work from batch {be.min_batch})",
                )
            )
        if findings:
            st = worst([f[0] for f in findings])
            return CheckResult("e2e", st, "; ".join(f[1] for f in findings), (), 0.0, cmd, log, details)
        msg = f"{spec.backend} run matches the CPU"
        if "nmse_note" in details:
            msg = f"{spec.backend} run within quantization drift of the CPU ({details['nmse_note']})"
        if "nmse" in details:
            msg += f" (NMSE {float(details['nmse']):.1e} on {dev.get('logits_kind')} logits"  # type: ignore[arg-type]
            msg += ", tokens agree)" if same_tokens else "; tokens differ: a near-tie of flat random logits)"
        if be.kind == "accel":
            msg += f"; {on_backend} node(s) on {spec.backend}, the rest on the CPU by design"
        return CheckResult("e2e", "pass", msg, (), 0.0, cmd, log, details)

    def _archs(self, spec: CellSpec, be: CoverageBackend) -> CheckResult:
        assert self.tools.archs is not None
        arch = spec.model.architecture
        with_b = self.tools.has("archs-backend")
        key = f"{arch}-{spec.backend}" if with_b else arch
        d = self.cache_dir / "archs" / re.sub(r"[^\w.-]", "_", key)
        with _locked(d.with_suffix(".lock")):
            meta = d / "archs.json"
            if meta.is_file():
                data = json.loads(meta.read_text())
                out = _outcome_from(data["outcome"])
                lines = data["lines"]
            else:
                args = [str(self.tools.archs), "-a", arch, "-s", str(self.options.seed)]
                if with_b:
                    args += ["-b", spec.backend]
                out = self._run(args, d / "archs.log")
                lines = [strip_ansi(x) for x in _read_log(Path(out.log))]
                d.mkdir(parents=True, exist_ok=True)
                meta.write_text(json.dumps({"outcome": _outcome_json(out), "lines": lines[-400:]}))
        rows = parse_archs_rows(lines)
        desc = (self.devices.get(spec.backend) or DeviceSummary(spec.backend)).description
        config = "MoE" if spec.model.variant == "moe" else "Dense"
        mine = [
            r
            for r in rows
            if r["arch"] == arch
            and r["config"] == config
            and (with_b or _device_matches(r["device"], spec.backend, desc, be))
        ]
        bad = _status_of(out)
        if bad:
            if mine and all(r["nmse_status"] in ("OK", "SKIP") for r in mine):
                pass  # our row finished before another device's row crashed (runs without -b)
            else:
                return CheckResult(
                    "archs",
                    bad,
                    f"test-llama-archs -a {arch}: {out.describe(self.options.timeout)}",
                    _evidence(out),
                    out.seconds,
                    out.args,
                    out.log,
                )
        lost = not mine or not mine[0]["nmse_status"]
        if (
            lost
            and with_b
            and out.kind in ("ok", "exit")
            and not any("no tests executed" in x for x in lines)
        ):
            # test-llama-archs logs asynchronously: through a pipe its last row can be lost; its exit
            # status still says whether every test of this (architecture, backend) passed
            ok = out.returncode == 0
            return CheckResult(
                "archs",
                "pass" if ok else "wrong",
                f"test-llama-archs -a {arch} -b {spec.backend}: exit {out.returncode} ("
                + ("all passed" if ok else "a test failed")
                + "; its asynchronous log lost the row)",
                () if ok else _evidence(out),
                out.seconds,
                out.args,
                out.log,
            )
        if not mine:
            return CheckResult(
                "archs",
                "not-applicable",
                f"test-llama-archs has no {config} row for {arch} on {spec.backend}",
                (),
                out.seconds,
                out.args,
                out.log,
            )
        row = mine[0]
        details: dict[str, object] = {
            "nmse": row["nmse"],
            "roundtrip": row["roundtrip"],
            "device": row["device"],
        }
        if row["nmse_status"] == "SKIP":
            return CheckResult(
                "archs",
                "not-applicable",
                f"test-llama-archs skips {arch} ({config})",
                (),
                out.seconds,
                out.args,
                out.log,
                details,
            )
        if row["nmse_status"] != "OK" or row["roundtrip"] == "FAIL":
            return CheckResult(
                "archs",
                "wrong",
                f"test-llama-archs: NMSE {row['nmse_status']} {row['nmse']}, roundtrip {row['roundtrip']}",
                (row["raw"],),
                out.seconds,
                out.args,
                out.log,
                details,
            )
        return CheckResult(
            "archs",
            "pass",
            f"test-llama-archs: NMSE {row['nmse']} vs CPU, roundtrip {row['roundtrip']}",
            (),
            out.seconds,
            out.args,
            out.log,
            details,
        )


_ARCH_ROW = re.compile(
    r"^\|\s*(?P<arch>[\w.-]+)\|\s*(?P<device>[^|]*?)\|\s*(?P<config>Dense|MoE)\|(?P<rest>.*)$"
)


def parse_archs_rows(lines: list[str]) -> list[dict[str, str]]:
    """Rows of test-llama-archs' table: ``|arch|device|config|   OK (1.2e-07)|OK|``."""
    rows = []
    for raw in lines:
        line = strip_ansi(raw).strip()
        m = _ARCH_ROW.match(line)
        if not m:
            continue
        cells = [c.strip() for c in m["rest"].split("|")]
        nmse_cell = cells[0] if cells else ""
        status = nmse_cell.split()[0] if nmse_cell else ""
        value = re.search(r"\(([^)]*)\)", nmse_cell)
        rows.append(
            {
                "arch": m["arch"].strip(),
                "device": m["device"].strip(),
                "config": m["config"],
                "nmse_status": status,
                "nmse": value.group(1) if value else "",
                "roundtrip": cells[1].split()[0] if len(cells) > 1 and cells[1] else "",
                "raw": line,
            }
        )
    return rows


def _device_matches(device_col: str, name: str, description: str, be: CoverageBackend) -> bool:
    if description and description in device_col:
        return True
    # no description known (no verify.json): the name itself, e.g. "BLAS" in "OpenBLAS"
    return name.lower() in device_col.lower()


def _read_log(path: Path, limit: int = 4 << 20) -> list[str]:
    try:
        with path.open("rb") as fh:
            data = fh.read(limit)
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()


def _sched_json(s: SchedReport) -> dict[str, Any]:
    return {
        "nodes_by_backend": s.nodes_by_backend,
        "cpu_ops": s.cpu_ops,
        "cpu_nodes": list(s.cpu_nodes),
        "splits_pp": s.splits_pp,
        "splits_tg": s.splits_tg,
        "split_backends": list(s.split_backends),
        "disabled": list(s.disabled),
        "prompt_tokens": s.prompt_tokens,
    }


def _nodes(data: Mapping[str, Any]) -> list[Any]:
    from .e2e import NodeSample

    return [NodeSample(n[0], n[1], (), n[2]) for n in data.get("nodes", [])]


def _run_failure(data: Mapping[str, Any]) -> tuple[Status, str, tuple[str, ...]] | None:
    """The worst failed run (runner or logits tool) of a decode, as (status, summary, evidence)."""
    for key in ("runner", "logits_run"):
        if key not in data:
            continue
        out = _outcome_from(data[key])
        bad = _status_of(out)
        if bad is None and out.kind == "exit":
            bad = "error"
        if bad:
            prog = Path(out.args[0]).name if out.args else key
            return (
                bad,
                f"{prog}: {out.describe()}",
                _evidence(out),
            )
    return None


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
