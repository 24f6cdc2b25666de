"""The ``support`` and ``test`` columns: test-backend-ops on the model's exported ops."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ...core.isolate import Outcome
from ..engine.backends import HARNESS_ENV, CoverageBackend
from ..engine.cases import CaseSplit, split_case
from ..engine.outcomes import EVIDENCE_LINES, evidence_of, read_log, status_of
from ..records import CheckResult, OpResult
from .backend_ops import SupportParse, TestLine, merge_test, op_result, parse_support_csv, parse_test_output

if TYPE_CHECKING:
    from ..engine.cell import CellRunner, CellSpec

# An index-range assertion in the CPU backend's own op code (ggml-cpu/ops.cpp: GET_ROWS and kin).
_CPU_INDEX_ASSERT = re.compile(r"ggml-cpu/[\w./-]+:\d+: GGML_ASSERT\((?=[^)]*<\s*ne\d)[^)]*\) failed")


# an integer index source printed with its strides in a case string: "i32[2,256,1,1]nb[4,16,4096,4096]"
_INDEX_NB = re.compile(r"(i(?:32|64)\[[\d,]+\])nb\[[\d,]+\]")


def _dense_index(params: str) -> str:
    return _INDEX_NB.sub(r"\1", params)


def harness_index_crash(out: Outcome, culprit: OpResult | None) -> str:
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


def support_check(
    runner: CellRunner, spec: CellSpec, be: CoverageBackend, ops_file: Path
) -> tuple[CheckResult, tuple[OpResult, ...]]:
    assert runner.tools.backend_ops is not None
    args = [
        str(runner.tools.backend_ops),
        "support",
        "--test-file",
        str(ops_file),
        "-b",
        spec.backend,
        "--output",
        "csv",
    ]
    out = runner.run_tool(args, runner.log_dir / spec.id / "support.log")
    parsed: SupportParse = parse_support_csv(out.stdout, backend=spec.backend)
    ops = parsed.ops
    bad = status_of(out)
    if bad:
        return CheckResult(
            "support",
            bad,
            f"test-backend-ops support: {out.describe(runner.options.timeout)}",
            evidence_of(out),
            out.seconds,
            out.args,
            out.log,
        ), ops
    if not ops:
        why = "; ".join(parsed.problems[:3]) or f"no rows ({out.describe(runner.options.timeout)})"
        return CheckResult(
            "support",
            "error",
            f"no support rows for {spec.backend}: {why}",
            evidence_of(out),
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


def _aligned(lines: list[str], ops: tuple[OpResult, ...]) -> bool:
    """Whether the test file's lines are the support rows' cases, one for one and in order (the
    same tensor name on each): only then can a line's verdict be shared with an identical case of
    another cell."""
    return len(lines) == len(ops) and all(
        split_case(line)[1] == op.name for line, op in zip(lines, ops, strict=True)
    )


def test_check(
    runner: CellRunner, spec: CellSpec, be: CoverageBackend, ops_file: Path, ops: tuple[OpResult, ...]
) -> tuple[CheckResult, tuple[OpResult, ...]]:
    assert runner.tools.backend_ops is not None
    test_ops, rewritten = runner.test_file(spec.model, ops_file)
    case_lines = test_ops.read_text(encoding="utf-8").splitlines()
    aligned = bool(ops) and _aligned(case_lines, ops)
    split = runner.cases.split(spec.backend, case_lines) if aligned else CaseSplit((), {})
    run_file = test_ops
    if split.known and split.run:  # only the cases no cell of this run has measured yet
        run_file = runner.log_dir / spec.id / "ops-test-run.txt"
        run_file.parent.mkdir(parents=True, exist_ok=True)
        run_file.write_text("".join(case_lines[i] + "\n" for i in split.run), encoding="utf-8")
    if split.known and not split.run:  # every case was measured in another cell of this run
        out = Outcome((), "ok", 0, 0.0, (), (), "", 0)
        lines: list[str] = []
    else:
        args = [str(runner.tools.backend_ops), "test", "--test-file", str(run_file), "-b", spec.backend]
        out = runner.run_tool(args, runner.log_dir / spec.id / "test.log", {**runner.env, **HARNESS_ENV})
        lines = list(out.stdout) or read_log(Path(out.log))
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
        ops = tuple(op_result(t.op, t.params) for t in results.values())
    for i, found in split.known.items():
        results[ops[i].key] = TestLine(ops[i].op, ops[i].params, found.test, found.message)
    merged = merge_test(ops, results)
    if aligned:
        runner.cases.record(spec.backend, case_lines, merged, split.run, spec.id)
    shared = {ops[i].key: found.cell for i, found in sorted(split.known.items())}
    bad = status_of(out)
    if bad:
        done = [o for o in merged if o.test != "not-run"]
        pending = [o for o in merged if o.test == "not-run" and o.supported != "no"]
        where = (f"; last finished: {done[-1].key}" if done else "") + (
            f"; next in order (the likely culprit): {pending[0].key}" if pending else ""
        )
        harness = harness_index_crash(out, pending[0] if pending else None) if bad == "crash" else ""
        if harness:
            # like the NaN trap: the op ran out of its graph on random inputs, and the CPU
            # reference itself refused them; not a finding about the backend
            assert pending
            merged = tuple(replace(o, message=harness) if o.key == pending[0].key else o for o in merged)
            return CheckResult(
                "test",
                "error",
                f"test-backend-ops test: {harness}{where}",
                evidence_of(out),
                out.seconds,
                out.args,
                out.log,
                {"harness": harness},
            ), merged
        if pending and bad == "crash":
            merged = tuple(
                replace(o, test="crash", message=out.describe(runner.options.timeout))
                if o.key == pending[0].key
                else o
                for o in merged
            )
        return CheckResult(
            "test",
            bad,
            f"test-backend-ops test: {out.describe(runner.options.timeout)}{where}",
            evidence_of(out),
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
    if shared:
        details["identical_cases"] = shared  # case key -> the cell of this run that measured it
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
                f"test-backend-ops test: {out.describe(runner.options.timeout)}, no case lines",
                evidence_of(out),
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
    if shared:
        note += f"; {len(shared)} of them the same case as measured in another cell of this run"
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
