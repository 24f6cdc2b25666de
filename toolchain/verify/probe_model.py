"""A tiny llama GGUF for the one-token run-time probe (written with the ``gguf`` package).

Two layers, 64-wide, a byte-fallback SentencePiece-style vocabulary of 259 + a few tokens: a few
hundred KB, loads in milliseconds, and runs every op a llama graph needs (GET_ROWS, RMS_NORM,
MUL_MAT, ROPE, SOFT_MAX, …) on whatever device ``-ngl 99`` offloads to. The weights are random
(fixed seed): the probe checks that the build runs a model on its device, not what it says. The
real tiny-model stage (HF checkpoint -> the tree's converter) comes later.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from ..core.diskfull import named

N_EMBD = 64
N_HEAD = 2
N_LAYER = 2
N_FF = 128
N_CTX = 512
SEED = 1234
_VERSION = "1"  # bump when the content changes (the cache key)


def _vocab() -> tuple[list[str], list[float], list[int]]:
    # token types (llama.cpp): 1 normal, 2 unknown, 3 control, 6 byte
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    words = ["▁", "▁the", "▁a", "e", "t", "o", "▁hello", "▁world", "s", "n"]
    tokens += words
    types += [1] * len(words)
    scores = [0.0] * 259 + [-float(i) for i in range(len(words))]
    return tokens, scores, types


def write_probe_model(dest: Path, n_ctx: int = N_CTX) -> Path:
    """Write the probe model to ``dest`` (atomically; reused when already there). ``n_ctx``: the
    training context its metadata claims (tests give it the 2**20 some converters write)."""
    import numpy as np
    from gguf import GGUFWriter

    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    rng = np.random.default_rng(SEED)
    writer = GGUFWriter(str(tmp), "llama")
    writer.add_name("llama-toolchain verify probe")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all f32
    tokens, scores, types = _vocab()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    n_vocab = len(tokens)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(dest)
    except BaseException as exc:
        # a full disk: the partial temporary goes, and the error names the model (its errno asked
        # of the file system while the temporary still fills it: numpy's short write loses it)
        err = named(exc, dest) if isinstance(exc, OSError) else exc
        with contextlib.suppress(OSError):
            writer.close()  # its buffered bytes would otherwise fail again at exit
        tmp.unlink(missing_ok=True)
        if err is exc:
            raise
        raise err from exc
    return dest


def probe_model_name() -> str:
    key = hashlib.sha256(
        f"{_VERSION}-{N_EMBD}-{N_HEAD}-{N_LAYER}-{N_FF}-{N_CTX}-{SEED}".encode()
    ).hexdigest()[:12]
    return f"verify-probe-llama-{key}.gguf"
