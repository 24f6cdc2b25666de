"""The matrix's input: a list of (architecture, weight type, GGUF path).

Sources, in order:
1. ``convert.json`` of the convert stage (tiny HF checkpoints converted by the tree's
   ``convert_hf_to_gguf.py``): every successful conversion, read as the stage's record;
2. the tree's own ``test-llama-archs -a ARCH -o DIR`` (random-weight tiny models built in C++,
   f32), one architecture at a time, cached per build;
3. GGUF files given on the command line (``--model ARCH:TYPE:PATH``).

Missing weight types are made with the build's ``llama-quantize`` (f32/f16 source -> F16, Q8_0,
…) and cached. An input that cannot be made is returned as a skip with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...convert.results import Conversion, ConvertResult
from ...core.isolate import run_isolated
from ...core.tree import ARCHS
from ...records import CONVERT, read_record
from ..records import ModelInput
from .tools import Toolset

DEFAULT_TYPES = ("f16", "q8_0")
# A spread of the architectures people ship (dense and MoE, attention variants, SSM/RWKV hybrids).
DEFAULT_ARCHITECTURES = (
    "llama",
    "llama4",
    "qwen2",
    "qwen2moe",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "phi2",
    "phi3",
    "starcoder2",
    "falcon",
    "gpt2",
    "gptneox",
    "bloom",
    "mpt",
    "stablelm",
    "olmo",
    "olmo2",
    "olmoe",
    "command-r",
    "cohere2",
    "deepseek",
    "deepseek2",
    "granite",
    "granitemoe",
    "exaone",
    "internlm2",
    "minicpm",
    "glm4",
    "mamba",
    "mamba2",
    "rwkv6",
    "jamba",
    "baichuan",
    "orion",
    "nemotron",
    "smollm3",
    "lfm2",
    "falcon-h1",
    "ernie4_5",
    "hunyuan-dense",
    "arcee",
    "dots1",
    "seed_oss",
    "apertus",
    "gpt-oss",
    "mistral3",
    "starcoder",
)
QUANT_NAMES = {
    "f32": "F32",
    "f16": "F16",
    "bf16": "BF16",
    "q8_0": "Q8_0",
    "q4_0": "Q4_0",
    "q4_k": "Q4_K_M",
    "q5_k": "Q5_K_M",
    "q6_k": "Q6_K",
}


@dataclass(frozen=True)
class ModelSkip:
    label: str
    reason: str


def _converted(r: ConvertResult) -> ModelInput | None:
    """The model a result of convert.json made (None without a GGUF, a type or an architecture);
    several specs can map to one GGUF architecture (bert, distilbert -> bert): the spec is the variant."""
    arch = r.gguf_architecture or r.architecture
    if r.gguf is None or not arch or not r.type:
        return None
    variant = r.architecture if r.architecture and r.architecture != arch else ""
    return ModelInput(arch, r.type.lower(), r.gguf, CONVERT.name, variant)


def from_convert_report(path: Path) -> list[ModelInput]:
    """Successful conversions of ``convert.json`` whose GGUF is there."""
    return [
        m
        for r in read_record(path, CONVERT, Conversion).results
        if r.status == "pass"
        and (m := _converted(r)) is not None
        and m.path.suffix == ".gguf"
        and m.path.is_file()
    ]


@dataclass(frozen=True)
class BlockedInput:
    """A converted model the tree's loader refused (convert.json's ``load`` verdict): it becomes
    cells that say so, never a silent gap in the matrix."""

    model: ModelInput
    reason: str
    whose: str  # "upstream" (the tree's converter and loader disagree) or "spec" (our tiny model)
    evidence: tuple[str, ...] = ()


def blocked_from_convert_report(path: Path) -> list[BlockedInput]:
    """convert.json's results that converted and validated but that the tree's loader refused."""
    out: list[BlockedInput] = []
    for r in read_record(path, CONVERT, Conversion).results:
        model = _converted(r) if r.status == "error" and r.cause == "load" else None
        if model is None:
            continue
        whose = "upstream" if r.whose == "upstream" else "spec"
        if whose == "upstream":
            keys = r.finding.get("gguf_keys")
            written = ", ".join(sorted(keys if isinstance(keys, dict) else {})) or "none of that section"
            reason = (
                f"upstream: the tree's converter does not write {r.finding.get('missing_key')}, which the "
                f"tree's loader requires ({r.error}; the converted file has {written})"
            )
        else:
            reason = f"our tiny model: convert stage: {r.error}"
        out.append(BlockedInput(model, reason, whose, r.tail[-15:]))
    return out


def parse_model_arg(text: str) -> ModelInput:
    """``ARCH:TYPE:PATH`` (PATH may contain colons)."""
    arch, wtype, path = text.split(":", 2)
    return ModelInput(arch, wtype.lower(), Path(path).expanduser().resolve(), "given")


def archs_models(
    tools: Toolset,
    architectures: Sequence[str],
    dest: Path,
    timeout: float = 120.0,
    variants: Sequence[str] = ("dense",),
) -> tuple[list[ModelInput], list[ModelSkip]]:
    """f32 tiny models from ``test-llama-archs -a ARCH -o DIR`` (cached in ``dest``)."""
    if tools.archs is None:
        return [], [ModelSkip(a, "no test-llama-archs in this build: no model source") for a in architectures]
    found: list[ModelInput] = []
    skips: list[ModelSkip] = []
    for arch in architectures:
        adir = dest / re.sub(r"[^\w.-]", "_", arch)
        files = sorted(adir.glob("*.gguf")) if (adir / ".done").is_file() else []
        if not files:
            adir.mkdir(parents=True, exist_ok=True)
            for f in adir.glob("*.gguf"):
                f.unlink()
            out = run_isolated(
                [str(tools.archs), "-a", arch, "-o", str(adir), "-s", "1"],
                log_path=adir / "save.log",
                timeout=timeout,
            )
            files = sorted(adir.glob("*.gguf"))
            if out.kind != "ok":
                skips.append(ModelSkip(arch, f"test-llama-archs -o: {out.describe(timeout)}"))
                continue
            (adir / ".done").write_text("ok\n")
        by_variant: dict[str, Path] = {}
        for f in files:
            stem = f.name[: -len(".gguf")]
            name, _, variant = stem.rpartition("-")
            if name == arch:
                by_variant[variant] = f
        picked = [v for v in variants if v in by_variant]
        if not picked and by_variant and "dense" in variants:
            picked = sorted(by_variant)[:1]  # MoE-only architectures
        if not picked:
            skips.append(
                ModelSkip(
                    arch,
                    "test-llama-archs does not build this architecture (unknown or unsupported "
                    "by its saver in this tree)",
                )
            )
            continue
        for v in picked:
            found.append(ModelInput(arch, "f32", by_variant[v], ARCHS[0], variant="" if v == "dense" else v))
    return found, skips


def with_types(
    tools: Toolset, models: Iterable[ModelInput], types: Sequence[str], dest: Path, timeout: float = 120.0
) -> tuple[list[ModelInput], list[ModelSkip]]:
    """One input per (model, wanted type): the model itself when its type matches, else a quantized copy."""
    out: list[ModelInput] = []
    skips: list[ModelSkip] = []
    by_key: dict[tuple[str, str], list[ModelInput]] = {}
    for m in models:
        by_key.setdefault((m.architecture, m.variant), []).append(m)
    for (arch, variant), group in by_key.items():
        have = {m.weight_type: m for m in group}
        source = have.get("f32") or have.get("bf16") or have.get("f16") or group[0]
        for wtype in types:
            if wtype in have:
                out.append(have[wtype])
                continue
            label = f"{arch}{'-' + variant if variant else ''}-{wtype}"
            if tools.quantize is None:
                skips.append(ModelSkip(label, "no llama-quantize in this build to make the type"))
                continue
            qname = QUANT_NAMES.get(wtype, wtype.upper())
            target = dest / f"{source.path.stem}-{wtype}.gguf"
            if not target.is_file() or target.stat().st_mtime < source.path.stat().st_mtime:
                dest.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".tmp")
                result = run_isolated(
                    [str(tools.quantize), "--allow-requantize", str(source.path), str(tmp), qname],
                    log_path=dest / f"{target.stem}.log",
                    timeout=timeout,
                )
                if result.kind != "ok" or not tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    skips.append(ModelSkip(label, f"llama-quantize {qname}: {result.describe(timeout)}"))
                    continue
                tmp.replace(target)
            out.append(ModelInput(arch, wtype, target, f"{source.source}+llama-quantize", variant))
    return out, skips
