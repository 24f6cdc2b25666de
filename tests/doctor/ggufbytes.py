"""Raw GGUF bytes for hostile-input tests: any header, valid or not (the gguf package's writer
refuses to write most of what these tests need)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {
    U8: "B",
    I8: "b",
    U16: "H",
    I16: "h",
    U32: "I",
    I32: "i",
    F32: "f",
    BOOL: "?",
    U64: "Q",
    I64: "q",
    F64: "d",
}
F32_TYPE = 0  # ggml type id of f32 tensors


def string(text: bytes | str) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def value(vtype: int, v: object) -> bytes:
    if vtype == STR:
        return string(v)  # type: ignore[arg-type]
    return struct.pack("<" + FMT[vtype], v)


def kv(key: str, vtype: int, v: object) -> bytes:
    return string(key) + struct.pack("<I", vtype) + value(vtype, v)


def kv_array(key: str, item_type: int, items: Sequence[object]) -> bytes:
    body = b"".join(value(item_type, i) for i in items)
    return string(key) + struct.pack("<IIQ", ARR, item_type, len(items)) + body


def tensor_info(name: str, dims: Sequence[int], ggml_type: int = F32_TYPE, offset: int = 0) -> bytes:
    packed = b"".join(struct.pack("<Q", d) for d in dims)
    return string(name) + struct.pack("<I", len(dims)) + packed + struct.pack("<IQ", ggml_type, offset)


def gguf(
    kvs: Sequence[bytes],
    tensors: Sequence[bytes] = (),
    *,
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    data: bytes = b"",
    alignment: int = 32,
) -> bytes:
    head = b"GGUF" + struct.pack(
        "<IQQ",
        version,
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kv is None else n_kv,
    )
    head += b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % alignment) + data


def model(
    block_count: int = 2,
    extra: Iterable[bytes] = (),
    *,
    block_count_type: int = U32,
    n_embd: int = 64,
    n_head: int = 4,
) -> bytes:
    """A llama-shaped GGUF with one f32 tensor per layer (``block_count`` layers, at most 4 written)."""
    kvs = [
        kv("general.architecture", STR, "llama"),
        kv("llama.block_count", block_count_type, block_count),
        kv("llama.attention.head_count", U32, n_head),
        kv("llama.embedding_length", U32, n_embd),
        kv("llama.context_length", U32, 2048),
        kv("llama.feed_forward_length", U32, 128),
        *extra,
    ]
    layer_bytes = n_embd * n_embd * 4
    names = ["token_embd.weight", *(f"blk.{i}.attn_q.weight" for i in range(min(block_count, 4)))]
    dims = [[n_embd, 32], *([[n_embd, n_embd]] * (len(names) - 1))]
    tensors, offset = [], 0
    for name, shape in zip(names, dims, strict=True):
        tensors.append(tensor_info(name, shape, offset=offset))
        offset += shape[0] * shape[1] * 4
    return gguf(kvs, tensors, data=b"\0" * max(offset, layer_bytes))
