"""q4_0 / q4_K from the f16 GGUF with the build's own llama-quantize."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..core.hashing import sha256_file
from ..core.jsonio import atomic_write_text
from ..core.proc import stream
from ..models.build import TinyModel
from . import gguf_cache
from .checked import validated
from .env import ConverterEnv
from .load import Loader
from .locate import gguf_path
from .results import ConvertResult

QUANTIZE_TYPES = {"q4_0": "Q4_0", "q4_K": "Q4_K_M"}


def quantize_gguf(
    settings: Settings,
    model: TinyModel,
    outtype: str,
    tool: Path | None,
    results: dict[tuple[str, str], ConvertResult],
    env: ConverterEnv,
    loader: Loader | None = None,
) -> ConvertResult:
    if tool is None:
        return ConvertResult(
            model.name,
            model.architecture,
            outtype,
            "not-available",
            tokenizer=model.tokenizer,
            cause="quantize",
            error="not available: no llama-quantize in this build (build with --targets build,coverage)",
        )
    source = gguf_path(settings, model, "f16")
    base = results.get((model.name, "f16"))
    if not (source.is_file() and (base is None or base.status == "pass" or base.cause == "load")):
        return ConvertResult(
            model.name,
            model.architecture,
            outtype,
            "error",
            tokenizer=model.tokenizer,
            cause="quantize",
            error="no valid f16 GGUF to quantize from",
        )
    path = gguf_path(settings, model, outtype)
    stamp = path.with_name(path.name + ".stamp")
    want = f"{sha256_file(source)}:{sha256_file(tool)}:{outtype}"
    fresh = path.is_file() and stamp.is_file() and stamp.read_text() == want
    if not fresh and gguf_cache.restore(settings, gguf_cache.entry_key(want), path):
        atomic_write_text(stamp, want)
        fresh = True
    if fresh:
        return validated(model, path, outtype, 0.0, cached=True, loader=loader)
    gguf_cache.discard(path)
    done = stream(
        [str(tool), str(source), str(path), QUANTIZE_TYPES[outtype]],
        log_path=settings.work_dir / "models" / "toolchain-quantize.log",
        timeout=600,
    )
    if done.returncode != 0:
        return ConvertResult(
            model.name,
            model.architecture,
            outtype,
            "error",
            seconds=done.seconds,
            tokenizer=model.tokenizer,
            cause="quantize",
            error=f"llama-quantize exited {done.returncode}",
            tail=done.tail[-10:],
        )
    result = validated(model, path, outtype, done.seconds, cached=False, loader=loader)
    if result.status == "pass" or result.cause == "load":
        atomic_write_text(stamp, want)
        gguf_cache.store(settings, gguf_cache.entry_key(want), path)
    return result
