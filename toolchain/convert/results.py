"""The convert stage's records (a verdict per model and type, the run) and their views."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.jsonio import to_jsonable
from ..errors import ReportError
from ..models.build import ModelSet
from ..records import CONVERT, read_data, write_report


@dataclass(frozen=True)
class ConvertResult:
    architecture: str  # the spec name
    hf_architecture: str
    type: str
    status: str  # pass | error | not-loaded | not-available | skipped
    gguf: Path | None = None
    gguf_architecture: str = ""
    tensor_count: int = 0
    matched_tensors: int = 0
    size_bytes: int = 0
    seconds: float = 0.0
    tokenizer: str = ""
    cached: bool = False
    cause: str = ""  # unknown-architecture | tokenizer-rejected | converter-crash | validation | load | model | quantize
    error: str = ""
    tail: tuple[str, ...] = ()
    types: dict[str, int] = field(default_factory=dict)
    loaded_by: str = ""  # the tree's program that loaded the GGUF ("" when it was not loaded)
    # whose failure a load refusal is: "upstream" when the tree's converter did not write a key the
    # tree's loader requires (evidence in `finding`), "" otherwise (ours: spec or shrink rule)
    whose: str = ""
    finding: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Conversion:
    tree: Path
    converter_env: str
    installed: dict[str, str]
    requirement_changes: tuple[str, ...]
    quantize_tool: str
    models: ModelSet
    results: tuple[ConvertResult, ...]
    seconds: float
    converter_startup_seconds: float

    def passed(self) -> dict[tuple[str, str], Path]:
        return {(r.architecture, r.type): r.gguf for r in self.results if r.status == "pass" and r.gguf}


def classify(error: str, tail: tuple[str, ...]) -> str:
    text = (error + "\n" + "\n".join(tail)).lower()
    if "is not supported" in text or "model architecture" in text and "not supported" in text:
        return "unknown-architecture"
    if "pre-tokenizer" in text or "tokenizer" in text or "vocab" in text:
        return "tokenizer-rejected"
    return "converter-crash"


def write_merged(path: Path, conversion: Conversion) -> Path:
    """Write ``conversion`` into the report at ``path`` without losing another run's results: pairs
    (architecture, type) and models of this run replace theirs, the others stay. A report of another
    tree (or none, or an unreadable one) is replaced, as a full run would."""
    data = to_jsonable(conversion)
    try:
        old = read_data(path, CONVERT)
    except ReportError:
        old = {}
    if old.get("tree") == data["tree"]:
        mine = {(r["architecture"], r["type"]) for r in data["results"]}
        names = {m["name"] for m in data["models"]["models"]}
        data["results"] = [
            r for r in old.get("results", []) if (r.get("architecture"), r.get("type")) not in mine
        ] + data["results"]
        data["models"]["models"] = [
            m for m in old.get("models", {}).get("models", []) if m.get("name") not in names
        ] + data["models"]["models"]
    return write_report(path, CONVERT.kind, data)


def results_table(conversion: Conversion) -> str:
    """Markdown: one row per architecture, one column per type (status, size, seconds)."""
    types = list(dict.fromkeys(r.type for r in conversion.results))
    rows = [
        "| architecture | gguf arch | tokenizer | " + " | ".join(types) + " |",
        "|---|---|---|" + "---|" * len(types),
    ]
    by_arch: dict[str, list[ConvertResult]] = {}
    for r in conversion.results:
        by_arch.setdefault(r.architecture, []).append(r)
    for arch, items in by_arch.items():
        cells = []
        for r in items:
            if r.status == "pass":
                cells.append(
                    f"pass {r.size_bytes / 1e6:.1f} MB {r.seconds:.1f}s{' (cached)' if r.cached else ''}"
                )
            else:
                cells.append(f"{r.status}: {r.cause}" + (f" ({r.whose})" if r.whose else ""))
        gguf_arch = next((r.gguf_architecture for r in items if r.gguf_architecture), "")
        rows.append(f"| {arch} | {gguf_arch} | {items[0].tokenizer} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
