"""The memory planner against hand computations for real model shapes.

KV cache bytes = n_ctx x n_layer x n_head_kv x (head_dim_k x b_k + head_dim_v x b_v),
b = 2 for f16 and 34/32 for q8_0 (a block of 32 values is 2 bytes of scale + 32 bytes).
Shapes from the models' config.json (layers, heads, KV heads, head dim, hidden, FFN, vocab).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from toolchain.doctor.gguf_check import read_gguf
from toolchain.doctor.memory import (
    GiB,
    compute_buffer_bytes,
    estimate,
    kv_cache_bytes,
    machine_memory,
    max_context,
    parse_meminfo,
    parse_size,
    plan,
    plan_findings,
)
from toolchain.doctor.model_shape import ModelShape, shape_from_gguf, uniform_shape
from toolchain.errors import UsageError
from toolchain.profiles import PlatformInfo

# Llama-3.1-8B: 32 layers, 32 heads, 8 KV heads, head dim 128, hidden 4096, FFN 14336, vocab 128256
LLAMA3_8B = uniform_shape(
    "Llama-3.1-8B Q4_K_M", n_layer=32, n_head=32, n_head_kv=8, head_dim=128, n_embd=4096, n_ff=14336,
    n_vocab=128256, weights_bytes=4_920_000_000, n_ctx_train=131072,
)  # fmt: skip
# Llama-3-70B: 80 layers, 64 heads, 8 KV heads, head dim 128, hidden 8192, FFN 28672, vocab 128256
LLAMA3_70B = uniform_shape(
    "Llama-3.3-70B Q4_K_M", n_layer=80, n_head=64, n_head_kv=8, head_dim=128, n_embd=8192, n_ff=28672,
    n_vocab=128256, weights_bytes=42_500_000_000, n_ctx_train=131072,
)  # fmt: skip
# Qwen2.5-7B: 28 layers, 28 heads, 4 KV heads, head dim 128, hidden 3584, FFN 18944, vocab 152064
QWEN25_7B = uniform_shape(
    "Qwen2.5-7B Q4_K_M", n_layer=28, n_head=28, n_head_kv=4, head_dim=128, n_embd=3584, n_ff=18944,
    n_vocab=152064, weights_bytes=4_680_000_000, n_ctx_train=32768,
)  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "per_token_f16", "per_token_q8"),
    [
        # 32 layers x 8 KV heads x (128 + 128) values x 2 bytes = 131072 B = 128 KiB per token
        (LLAMA3_8B, 32 * 8 * 256 * 2, 32 * 8 * 256 * 34 // 32),
        # 80 x 8 x 256 x 2 = 327680 B = 320 KiB per token
        (LLAMA3_70B, 80 * 8 * 256 * 2, 80 * 8 * 256 * 34 // 32),
        # 28 x 4 x 256 x 2 = 57344 B = 56 KiB per token
        (QWEN25_7B, 28 * 4 * 256 * 2, 28 * 4 * 256 * 34 // 32),
    ],
)
def test_kv_cache_matches_hand_computation(shape: ModelShape, per_token_f16: int, per_token_q8: int) -> None:
    for n_ctx in (4096, 8192, 32768):
        assert kv_cache_bytes(shape, n_ctx, "f16", "f16") == n_ctx * per_token_f16
        assert kv_cache_bytes(shape, n_ctx, "q8_0", "q8_0") == n_ctx * per_token_q8


def test_known_sizes() -> None:
    assert kv_cache_bytes(LLAMA3_8B, 8192) == 1 * GiB  # the 1 GiB llama.cpp prints for -c 8192
    assert kv_cache_bytes(LLAMA3_70B, 131072) == 40 * GiB
    assert kv_cache_bytes(QWEN25_7B, 32768) == int(1.75 * GiB)


def test_compute_buffer_estimate_by_hand() -> None:
    ub, ctx = 512, 8192
    logits = 128256 * ub * 4  # 262,668,288
    activations = ub * (4 * 4096 + 2 * 14336) * 4  # 92,274,688
    attention = ub * ctx * 32 * 4  # KQ scores in f32: 536,870,912
    assert compute_buffer_bytes(LLAMA3_8B, ctx, ub, flash_attn=False) == logits + activations + attention
    assert compute_buffer_bytes(LLAMA3_8B, ctx, ub, flash_attn=True) == logits + activations
    est = estimate(LLAMA3_8B, ctx, 10 * GiB)
    assert est.total_bytes == 4_920_000_000 + 1 * GiB + logits + activations + attention
    assert est.fits


@pytest.mark.parametrize("shape", [LLAMA3_8B, LLAMA3_70B, QWEN25_7B], ids=lambda s: s.name)
@pytest.mark.parametrize("memory_gib", [16, 32, 64, 128])
def test_largest_context_by_hand(shape: ModelShape, memory_gib: int) -> None:
    budget = int(memory_gib * GiB * 0.70)
    ub = 512
    # fixed part: weights + logits (n_vocab x ubatch x f32) + activations (ubatch x (4 n_embd + 2 n_ff) x f32)
    fixed = shape.weights_bytes + shape.n_vocab * ub * 4 + ub * (4 * shape.n_embd + 2 * shape.n_ff) * 4
    kv_f16 = shape.n_layer * shape.n_head_kv[0] * (128 + 128) * 2  # per context token
    kq = ub * shape.n_head * 4  # attention scores per context token (no -fa)
    kv_q8 = shape.n_layer * shape.n_head_kv[0] * (128 + 128) * 34 / 32
    cap = shape.n_ctx_train
    hand_f16 = max(0, min(cap, int((budget - fixed) // (kv_f16 + kq)) // 256 * 256))
    hand_q8 = max(0, min(cap, int((budget - fixed) // kv_q8) // 256 * 256))
    assert max_context(shape, budget, cache_type="f16", flash_attn=False).n_ctx == hand_f16
    assert max_context(shape, budget, cache_type="q8_0", flash_attn=True).n_ctx == hand_q8


def test_worked_example_70b_q4_on_a_64gb_mac() -> None:
    """~40 GB of weights on a 64 GB Mac: only a short context fits, far below the trained 128k."""
    p = plan(LLAMA3_70B, 64 * GiB, n_ctx=131072)
    assert p.budget_bytes == int(64 * GiB * 0.7)  # 44.8 GiB
    f16, q8 = p.max_context
    # by hand: (44.8 GiB - 42.5e9 - logits 262,668,288 - activations 184,549,376) / (327,680 + 131,072)
    assert f16.n_ctx == 11008
    # q8_0 with -fa: same headroom / 174,080 bytes per token
    assert q8.n_ctx == 29440
    assert f16.n_ctx < 16384 < 131072
    assert p.requested is not None and not p.requested.fits
    assert p.requested.kv_bytes == 40 * GiB
    findings = plan_findings(p)
    assert findings[0].class_id == "memory" and findings[0].severity == "error"
    assert "-c 11008" in findings[0].summary and "q8_0" in findings[0].summary
    # the model plus a modest context: ~45 GB at run time, which is why it only runs short
    assert 44e9 < estimate(LLAMA3_70B, 8192, p.budget_bytes, flash_attn=True).total_bytes < 46e9  # decimal GB


def test_working_set_limits_the_budget() -> None:
    p = plan(LLAMA3_8B, 16 * GiB, working_set_bytes=10_000_000_000)
    assert p.budget_bytes == 10_000_000_000 and "recommendedMaxWorkingSetSize" in p.budget_rule


def test_model_that_never_fits() -> None:
    p = plan(LLAMA3_70B, 32 * GiB)
    assert all(m.n_ctx == 0 for m in p.max_context)
    assert "does not fit at any" in plan_findings(p)[0].summary


def test_parse_size() -> None:
    assert parse_size("64GiB") == parse_size("64G") == parse_size("64GB") == 64 * GiB
    assert parse_size("512M") == 512 << 20
    assert parse_size("1.5g") == int(1.5 * GiB)
    assert parse_size("17179869184") == 16 * GiB
    with pytest.raises(UsageError):
        parse_size("lots")


def test_meminfo_and_probe() -> None:
    assert parse_meminfo("MemTotal:       24576000 kB\nMemFree: 1 kB\n") == 24576000 * 1024
    probed = machine_memory()
    if Path("/proc/meminfo").is_file():
        assert probed is not None and probed[1] == "/proc/meminfo MemTotal" and probed[0] > 0
    assert machine_memory(PlatformInfo("win32", "x86_64", "10")) is None  # no probe there: not guessed


def test_shape_from_written_gguf(write_gguf: Callable[..., Path]) -> None:
    info = read_gguf(write_gguf(n_layer=2, n_embd=64, n_head=4, n_head_kv=2))
    shape = shape_from_gguf(info)
    assert (shape.n_layer, shape.n_head, shape.n_head_kv, shape.head_dim_k) == (2, 4, (2, 2), 16)
    assert shape.weights_bytes == info.tensor_data_bytes and shape.n_vocab == 32
    # 2 layers x 2 KV heads x (16 + 16) x 2 bytes = 256 bytes per token
    assert kv_cache_bytes(shape, 1024) == 1024 * 256


def test_sliding_window_layers(write_gguf: Callable[..., Path]) -> None:
    """gemma3: 5 of every 6 layers use a 512-token window; their cache is pad256(512 + ubatch) cells."""
    info = read_gguf(
        write_gguf("g3.gguf", arch="gemma3", n_layer=6, extra={"gemma3.attention.sliding_window": 512})
    )
    shape = shape_from_gguf(info)
    assert shape.swa_layers == (True, True, True, True, True, False)
    per_cell = 2 * (16 + 16) * 2  # 2 KV heads x (16 + 16) values x 2 bytes
    assert kv_cache_bytes(shape, 8192, n_ubatch=512) == 5 * 1024 * per_cell + 1 * 8192 * per_cell
