"""The convert stage: tiny models → GGUFs of each type → validated → ``convert.json``.

``convert_architectures`` is the public entry point (the coverage stage calls it): it makes or
reuses the tiny checkpoints, converts every (architecture, type) the converter can write in one
worker process, quantizes q4_0/q4_K with the build's ``llama-quantize`` when there is one, and
validates every GGUF. A failure is that pair's verdict (with its cause); the run goes on.
GGUFs live in ``<work>/models/<name>-<hash12>/<name>-<type>.gguf`` and are reused while the
model, the tree and the converter environment are unchanged.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import Settings
from ..errors import ConvertError
from ..log import LOG
from ..models.build import ModelSet, TinyModel, check_model_dir, make_models
from ..models.shrink import Shrink
from ..models.spec import ArchSpec
from ..proc import stream
from ..records import atomic_write_text, sha256_file, to_jsonable, write_report
from .env import ConverterEnv, ensure_env
from .validate import validate_gguf

WORKER = Path(__file__).with_name("worker.py")
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZE_TYPES = {"q4_0": "Q4_0", "q4_K": "Q4_K_M"}
ALL_TYPES = CONVERTER_TYPES + tuple(QUANTIZE_TYPES)
DEFAULT_TYPES = ("f16", "q8_0")


@dataclass(frozen=True)
class ConvertResult:
    architecture: str  # the spec name
    hf_architecture: str
    type: str
    status: str  # pass | error | not-available | skipped
    gguf: Path | None = None
    gguf_architecture: str = ""
    tensor_count: int = 0
    matched_tensors: int = 0
    size_bytes: int = 0
    seconds: float = 0.0
    tokenizer: str = ""
    cached: bool = False
    cause: str = (
        ""  # unknown-architecture | tokenizer-rejected | converter-crash | validation | model | quantize
    )
    error: str = ""
    tail: tuple[str, ...] = ()
    types: dict[str, int] = field(default_factory=dict)


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


def parse_types(text: str) -> tuple[str, ...]:
    from ..errors import UsageError

    types = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in types if t not in ALL_TYPES]
    if bad or not types:
        raise UsageError(
            f"unknown output type(s): {', '.join(bad) or '(none)'}", f"known: {', '.join(ALL_TYPES)}"
        )
    return types


def find_quantize(settings: Settings) -> Path | None:
    found = sorted(
        settings.build_root.glob("*/bin/llama-quantize"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    return found[0] if found else None


def classify(error: str, tail: tuple[str, ...]) -> str:
    text = (error + "\n" + "\n".join(tail)).lower()
    if "is not supported" in text or "model architecture" in text and "not supported" in text:
        return "unknown-architecture"
    if "pre-tokenizer" in text or "tokenizer" in text or "vocab" in text:
        return "tokenizer-rejected"
    return "converter-crash"


def _stamp(model: TinyModel, env: ConverterEnv, outtype: str) -> str:
    return f"{model.content_hash}:{model.safetensors_sha256}:{env.key}:{outtype}"


def gguf_path(settings: Settings, model: TinyModel, outtype: str) -> Path:
    root = (settings.work_dir / "models").resolve()
    path = (root / f"{model.name}-{model.content_hash[:12]}" / f"{model.name}-{outtype}.gguf").resolve()
    if not path.is_relative_to(root):
        raise ConvertError(f"{path} is outside {root}")
    return path


def _validated(model: TinyModel, path: Path, outtype: str, seconds: float, cached: bool) -> ConvertResult:
    """Validate with the gguf package once per file content: the verdict is kept beside the GGUF
    with the file's sha256 and reused while the file is byte-identical (a warm run re-hashes,
    ~1 GB/s, instead of re-parsing every vocabulary: ~2.5 s per GPT-2-vocab file)."""
    record = path.with_name(path.name + ".check.json")
    digest = sha256_file(path) if path.is_file() else ""
    if cached and digest and record.is_file():
        try:
            kept = json.loads(record.read_text())
        except ValueError:
            kept = {}
        if kept.get("sha256") == digest and kept.get("source") == model.content_hash:
            fields = {k: v for k, v in kept["result"].items() if k not in ("gguf", "tail")}
            return replace(ConvertResult(**fields), gguf=path, seconds=seconds, cached=True)
    result = _check(model, path, outtype, seconds, cached)
    if digest and result.status == "pass":
        data = {k: v for k, v in to_jsonable(result).items() if k not in ("gguf", "tail")}
        atomic_write_text(
            record, json.dumps({"sha256": digest, "source": model.content_hash, "result": data})
        )
    return result


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


def convert_architectures(
    specs: list[ArchSpec],
    types: tuple[str, ...],
    settings: Settings,
    *,
    tree: Path | None = None,
    seed: int = 0,
    shrinks: dict[str, tuple[Shrink, ...]] | None = None,
    write: bool = True,
    timeout: float = 3600.0,
) -> Conversion:
    """Validated GGUFs for ``specs`` × ``types``; every pair gets a verdict in the record."""
    start = time.monotonic()
    tree = (tree or settings.src_dir).resolve()
    if not (tree / "convert_hf_to_gguf.py").is_file():
        raise ConvertError(
            f"{tree} has no convert_hf_to_gguf.py", "run `llama-toolchain fetch` first (or pass the tree)"
        )
    env = ensure_env(tree, settings)
    models = make_models(specs, settings, env.python, tree, seed=seed, shrinks=shrinks)
    results: dict[tuple[str, str], ConvertResult] = {}
    jobs: list[dict[str, str]] = []
    pending: dict[str, tuple[TinyModel, str, Path]] = {}
    for model in models.models:
        for outtype in types:
            if model.status != "ok":
                results[(model.name, outtype)] = ConvertResult(
                    model.name,
                    model.architecture,
                    outtype,
                    "error",
                    cause="model",
                    error=model.error,
                    tokenizer=model.tokenizer,
                )
                continue
            if outtype not in CONVERTER_TYPES:
                continue
            path = gguf_path(settings, model, outtype)
            stamp = path.with_name(path.name + ".stamp")
            if path.is_file() and stamp.is_file() and stamp.read_text() == _stamp(model, env, outtype):
                results[(model.name, outtype)] = _validated(model, path, outtype, 0.0, cached=True)
                continue
            check_model_dir(model.path)
            job_id = f"{model.name}:{outtype}"
            jobs.append(
                {"id": job_id, "model_dir": str(model.path), "outtype": outtype, "outfile": str(path)}
            )
            pending[job_id] = (model, outtype, path)
    startup = 0.0
    if jobs:
        LOG.info(f"converting {len(jobs)} model/type pair(s) with {tree / 'convert_hf_to_gguf.py'}")
        lines: list[str] = []
        log_path = settings.work_dir / "models" / "toolchain-convert.log"
        with tempfile.TemporaryDirectory(prefix="toolchain-convert-") as tmp:
            job_file = Path(tmp) / "jobs.json"
            job_file.write_text(json.dumps(jobs))
            with LOG.progress("converting", total=len(jobs)) as bar:
                finished = 0

                def on_line(line: str) -> None:
                    nonlocal finished
                    if line.startswith("@@result "):
                        lines.append(line)
                        job = json.loads(line[len("@@result ") :]).get("job")
                        if job:  # (the worker's start-up record has no job)
                            finished += 1
                            bar.update(finished, detail=job)

                done = stream(
                    [str(env.python), str(WORKER), str(tree), str(job_file)],
                    log_path=log_path,
                    cwd=Path(tmp),
                    on_line=on_line,
                    timeout=timeout,
                )
        LOG.info(f"validating {len(pending)} GGUF(s) against their checkpoints")
        for line in lines:
            data = json.loads(line[len("@@result ") :])
            if "job" not in data:
                startup = float(data.get("startup_seconds", 0.0))
                continue
            model, outtype, path = pending.pop(data["job"])
            if data["status"] == "ok":
                result = _validated(model, path, outtype, float(data["seconds"]), cached=False)
                if result.status == "pass":
                    atomic_write_text(path.with_name(path.name + ".stamp"), _stamp(model, env, outtype))
            else:
                tail = tuple(data.get("tail", ()))
                result = ConvertResult(
                    model.name,
                    model.architecture,
                    outtype,
                    "error",
                    seconds=float(data["seconds"]),
                    tokenizer=model.tokenizer,
                    cause=classify(data["error"], tail),
                    error=data["error"],
                    tail=tail,
                )
            results[(model.name, outtype)] = result
        for model, outtype, _path in pending.values():
            results[(model.name, outtype)] = ConvertResult(
                model.name,
                model.architecture,
                outtype,
                "error",
                tokenizer=model.tokenizer,
                cause="converter-crash",
                error=f"the converter process stopped before this job (exit {done.returncode}{', timed out' if done.timed_out else ''})",
                tail=done.tail[-10:],
            )
    quantize = find_quantize(settings)
    for model in models.models:
        for outtype in types:
            if outtype not in QUANTIZE_TYPES or model.status != "ok":
                continue
            results[(model.name, outtype)] = _quantize(settings, model, outtype, quantize, results, env)
    ordered = tuple(results[(m.name, t)] for m in models.models for t in types)
    conversion = Conversion(
        tree=tree,
        converter_env=str(env.venv),
        installed=env.installed,
        requirement_changes=tuple(
            f"{r.original or '(added)'} -> {r.line or '(not installed)'}: {r.why}"
            for r in env.requirements
            if r.why
        ),
        quantize_tool=str(quantize) if quantize else "",
        models=models,
        results=ordered,
        seconds=time.monotonic() - start,
        converter_startup_seconds=startup,
    )
    if write:
        write_report(settings.reports_dir / "convert.json", "convert", conversion)
    return conversion


def _quantize(
    settings: Settings,
    model: TinyModel,
    outtype: str,
    tool: Path | None,
    results: dict[tuple[str, str], ConvertResult],
    env: ConverterEnv,
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
    if not (source.is_file() and (base is None or base.status == "pass")):
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
    if path.is_file() and stamp.is_file() and stamp.read_text() == want:
        return _validated(model, path, outtype, 0.0, cached=True)
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
    result = _validated(model, path, outtype, done.seconds, cached=False)
    if result.status == "pass":
        atomic_write_text(stamp, want)
    return result


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
                cells.append(f"{r.status}: {r.cause}")
        gguf_arch = next((r.gguf_architecture for r in items if r.gguf_architecture), "")
        rows.append(f"| {arch} | {gguf_arch} | {items[0].tokenizer} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
