"""Memory planner: weights + KV cache + compute buffer against ~70% of unified memory.

KV cache bytes = sum over layers of cells(layer) x n_head_kv(layer) x (head_dim_k x bytes(type_k)
+ head_dim_v x bytes(type_v)), cells = n_ctx for full-attention layers and
min(n_ctx, pad256(sliding_window + n_ubatch)) for sliding-window layers (llama.cpp's SWA cache
without --swa-full). Weights = the GGUF's tensor data size. The compute buffer is an estimate of
what llama.cpp reserves for one ubatch (full offload):

    logits        n_vocab x n_ubatch x 4
    activations   n_ubatch x (4 x n_embd + 2 x n_ff) x 4
    attention     n_ubatch x n_ctx x n_head x 4      (KQ scores; 0 with flash attention)

The budget is ``BUDGET_FRACTION`` of the machine's memory, or the device's
recommendedMaxWorkingSetSize when that is known and smaller. A quantized V cache needs flash
attention in llama.cpp, so the q8_0 row assumes -fa.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..core.proc import capture
from ..errors import UsageError
from ..profiles import PlatformInfo, current_platform
from .catalog import BY_ID
from .findings import Evidence, Finding, ObservedBy
from .fit_params import UpstreamFit, side_by_side
from .model_shape import ModelShape
from .platform_data import MEMORY_PROBES

BUDGET_FRACTION = 0.70
CTX_STEP = 256  # llama.cpp pads the KV cache to 256 cells
GiB = 1 << 30
MiB = 1 << 20

# Bytes per element of a KV cache type (block types: block bytes / block size).
KV_TYPE_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}


@dataclass(frozen=True)
class Estimate:
    n_ctx: int
    cache_type_k: str
    cache_type_v: str
    flash_attn: bool
    n_ubatch: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    total_bytes: int
    budget_bytes: int
    fits: bool


@dataclass(frozen=True)
class MaxContext:
    cache_type: str  # K and V
    flash_attn: bool
    n_ctx: int  # largest multiple of 256 that fits (<= n_ctx_train); 0: none
    total_bytes: int  # at that n_ctx


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    memory_bytes: int
    memory_source: str
    budget_bytes: int
    budget_rule: str
    working_set_bytes: int | None
    requested: Estimate | None
    max_context: tuple[MaxContext, ...]
    n_ctx_train: int
    # llama-fit-params on the same GGUF and parameters, where the build has it, and our
    # estimate at the context it was asked about
    upstream: UpstreamFit | None = None
    upstream_ours: Estimate | None = None


def _pad(n: int, step: int = CTX_STEP) -> int:
    return (n + step - 1) // step * step


def kv_cache_bytes(
    shape: ModelShape, n_ctx: int, type_k: str = "f16", type_v: str = "f16", n_ubatch: int = 512
) -> int:
    bk, bv = _type_bytes(type_k), _type_bytes(type_v)
    total = 0.0
    for layer in range(shape.n_layer):
        cells = n_ctx
        if shape.swa_layers and shape.swa_layers[layer] and shape.sliding_window:
            cells = min(n_ctx, _pad(shape.sliding_window + n_ubatch))
        total += cells * shape.n_head_kv[layer] * (shape.head_dim_k * bk + shape.head_dim_v * bv)
    return int(total)


def compute_buffer_bytes(shape: ModelShape, n_ctx: int, n_ubatch: int = 512, flash_attn: bool = False) -> int:
    logits = shape.n_vocab * n_ubatch * 4
    activations = n_ubatch * (4 * shape.n_embd + 2 * shape.n_ff) * 4
    attention = 0 if flash_attn else n_ubatch * n_ctx * shape.n_head * 4
    return logits + activations + attention


def _type_bytes(name: str) -> float:
    try:
        return KV_TYPE_BYTES[name]
    except KeyError:
        raise UsageError(f"unknown KV cache type {name!r}", f"one of: {', '.join(KV_TYPE_BYTES)}") from None


def estimate(
    shape: ModelShape,
    n_ctx: int,
    budget_bytes: int,
    *,
    type_k: str = "f16",
    type_v: str = "f16",
    flash_attn: bool = False,
    n_ubatch: int = 512,
) -> Estimate:
    n_ubatch = min(n_ubatch, max(n_ctx, 1))
    kv = kv_cache_bytes(shape, _pad(n_ctx), type_k, type_v, n_ubatch)
    compute = compute_buffer_bytes(shape, _pad(n_ctx), n_ubatch, flash_attn)
    total = shape.weights_bytes + kv + compute
    return Estimate(
        n_ctx,
        type_k,
        type_v,
        flash_attn,
        n_ubatch,
        shape.weights_bytes,
        kv,
        compute,
        total,
        budget_bytes,
        total <= budget_bytes,
    )


def max_context(
    shape: ModelShape, budget_bytes: int, *, cache_type: str, flash_attn: bool, n_ubatch: int = 512
) -> MaxContext:
    """The largest n_ctx (a multiple of 256, at most n_ctx_train) whose total fits the budget."""
    cap = max(CTX_STEP, shape.n_ctx_train // CTX_STEP * CTX_STEP)

    def total(n: int) -> int:
        return estimate(
            shape,
            n,
            budget_bytes,
            type_k=cache_type,
            type_v=cache_type,
            flash_attn=flash_attn,
            n_ubatch=n_ubatch,
        ).total_bytes

    lo, hi = 0, cap // CTX_STEP  # in steps; total() grows with n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if total(mid * CTX_STEP) <= budget_bytes:
            lo = mid
        else:
            hi = mid - 1
    n = lo * CTX_STEP
    return MaxContext(cache_type, flash_attn, n, total(n) if n else 0)


def budget(memory_bytes: int, working_set_bytes: int | None = None) -> tuple[int, str]:
    share = int(memory_bytes * BUDGET_FRACTION)
    if working_set_bytes and working_set_bytes < share:
        return working_set_bytes, "the device's recommendedMaxWorkingSetSize"
    return share, f"{BUDGET_FRACTION:.0%}"


def plan(
    shape: ModelShape,
    memory_bytes: int,
    *,
    memory_source: str = "",
    working_set_bytes: int | None = None,
    n_ctx: int | None = None,
    type_k: str = "f16",
    type_v: str = "f16",
    flash_attn: bool = False,
    n_ubatch: int = 512,
) -> MemoryPlan:
    limit, rule = budget(memory_bytes, working_set_bytes)
    requested = None
    if n_ctx is not None:
        n = n_ctx if n_ctx > 0 else shape.n_ctx_train  # -c 0: the training context
        requested = estimate(
            shape, n, limit, type_k=type_k, type_v=type_v, flash_attn=flash_attn, n_ubatch=n_ubatch
        )
    rows = (
        max_context(shape, limit, cache_type="f16", flash_attn=flash_attn, n_ubatch=n_ubatch),
        max_context(shape, limit, cache_type="q8_0", flash_attn=True, n_ubatch=n_ubatch),
    )
    return MemoryPlan(
        shape.name,
        memory_bytes,
        memory_source,
        limit,
        rule,
        working_set_bytes,
        requested,
        rows,
        shape.n_ctx_train,
    )


# --- inputs --------------------------------------------------------------------------------------
_SIZE = re.compile(r"^\s*(\d{1,20}(?:\.\d{1,20})?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
MAX_MEMORY = 1 << 60  # 1 EiB: more is a typo, not a machine


def parse_size(text: str, option: str = "--memory") -> int:
    """``64GiB``, ``64G``, ``64GB`` (memory sizes are binary: all three are 64 x 2^30), ``512M``, bytes.

    UsageError naming ``option`` for anything else, zero, or more than ``MAX_MEMORY``."""
    hint = "write it like 64GiB, 48G or 17179869184"
    m = _SIZE.match(text)
    shown = repr(text) if len(text) <= 24 else f"{text[:12]!r}… ({len(text)} characters)"
    if not m:
        raise UsageError(f"{option} {shown}: cannot read the size", hint)
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    value = int(Fraction(m.group(1)) * scale)  # exact: no float overflow, no rounding
    if not 0 < value <= MAX_MEMORY:
        raise UsageError(f"{option} {shown}: out of range (1 byte to 1 EiB)", hint)
    return value


def parse_meminfo(text: str) -> int | None:
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def machine_memory(plat: PlatformInfo | None = None) -> tuple[int, str] | None:
    """(bytes, how it was learned) from the platform's probe in platform_data; None if unavailable."""
    plat = plat or current_platform()
    probe = MEMORY_PROBES.get(plat.name)
    if probe is None:
        return None
    try:
        if probe.file:
            value = parse_meminfo(Path(probe.file).read_text(encoding="utf-8"))
        else:
            done = capture(list(probe.command), timeout=10)
            if not done.ok:
                return None
            value = int(done.stdout.strip())
    except (OSError, ValueError):
        return None
    return (value, probe.description) if value else None


