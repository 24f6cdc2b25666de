"""GGUF check: is the file a GGUF llama.cpp can read, complete, of an architecture the build knows?

The ``gguf`` package's reader is used where it works; files it refuses (bad magic, GGUF v1, a
version from the future, truncated data) are read with a small header parser here, which only
ever reads the header, the key/value pairs and the tensor infos (bounded; never the data).
Pre-GGUF files (ggml / ggmf / ggjt / ggla magics) are named as such.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .catalog import BY_ID
from .findings import Evidence, Finding, ObservedBy

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
# Bounds for the header parser: a damaged file must not make it allocate gigabytes.
MAX_STRING = 1 << 24
MAX_COUNT = 1 << 24

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
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class GGUFCheck:
    info: GGUFInfo
    findings: tuple[Finding, ...]


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
    """A bounded little/big-endian reader over the file's header."""

    def __init__(self, fh: BinaryIO, endian: str, version: int) -> None:
        self.fh, self.e, self.v = fh, endian, version

    def _read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise EOFError("file ends inside the header")
        return data

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(self.e + fmt, self._read(size))[0]

    def count(self) -> int:
        n = int(self.scalar("I" if self.v == 1 else "Q"))
        if n > MAX_COUNT:
            raise ValueError(f"count {n} is implausible (damaged header)")
        return n

    def string(self) -> str:
        n = int(self.scalar("I" if self.v == 1 else "Q"))
        if n > MAX_STRING:
            raise ValueError(f"string length {n} is implausible (damaged header)")
        return self._read(n).decode("utf-8", "replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = int(self.scalar("I"))
            n = self.count()
            if item_type in _SCALARS:
                fmt = _SCALARS[item_type]
                raw = self._read(struct.calcsize(fmt) * n)
                return list(struct.unpack(f"{self.e}{n}{fmt}", raw)) if n <= 4096 else _Len(n)
            items = [self.value(item_type) for _ in range(n)]
            return items if n <= 4096 else _Len(n)
        raise ValueError(f"unknown GGUF value type {vtype}")


@dataclass(frozen=True)
class _Len:
    n: int


def _flatten(key: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, _Len):
        out[f"len:{key}"] = value.n
    elif isinstance(value, list):
        out[f"len:{key}"] = len(value)
        if len(value) <= 4096 and all(isinstance(v, int | float | bool) for v in value):
            out[key] = tuple(value)
    else:
        out[key] = value


def _parse_header(path: Path, fh: BinaryIO, size: int, magic: bytes) -> GGUFInfo:
    raw_version = fh.read(4)
    if len(raw_version) < 4:
        return GGUFInfo(
            path, size, "gguf", magic.decode("latin-1"), parse_error="file ends inside the header"
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
    h = _Header(fh, endian, version)
    meta: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    n_tensors = n_kv = None
    try:
        n_tensors, n_kv = h.count(), h.count()
        for _ in range(n_kv):
            key = h.string()
            _flatten(key, h.value(int(h.scalar("I"))), meta)
        for _ in range(n_tensors):
            name = h.string()
            n_dims = int(h.scalar("I"))
            if n_dims > 8:
                raise ValueError(f"tensor {name!r} has {n_dims} dimensions (damaged header)")
            dims = tuple(int(h.scalar("I" if version == 1 else "Q")) for _ in range(n_dims))
            ggml_type = int(h.scalar("I"))
            offset = int(h.scalar("Q"))
            tensors.append(TensorInfo(name, dims, ggml_type, offset, _tensor_bytes(dims, ggml_type)))
        align = int(meta.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
        pos = fh.tell()
        data_offset = (pos + align - 1) // align * align
        return GGUFInfo(
            **base,
            tensor_count=n_tensors,
            kv_count=n_kv,
            metadata=meta,
            tensors=tuple(tensors),
            data_offset=data_offset,
        )
    except (EOFError, ValueError, struct.error, UnicodeDecodeError) as exc:
        return GGUFInfo(
            **base,
            tensor_count=n_tensors,
            kv_count=n_kv,
            metadata=meta,
            tensors=tuple(tensors),
            parse_error=str(exc),
        )


def _read_with_gguf(path: Path, size: int) -> GGUFInfo | None:
    """The gguf package's reader; None when it cannot read the file (then the header parser does)."""
    try:
        from gguf import GGUFReader, GGUFValueType

        reader = GGUFReader(path)
        meta: dict[str, Any] = {}
        for key, fld in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            if fld.types and fld.types[0] == GGUFValueType.ARRAY:
                meta[f"len:{key}"] = len(fld.data)
                if len(fld.data) <= 4096 and len(fld.types) > 1 and fld.types[1] != GGUFValueType.STRING:
                    meta[key] = tuple(fld.contents())
            else:
                meta[key] = fld.contents()
        tensors = tuple(
            TensorInfo(
                t.name,
                tuple(int(d) for d in t.shape),
                int(t.tensor_type),
                int(t.data_offset) - int(reader.data_offset),
                int(t.n_bytes),
            )
            for t in reader.tensors
        )
        version = int(reader.fields["GGUF.version"].parts[-1][0])
        return GGUFInfo(
            path=path,
            file_size=size,
            kind="gguf",
            magic="GGUF",
            version=version,
            endianness="little" if reader.byte_order == "I" else "big",
            tensor_count=len(tensors),
            kv_count=len(meta),
            metadata=meta,
            tensors=tensors,
            data_offset=int(reader.data_offset),
            reader="gguf",
        )
    except Exception:  # any refusal of the reader means: parse the header ourselves
        return None


def read_gguf(path: Path) -> GGUFInfo:
    """Read what can be read. OSError (missing, unreadable) propagates to the caller."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
        if not magic:
            return GGUFInfo(path, size, "empty", "")
        if magic in PRE_GGUF_MAGICS:
            return GGUFInfo(path, size, "pre-gguf", magic.decode("latin-1"))
        if magic != GGUF_MAGIC:
            return GGUFInfo(path, size, "not-gguf", magic.decode("latin-1", "replace"))
        header = _parse_header(path, fh, size, magic)
    if header.version in SUPPORTED_VERSIONS and not header.parse_error:
        expected = header.expected_size
        if expected is None or expected <= size:
            return _read_with_gguf(path, size) or header
    return header


def known_architectures(tree: Path) -> frozenset[str]:
    """Architecture names the tree's llama.cpp knows (src/llama-arch.cpp), empty if not found."""
    arch = tree / "src" / "llama-arch.cpp"
    if not arch.is_file():
        return frozenset()
    text = arch.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\{\s*LLM_ARCH_\w+\s*,\s*"([^"]+)"\s*\}', text))


def _finding(
    class_id: str, severity: str, confidence: float, summary: str, observed_by: ObservedBy, *evidence: str
) -> Finding:
    cls = BY_ID[class_id]
    return Finding(
        class_id=class_id,
        title=cls.title,
        severity=severity,  # type: ignore[arg-type]
        confidence=confidence,
        summary=summary,
        fix=cls.fix,
        observed_by=observed_by,
        evidence=tuple(Evidence(text=e) for e in evidence),
        order=cls.order,
        matches=len(evidence),
    )


def check_gguf(
    path: Path, *, known_archs: frozenset[str] = frozenset(), observed_by: ObservedBy = "gguf"
) -> GGUFCheck:
    info = read_gguf(path)
    out: list[Finding] = []
    where = f"{path} ({info.file_size} bytes)"

    def bad(summary: str, *ev: str, conf: float = 0.97) -> None:
        out.append(_finding("gguf-format", "error", conf, summary, observed_by, *ev))

    if info.kind == "empty":
        bad("the model file is empty", where)
    elif info.kind == "pre-gguf":
        bad(f"pre-GGUF file: magic {info.magic!r} = {PRE_GGUF_MAGICS[info.magic.encode('latin-1')]}", where)
    elif info.kind == "not-gguf":
        bad(f"not a GGUF file: magic {info.magic!r}, expected 'GGUF'", where)
    elif info.version == 1:
        bad("GGUF v1: no longer supported by llama.cpp", where)
    elif info.version not in SUPPORTED_VERSIONS:
        bad(f"GGUF version {info.version}: llama.cpp reads versions {SUPPORTED_VERSIONS}", where)
    elif info.parse_error:
        bad(f"damaged or truncated header: {info.parse_error}", where)
    else:
        expected = info.expected_size
        if expected is not None and expected > info.file_size:
            missing = expected - info.file_size
            bad(
                f"truncated: tensor data needs {expected} bytes, the file has {info.file_size} "
                f"({missing} missing: an incomplete download?)",
                where,
            )
        if info.tensor_count is not None and info.tensor_count != len(info.tensors):
            bad(f"header says {info.tensor_count} tensors, {len(info.tensors)} tensor infos read", where)
        out.extend(_consistency(info, known_archs, observed_by))
    return GGUFCheck(info=info, findings=tuple(out))


def _consistency(info: GGUFInfo, known_archs: frozenset[str], observed_by: ObservedBy) -> list[Finding]:
    out: list[Finding] = []
    arch = info.architecture
    if not arch:
        out.append(
            _finding("gguf-format", "error", 0.8, "no general.architecture key", observed_by, str(info.path))
        )
        return out
    if known_archs and arch not in known_archs:
        out.append(
            _finding(
                "architecture-too-new",
                "error",
                0.9,
                f"architecture {arch!r} is unknown to this llama.cpp tree ({len(known_archs)} known)",
                observed_by,
                f"general.architecture = {arch}",
            )
        )
    n_layer = info.metadata.get(f"{arch}.block_count")
    if isinstance(n_layer, int) and info.tensors:
        layers = {int(m.group(1)) for t in info.tensors if (m := re.match(r"blk\.(\d+)\.", t.name))}
        if layers:
            missing = sorted(set(range(n_layer)) - layers)
            extra = sorted(i for i in layers if i >= n_layer)
            if missing or extra:
                out.append(
                    _finding(
                        "gguf-format",
                        "error",
                        0.8,
                        f"tensors do not match {arch}.block_count = {n_layer}: "
                        f"layers without tensors {missing[:8]}, layers beyond the count {extra[:8]}",
                        observed_by,
                        f"{len(info.tensors)} tensors",
                    )
                )
    return out
