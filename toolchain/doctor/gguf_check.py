"""GGUF check: is the file a GGUF llama.cpp can read, complete, of an architecture the build knows?

The header is read by :mod:`toolchain.doctor.gguf_reader` (bounded, never the data); this module
turns what it read into ``gguf-format`` / ``architecture-too-new`` findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .catalog import BY_ID
from .findings import Evidence, Finding, ObservedBy
from .gguf_reader import (
    LLAMA_MAX_LAYERS,
    PER_LAYER_KEYS,
    PRE_GGUF_MAGICS,
    SUPPORTED_VERSIONS,
    GGUFInfo,
    is_count,
    read_gguf,
)

__all__ = [
    "LLAMA_MAX_LAYERS",
    "GGUFCheck",
    "GGUFInfo",
    "check_gguf",
    "is_count",
    "known_architectures",
    "read_gguf",
]


@dataclass(frozen=True)
class GGUFCheck:
    info: GGUFInfo
    findings: tuple[Finding, ...]


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
    return BY_ID[class_id].finding(
        severity=severity,  # type: ignore[arg-type]
        confidence=confidence,
        summary=summary,
        observed_by=observed_by,
        evidence=tuple(Evidence(text=e) for e in evidence),
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
        bad(f"header refused (damaged, truncated or implausible): {info.parse_error}", where)
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
    out.extend(_layers(info, arch, observed_by))
    return out


def _layers(info: GGUFInfo, arch: str, observed_by: ObservedBy) -> list[Finding]:
    """block_count against what the file holds (so per-layer work is bounded by the file), the
    per-layer arrays against block_count, and the layers' tensors against both."""
    meta = info.metadata
    key = f"{arch}.block_count"
    n_layer = meta.get(key)
    if n_layer is None and f"len:{key}" not in meta:
        return []

    def bad(summary: str, conf: float = 0.9) -> list[Finding]:
        return [_finding("gguf-format", "error", conf, summary, observed_by, f"{len(info.tensors)} tensors")]

    if not is_count(n_layer):
        shown = "an array" if f"len:{key}" in meta else f"{n_layer!r}"
        return bad(f"{key} is {shown}, not a layer count (llama.cpp refuses the model)")
    if n_layer <= 0 or n_layer > LLAMA_MAX_LAYERS:
        return bad(f"{key} = {n_layer}: llama.cpp reads 1 to {LLAMA_MAX_LAYERS} layers")
    if n_layer > len(info.tensors):
        return bad(
            f"{key} = {n_layer}: more layers than the file has tensors ({len(info.tensors)}): "
            "a damaged or forged header"
        )
    out: list[Finding] = []
    for suffix in PER_LAYER_KEYS:
        name = f"{arch}.{suffix}"
        length = meta.get(f"len:{name}")
        if length is not None and length != n_layer:
            out += bad(f"key {name} has wrong array length; expected {n_layer}, got {length}")
    layers = {int(m.group(1)) for t in info.tensors if (m := re.match(r"blk\.(\d+)\.", t.name))}
    if layers:
        missing = sorted(set(range(n_layer)) - layers)
        extra = sorted(i for i in layers if i >= n_layer)
        if missing or extra:
            out += bad(
                f"tensors do not match {key} = {n_layer}: "
                f"layers without tensors {missing[:8]}, layers beyond the count {extra[:8]}",
                0.8,
            )
    return out
