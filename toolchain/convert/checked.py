"""Validation of a written GGUF: the gguf package's checks, then the tree's own loader; the
verdict kept beside the file and reused while the file and the loader are unchanged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..core.hashing import sha256_file
from ..core.jsonio import atomic_write_text, to_jsonable
from ..models.build import TinyModel
from .load import Loader, load_gguf, missing_key_finding
from .results import ConvertResult
from .validate import validate_gguf


def validated(
    model: TinyModel, path: Path, outtype: str, seconds: float, cached: bool, loader: Loader | None = None
) -> ConvertResult:
    """Validate with the gguf package, then load with the tree's loader, once per file content and
    loader: the verdict is kept beside the GGUF with the file's sha256 and the loader's identity
    and reused while both are unchanged (a warm run re-hashes, ~1 GB/s, instead of re-parsing every
    vocabulary: ~2.5 s per GPT-2-vocab file, and instead of loading the model again)."""
    digest = sha256_file(path) if path.is_file() else ""
    loader_key = loader.key if loader else ""
    if cached:
        verdict = kept_verdict(model, path, seconds, loader, digest)
        if verdict is not None:
            return verdict
    result = _check(model, path, outtype, seconds, cached)
    if result.status == "pass":
        result = _load(result, path, loader)
    if digest and (result.status == "pass" or result.cause == "load"):
        data = {k: v for k, v in to_jsonable(result).items() if k != "gguf"}
        atomic_write_text(
            _record(path),
            json.dumps(
                {"sha256": digest, "source": model.content_hash, "loader": loader_key, "result": data}
            ),
        )
    return result


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".check.json")


def kept_verdict(
    model: TinyModel, path: Path, seconds: float, loader: Loader | None, digest: str | None = None
) -> ConvertResult | None:
    """The verdict kept beside ``path`` while the file, its source and the loader are the ones it
    was made for; None when there is none to reuse (the file must be validated)."""
    record = _record(path)
    if digest is None:
        digest = sha256_file(path) if path.is_file() else ""
    if not digest or not record.is_file():
        return None
    try:
        kept = json.loads(record.read_text())
    except ValueError:
        return None
    if not (
        isinstance(kept, dict)
        and kept.get("sha256") == digest
        and kept.get("source") == model.content_hash
        and kept.get("loader") == (loader.key if loader else "")
        and isinstance(kept.get("result"), dict)
    ):
        return None
    fields = {k: v for k, v in kept["result"].items() if k not in ("gguf", "tail")}
    fields["tail"] = tuple(kept["result"].get("tail", ()))
    # the record may come from the GGUF cache, made for another spec of the same content
    # (a shrunk config equal to a built-in spec): the verdict is the file's, the names ours
    fields["architecture"], fields["hf_architecture"] = model.name, model.architecture
    return replace(ConvertResult(**fields), gguf=path, seconds=seconds, cached=True)


def _load(result: ConvertResult, path: Path, loader: Loader | None) -> ConvertResult:
    """A validated GGUF passes only when the tree's own loader accepts it."""
    if loader is None:
        return replace(
            result,
            status="not-loaded",
            cause="load",
            error="valid for the gguf package, but not loaded: no llama.cpp build with a loader "
            "(test-export-graph-ops or llama-completion) to try it; run `llama-toolchain build` first",
        )
    done = load_gguf(loader, path, path.with_name(path.name + ".load.log"))
    if done.ok:
        return replace(result, loaded_by=done.tool)
    finding = missing_key_finding(done, path)
    return replace(
        result,
        status="error",
        cause="load",
        error=f"{done.tool} refused it: {done.message}",
        tail=done.tail,
        whose="upstream" if finding else "",
        finding=finding or {},
    )


def _check(model: TinyModel, path: Path, outtype: str, seconds: float, cached: bool) -> ConvertResult:
    check = validate_gguf(path, model.path, model.gguf_arch, outtype)
    return ConvertResult(
        model.name,
        model.architecture,
        outtype,
        "pass" if check.ok else "error",
        path,
        gguf_architecture=check.architecture,
        tensor_count=check.tensor_count,
        matched_tensors=check.matched,
        size_bytes=path.stat().st_size if path.is_file() else 0,
        seconds=seconds,
        tokenizer=model.tokenizer,
        cached=cached,
        cause="" if check.ok else "validation",
        error="; ".join(check.problems[:6]),
        types=check.types,
    )