# --- findings ------------------------------------------------------------------------------------
def gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def plan_findings(p: MemoryPlan, observed_by: ObservedBy = "static") -> list[Finding]:
    cls = BY_ID["memory"]
    rows = "; ".join(
        f"{m.cache_type} KV{' (-fa)' if m.flash_attn else ''}: -c {m.n_ctx}" for m in p.max_context
    )
    budget_text = f"budget {gib(p.budget_bytes)} = {p.budget_rule} of {gib(p.memory_bytes)}"
    if p.working_set_bytes and p.budget_bytes == p.working_set_bytes:
        budget_text = f"budget {gib(p.budget_bytes)} = {p.budget_rule} ({gib(p.memory_bytes)} memory)"
    ev = [Evidence(text=f"{p.model}: largest context that fits: {rows}; {budget_text}")]
    req = p.requested
    if req is not None:
        ev.insert(
            0,
            Evidence(
                text=f"-c {req.n_ctx} -ctk {req.cache_type_k} -ctv {req.cache_type_v}"
                f"{' -fa' if req.flash_attn else ''} -ub {req.n_ubatch}: "
                f"weights {gib(req.weights_bytes)} + KV {gib(req.kv_bytes)} + compute ~{gib(req.compute_bytes)} = {gib(req.total_bytes)}"
            ),
        )
    if p.upstream is not None and p.upstream_ours is not None:
        o = p.upstream_ours
        ev += [
            Evidence(text=line)
            for line in side_by_side(
                p.upstream,
                weights=o.weights_bytes,
                kv=o.kv_bytes,
                compute=o.compute_bytes,
                n_ctx=o.n_ctx,
                budget_text=budget_text,
                largest=rows,
            )
        ]
    if all(m.n_ctx == 0 for m in p.max_context):
        severity, conf = "error", 0.9
        summary = f"the model does not fit at any context length ({budget_text})"
    elif req is not None and not req.fits:
        severity, conf = "error", 0.85
        summary = (
            f"-c {req.n_ctx} needs {gib(req.total_bytes)}, over the {budget_text}; largest that fits: {rows}"
        )
    else:
        severity, conf = "info", 0.5
        summary = f"memory plan: {rows} ({budget_text})"
    return [
        cls.finding(
            severity=severity,  # type: ignore[arg-type]
            confidence=conf,
            summary=summary,
            observed_by=observed_by,
            evidence=tuple(ev),
        )
    ]
