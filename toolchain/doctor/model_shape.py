"""The model's shape as the memory planner needs it, from GGUF metadata (llama.cpp's key names and
defaults): layers, heads per layer, head sizes, sliding-window layers, vocabulary, weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .gguf_reader import LLAMA_MAX_LAYERS, GGUFInfo, is_count

# Sliding-window layer patterns llama.cpp hard-codes per architecture when the GGUF carries no
# `{arch}.attention.sliding_window_pattern` (period n: every layer but each n-th is SWA).
SWA_PERIOD_DEFAULTS: dict[str, int] = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4}


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_layer: int
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer
    head_dim_k: int
    head_dim_v: int
    n_embd: int
    n_ff: int
    n_vocab: int
    weights_bytes: int
    n_ctx_train: int
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()  # per layer; empty: no sliding-window layers


def uniform_shape(
    name: str,
    *,
    n_layer: int,
    n_head: int,
    n_head_kv: int,
    head_dim: int,
    n_embd: int,
    n_ff: int,
    n_vocab: int,
    weights_bytes: int,
    n_ctx_train: int,
) -> ModelShape:
    return ModelShape(
        name,
        n_layer,
        n_head,
        (n_head_kv,) * n_layer,
        head_dim,
        head_dim,
        n_embd,
        n_ff,
        n_vocab,
        weights_bytes,
        n_ctx_train,
    )


def _meta_int(meta: dict[str, Any] | Any, key: str, default: int = 0) -> int:
    """A non-negative integer value (the largest, for a per-layer array); UsageError otherwise."""
    value = meta.get(key, default)
    values = value if isinstance(value, tuple) else (value,)
    if f"len:{key}" in meta and not isinstance(value, tuple):
        raise UsageError(f"{key} is an array of {meta[f'len:{key}']} non-numbers: cannot plan memory")
    if not values:
        return default
    if not all(is_count(v) and v >= 0 for v in values):
        raise UsageError(f"{key} = {value!r} is not a count: cannot plan memory")
    return int(max(values))


def _per_layer(meta: dict[str, Any], key: str, n_layer: int, default: int) -> tuple[int, ...]:
    value = meta.get(key, default)
    if isinstance(value, tuple):
        if len(value) != n_layer:
            raise UsageError(f"{key} has {len(value)} values for {n_layer} layers: cannot plan memory")
        if not all(is_count(v) and v >= 0 for v in value):
            raise UsageError(f"{key} holds values that are not counts: cannot plan memory")
        return tuple(int(v) for v in value)
    return (_meta_int(meta, key, default),) * n_layer


def shape_from_gguf(info: GGUFInfo) -> ModelShape:
    """The planner's model shape from GGUF metadata (llama.cpp's key names and defaults).

    UsageError (the plan is skipped, said so) for metadata llama.cpp would not load: missing
    or non-integer sizes, more layers than llama.cpp reads or than the file has tensors,
    per-layer arrays of the wrong length."""
    meta = dict(info.metadata)
    arch = info.architecture
    if not arch:
        raise UsageError(f"{info.path}: no general.architecture: cannot plan memory")
    n_layer = _meta_int(meta, f"{arch}.block_count")
    n_head = _meta_int(meta, f"{arch}.attention.head_count")
    n_embd = _meta_int(meta, f"{arch}.embedding_length")
    if not (n_layer and n_head and n_embd):
        raise UsageError(
            f"{info.path}: block_count / head_count / embedding_length missing: cannot plan memory"
        )
    if n_layer > min(LLAMA_MAX_LAYERS, max(len(info.tensors), 1)):
        raise UsageError(
            f"{info.path}: block_count {n_layer} is more than llama.cpp reads ({LLAMA_MAX_LAYERS}) "
            f"or the file has tensors ({len(info.tensors)}): cannot plan memory"
        )
    n_head_kv = _per_layer(meta, f"{arch}.attention.head_count_kv", n_layer, n_head)
    head_dim_k = _meta_int(meta, f"{arch}.attention.key_length", n_embd // n_head)
    head_dim_v = _meta_int(meta, f"{arch}.attention.value_length", n_embd // n_head)
    window = _meta_int(meta, f"{arch}.attention.sliding_window")
    swa: tuple[bool, ...] = ()
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
    if window:
        if isinstance(pattern, tuple):
            if len(pattern) != n_layer:
                raise UsageError(
                    f"{arch}.attention.sliding_window_pattern has {len(pattern)} values for "
                    f"{n_layer} layers: cannot plan memory"
                )
            swa = tuple(bool(x) for x in pattern)
        else:
            period = pattern if is_count(pattern) and pattern > 0 else SWA_PERIOD_DEFAULTS.get(arch, 0)
            if period:
                swa = tuple((i % period) < period - 1 for i in range(n_layer))
    n_vocab = _meta_int(meta, f"{arch}.vocab_size") or _meta_int(meta, "len:tokenizer.ggml.tokens")
    return ModelShape(
        name=str(meta.get("general.name", info.path.name)),
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_embd=n_embd,
        n_ff=_meta_int(meta, f"{arch}.feed_forward_length"),
        n_vocab=n_vocab,
        weights_bytes=info.tensor_data_bytes,
        n_ctx_train=_meta_int(meta, f"{arch}.context_length", 4096),
        sliding_window=window,
        swa_layers=swa,
    )
