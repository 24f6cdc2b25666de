"""The ``e2e`` column: decode on the backend and on the CPU reference, compare logits, tokens and
where the scheduler put the graph."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core import tree
from ..engine.backends import CoverageBackend
from ..engine.outcomes import outcome_json, read_log, run_failure
from ..records import CheckResult, ModelInput, OpResult, Status, worst
from .e2e import (
    NMSE_GROSS,
    NMSE_THRESHOLD_QUANTIZED,
    NodeSample,
    SchedReport,
    first_divergence,
    nmse,
    nmse_threshold,
    output_sample,
    parse_eval_callback,
    parse_sched,
    read_logits,
)

if TYPE_CHECKING:
    from ..engine.cell import CellRunner, CellSpec


def decode(
    runner: CellRunner,
    model: ModelInput,
    placement: tuple[str, ...],
    out_dir: Path,
    label: str,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the runner (tokens) and the logits tool on ``placement``; returns JSON-able data."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**runner.env, **tree.SCHED_DEBUG_ENV, **(extra_env or {})}
    flags = runner.tools.runner_flags
    data: dict[str, Any] = {"label": label, "placement": list(placement)}
    common = [
        "-m",
        str(model.path),
        "-p",
        runner.options.prompt,
        "-c",
        "256",
        "-s",
        str(runner.options.seed),
        "--temp",
        "0",
        *runner.threads(),
        *placement,
    ]
    # tokens (and the scheduler's report) from the runner
    if runner.tools.runner is not None:
        args = [str(runner.tools.runner), *common, "-n", str(runner.options.n_predict)]
        args += [f for f in ("-no-cnv", "--no-warmup", "--no-display-prompt") if f in flags]
        if "-v" in flags:
            args.append("-v")
        out = runner.run_tool(args, out_dir / f"{label}-runner.log", env)
        gen = [ln for ln in out.stdout if ln.strip()]
        data["runner"] = outcome_json(out)
        data["text"] = "\n".join(gen)[-2000:]
        data["sched"] = sched_json(parse_sched(read_log(Path(out.log))))
    # logits
    logits_tool = runner.tools.logits or runner.tools.eval_callback
    if logits_tool is not None:
        lines: list[str] = []
        if runner.tools.logits is not None:
            ldir = out_dir / f"{label}-logits"
            args = [str(logits_tool), *common, "--save-logits", "--logits-output-dir", str(ldir), "-v"]
            out = runner.run_tool(args, out_dir / f"{label}-logits.log", env)
            files = sorted(ldir.glob("llamacpp-*.bin")) if ldir.is_dir() else []
            data["logits_kind"] = "full"
            data["logits"] = list(read_logits(files[0])) if files and out.kind == "ok" else None
        else:
            args = [str(logits_tool), *common, "-v"]
            if runner.tools.has("tensor-filter"):  # only the output: small logs, nothing capped
                args += ["--tensor-filter", "result_output"]
            out = runner.run_tool(args, out_dir / f"{label}-eval-callback.log", env)
            lines = read_log(Path(out.log))
            nodes = parse_eval_callback(out.stdout)  # stdout only: stderr lines interleave in the log
            sample = output_sample(nodes)
            data["logits_kind"] = "sampled"
            data["logits"] = list(sample.values) if sample else None
            data["logits_sum"] = sample.sum if sample else None
            data["nodes"] = [[n.name, n.op, n.sum] for n in nodes]
        data["logits_run"] = outcome_json(out)
        if "sched" not in data:
            data["sched"] = sched_json(parse_sched(lines or read_log(Path(out.log))))
    return data


# --- the cell ----------------------------------------------------------------------------------


def sched_json(s: SchedReport) -> dict[str, Any]:
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


def decode_nodes(data: Mapping[str, Any]) -> list[NodeSample]:
    return [NodeSample(n[0], n[1], (), n[2]) for n in data.get("nodes", [])]


def e2e_check(
    runner: CellRunner, spec: CellSpec, be: CoverageBackend, ops: tuple[OpResult, ...] = ()
) -> CheckResult:
    ref = runner.reference(spec.model)
    ref_bad = run_failure(ref)
    if be.kind == "cpu":
        # the reference itself: the plain CPU kernels (backends.PLAIN_CPU_ENV); the CPU's extra
        # buffer types (AMX, repacked layouts) are not covered by this column
        dev = ref
    else:
        d = runner.log_dir / spec.id
        dev = decode(runner, spec.model, be.device_args(runner.tools.runner_flags), d, "device")
    bad = run_failure(dev)
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
            f"decoded {runner.options.n_predict} token(s) on the CPU (the reference, plain CPU kernels)",
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
        what = "last-token logits" if kind == "full" else f"{len(a)} sampled output values (eval-callback)"
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
            same_split = kind == "sampled" and len(decode_nodes(ref)) == len(decode_nodes(dev))
            div = first_divergence(decode_nodes(ref), decode_nodes(dev)) if same_split else ""
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
