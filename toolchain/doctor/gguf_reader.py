"""The bounded GGUF header reader: header, key/value pairs and tensor infos, never the data.

Everything is read within limits proportionate to what a real GGUF holds (``MAX_*`` below) and
to the bytes the file has; it never recurses. What is beyond them is a ``parse_error`` in the
result (the check turns it into a ``gguf-format`` finding), not an allocation. Pre-GGUF files
(ggml / ggmf / ggjt / ggla magics) are named as such. Only regular files are opened (a FIFO or
device is refused at once).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

from ..errors import GGUFError
from .files import open_regular

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # what llama.cpp reads (gguf.cpp: v1 refused, newer refused)
# Pre-GGUF magics as the four bytes appear on disk (uint32 written little-endian).
PRE_GGUF_MAGICS: Mapping[bytes, str] = {
    b"tjgg": "ggjt (pre-GGUF llama.cpp format, 2023)",
    b"fmgg": "ggmf (pre-GGUF llama.cpp format, 2023)",
    b"lmgg": "ggml (unversioned pre-GGUF format)",
    b"algg": "ggla (pre-GGUF LoRA adapter)",
}
DEFAULT_ALIGNMENT = 32
# Bounds of the header walk, proportionate to what a real GGUF holds: a 262k-token vocabulary
# with its scores, types and merges is ~1M array elements and ~10 MB of header; models have a
# few thousand tensors and fewer than 100 keys. A header beyond them is refused (a gguf-format
# finding) before anything is allocated for it; every length is also checked against the bytes
# the file has left, so a small file cannot claim a large header.
MAX_HEADER_BYTES = 128 << 20  # key/value pairs + tensor infos
MAX_STRING = 16 << 20  # one string (chat templates are kilobytes)
MAX_KV = 1 << 16  # key/value pairs
MAX_TENSORS = 1 << 17  # tensor infos
MAX_ARRAY = 1 << 21  # elements of one array
MAX_ARRAY_TOTAL = 1 << 22  # elements of all arrays together
KEEP_ARRAY = 4096  # numeric arrays up to this length are kept (per-layer values); longer: their length
MAX_DIMS = 4  # GGML_MAX_DIMS (gguf.cpp refuses more)
LLAMA_MAX_LAYERS = 512  # src/llama-hparams.h: llama.cpp reads at most this many layers
# Per-layer keys llama.cpp reads as "a value or an array of block_count values" (get_key_or_arr)
PER_LAYER_KEYS = (
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.sliding_window_pattern",
)

# GGUF value types (gguf.GGUFValueType): id -> struct format ("" = string / array)
_SCALARS: Mapping[int, str] = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
TYPE_NAMES: Mapping[int, str] = {
    0: "UINT8",
    1: "INT8",
    2: "UINT16",
    3: "INT16",
    4: "UINT32",
    5: "INT32",
    6: "FLOAT32",
    7: "BOOL",
    8: "STRING",
    9: "ARRAY",
    10: "UINT64",
    11: "INT64",
    12: "FLOAT64",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the data section
    n_bytes: int


@dataclass(frozen=True)
class GGUFInfo:
    """What the header says. ``metadata`` holds scalars; arrays as their length (``len:<key>``)."""

    path: Path
    file_size: int
    kind: str  # "gguf", "pre-gguf", "not-gguf", "empty"
    magic: str
    version: int | None = None
    endianness: str = "little"
    tensor_count: int | None = None
    kv_count: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    tensors: tuple[TensorInfo, ...] = ()
    data_offset: int | None = None
    reader: str = ""  # "gguf" (the package's reader) or "header" (our parser)
    parse_error: str = ""

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def tensor_data_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def expected_size(self) -> int | None:
        if self.data_offset is None or not self.tensors:
            return None
        return self.data_offset + max(t.offset + t.n_bytes for t in self.tensors)


def _tensor_bytes(shape: tuple[int, ...], ggml_type: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    n = 1
    for d in shape:
        n *= d
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        return 0
    return n // block * size


class _Header:
    """A bounded little/big-endian reader over the file's header: every read is checked against
    the bytes the file has left and against ``MAX_HEADER_BYTES``; nothing recurses."""

    def __init__(self, fh: BinaryIO, endian: str, version: int, size: int) -> None:
        self.fh, self.e, self.v, self.size = fh, endian, version, size
        self.pos = fh.tell()
        self.elements = 0  # array elements so far
        self.types: dict[str, int] = {}  # key -> its value type (ARRAY for arrays)

    def _check(self, n: int) -> None:
        if n > self.size - self.pos:
            raise EOFError("file ends inside the header")
        if self.pos + n > MAX_HEADER_BYTES:
            raise ValueError(
                f"header larger than {MAX_HEADER_BYTES >> 20} MiB: more than a GGUF holds (refused)"
            )

    def _read(self, n: int) -> bytes:
        self._check(n)
        data = self.fh.read(n)
        if len(data) != n:
            raise EOFError("file ends inside the header")
        self.pos += n
        return data

    def _skip(self, n: int) -> None:
        self._check(n)
        self.fh.seek(n, 1)
        self.pos += n

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(self.e + fmt, self._read(struct.calcsize(fmt)))[0]

    def length(self) -> int:
        return int(self.scalar("I" if self.v == 1 else "Q"))

    def count(self, what: str, limit: int, min_bytes: int) -> int:
        """A count of header items that take at least ``min_bytes`` each."""
        n = self.length()
        if n > limit:
            raise ValueError(f"{n} {what}: more than a GGUF plausibly holds (limit {limit}; refused)")
        if n * min_bytes > self.size - self.pos:
            raise EOFError(f"header claims {n} {what}, the file cannot hold them (truncated or damaged)")
        return n

    def string(self, what: str = "string") -> str:
        n = self.length()
        if n > MAX_STRING:
            raise ValueError(f"{what} of {n} bytes: implausible (limit {MAX_STRING}; refused)")
        return self._read(n).decode("utf-8", "replace")

    def key_value(self) -> tuple[str, Any]:
        key = self.string("key")
        if key in self.types:
            raise ValueError(f"duplicate key {key!r} (llama.cpp refuses the file)")
        vtype = int(self.scalar("I"))
        self.types[key] = vtype
        if vtype in _SCALARS:
            return key, self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return key, self.string(f"value of {key!r}")
        if vtype == _ARRAY:
            return key, self._array(key)
        raise ValueError(f"key {key!r} has unknown GGUF value type {vtype}")

    def _array(self, key: str) -> Any:
        item_type = int(self.scalar("I"))
        if item_type == _ARRAY:
            raise ValueError(
                f"key {key!r} is an array of arrays: llama.cpp's GGUF reader refuses nested arrays"
            )
        if item_type not in _SCALARS and item_type != _STRING:
            raise ValueError(f"key {key!r}: array of unknown GGUF value type {item_type}")
        width = struct.calcsize(_SCALARS[item_type]) if item_type in _SCALARS else 8
        n = self.count(f"elements in the array {key!r}", MAX_ARRAY, width)
        self.elements += n
        if self.elements > MAX_ARRAY_TOTAL:
            raise ValueError(
                f"more than {MAX_ARRAY_TOTAL} array elements in the header: more than a GGUF holds (refused)"
            )
        if item_type == _STRING:  # never kept: skipped string by string
            for _ in range(n):
                size = self.length()
                if size > MAX_STRING:
                    raise ValueError(f"string of {size} bytes in {key!r}: implausible (refused)")
                self._skip(size)
            return _Len(n)
        fmt = _SCALARS[item_type]
        if n > KEEP_ARRAY:
            self._skip(width * n)
            return _Len(n)
        return list(struct.unpack(f"{self.e}{n}{fmt}", self._read(width * n)))

    def tensor(self, seen: set[str]) -> TensorInfo:
        name = self.string("tensor name")
        if name in seen:
            raise ValueError(f"duplicate tensor name {name!r} (llama.cpp refuses the file)")
        seen.add(name)
        n_dims = int(self.scalar("I"))
        if n_dims > MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions, at most {MAX_DIMS} are possible")
        dims = tuple(int(self.scalar("I" if self.v == 1 else "Q")) for _ in range(n_dims))
        if any(d >= 1 << 63 for d in dims):
            raise ValueError(f"tensor {name!r} has a negative dimension {dims}")
        ggml_type = int(self.scalar("I"))
        offset = int(self.scalar("Q"))
        return TensorInfo(name, dims, ggml_type, offset, _tensor_bytes(dims, ggml_type))


@dataclass(frozen=True)
class _Len:
    n: int


def _flatten(key: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, _Len):
        out[f"len:{key}"] = value.n
    elif isinstance(value, list):
        out[f"len:{key}"] = len(value)
        out[key] = tuple(value)
    else:
        out[key] = value


def _alignment(h: _Header, meta: Mapping[str, Any]) -> int:
    """general.alignment as llama.cpp takes it: a UINT32 power of two (default 32)."""
    key = "general.alignment"
    vtype = h.types.get(key)
    if vtype is None:
        return DEFAULT_ALIGNMENT
    if vtype == _ARRAY:
        raise ValueError(f"{key} is an array: llama.cpp requires one UINT32 value")
    if vtype != _UINT32:
        raise ValueError(f"{key} is {TYPE_NAMES.get(vtype, vtype)}: llama.cpp requires UINT32")
    align = int(meta[key])
    if align == 0 or align & (align - 1):
        raise ValueError(f"{key} {align} is not a power of 2 (llama.cpp refuses the file)")
    return align


def _parse_header(path: Path, fh: BinaryIO, size: int, magic: bytes) -> GGUFInfo:
    raw_version = fh.read(4)
    if len(raw_version) < 4:
        return GGUFInfo(
            path,
            size,
            "gguf",
            magic.decode("latin-1"),
            reader="header",
            parse_error="file ends inside the header",
        )
    endian = "<"
    version = struct.unpack("<I", raw_version)[0]
    if version & 0xFFFF == 0 and version:
        endian, version = ">", struct.unpack(">I", raw_version)[0]
    base: dict[str, Any] = dict(
        path=path,
        file_size=size,
        kind="gguf",
        magic="GGUF",
        version=version,
        endianness="big" if endian == ">" else "little",
        reader="header",
    )
    if version not in (1, 2, 3):
        return GGUFInfo(**base)
    h = _Header(fh, endian, version, size)
    meta: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    n_tensors = n_kv = None
    try:
        n_tensors = h.count("tensors", MAX_TENSORS, 24)
        n_kv = h.count("key/value pairs", MAX_KV, 13)
        for _ in range(n_kv):
            key, value = h.key_value()
            _flatten(key, value, meta)
        seen: set[str] = set()
        for _ in range(n_tensors):
            tensors.append(h.tensor(seen))
        align = _alignment(h, meta)
        data_offset = (h.pos + align - 1) // align * align
        return GGUFInfo(
            **base,
            tensor_count=n_tensors,
            kv_count=n_kv,
            metadata=meta,
            tensors=tuple(tensors),
            data_offset=data_offset,
        )
    except (EOFError, ValueError, struct.error) as exc:
        return GGUFInfo(
            **base,
            tensor_count=n_tensors,
            kv_count=n_kv,
            metadata=meta,
            tensors=tuple(tensors),
            parse_error=str(exc),
        )


def read_gguf(path: Path) -> GGUFInfo:
    """Read the header with the bounded parser; GGUFError when the file cannot be opened or is
    not a regular file.

    The gguf package's reader is not used on the file: it builds a numpy view per array
    element (375 MB and 11 s for a 262k-token vocabulary, gigabytes for a hostile header)."""
    with open_regular(path, GGUFError, "GGUF", "give the model file itself (a regular file)") as fh:
        size = os.fstat(fh.fileno()).st_size
        magic = fh.read(4)
        if not magic:
            return GGUFInfo(path, size, "empty", "")
        if magic in PRE_GGUF_MAGICS:
            return GGUFInfo(path, size, "pre-gguf", magic.decode("latin-1"))
        if magic != GGUF_MAGIC:
            return GGUFInfo(path, size, "not-gguf", magic.decode("latin-1", "replace"))
        return _parse_header(path, fh, size, magic)


def is_count(value: Any) -> TypeGuard[int]:
    """An integer metadata value (bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)
