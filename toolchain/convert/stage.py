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
from pathlib import Path

from ..config import Settings
from ..errors import ConvertError
from ..log import LOG
from ..models.build import TinyModel, check_model_dir, make_models
from ..models.shrink import Shrink
from ..models.spec import ArchSpec
from ..proc import stream
from ..records import CONVERT, atomic_write_text, write_report
from ..tree import CONVERT_SCRIPT
from . import gguf_cache
from .checked import validated
from .env import ConverterEnv, ensure_env
from .load import find_loader
from .locate import build_bins, find_quantize, gguf_path
from .quantize import QUANTIZE_TYPES, quantize_gguf
from .results import Conversion, ConvertResult, classify, write_merged

WORKER = Path(__file__).with_name("worker.py")
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
ALL_TYPES = CONVERTER_TYPES + tuple(QUANTIZE_TYPES)
DEFAULT_TYPES = ("f16", "q8_0")


def parse_types(text: str) -> tuple[str, ...]:
    from ..errors import UsageError

    types = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in types if t not in ALL_TYPES]
    if bad or not types:
        raise UsageError(
            f"unknown output type(s): {', '.join(bad) or '(none)'}", f"known: {', '.join(ALL_TYPES)}"
        )
    return types


def _stamp(model: TinyModel, env: ConverterEnv, converter: str, outtype: str) -> str:
    """What made a converted GGUF: the checkpoint, the converter environment, the converter's
    content and the type (the work dir's stamp and the cache's key)."""
    return f"{model.content_hash}:{model.safetensors_sha256}:{env.key}:{converter}:{outtype}"


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
    bin_dir: Path | None = None,
    report_name: str = CONVERT.name,
    merge: bool = False,
) -> Conversion:
    """Validated and loaded GGUFs for ``specs`` × ``types``; every pair gets a verdict in the record.

    ``bin_dir``: the build whose loader (and llama-quantize) to use (default: the work dir's
    build, see :func:`build_bins`). ``report_name``: the report written under reports/; ``merge``:
    a subset run replaces its own pairs in an existing report of the same tree and keeps the rest
    (see :func:`write_merged`)."""
    start = time.monotonic()
    bins = [bin_dir] if bin_dir is not None else build_bins(settings)
    loader = find_loader(bins)
    tree = (tree or settings.src_dir).resolve()
    if not (tree / CONVERT_SCRIPT).is_file():
        raise ConvertError(
            f"{tree} has no {CONVERT_SCRIPT}", "run `llama-toolchain fetch` first (or pass the tree)"
        )
    env = ensure_env(tree, settings)
    models = make_models(specs, settings, env.python, tree, seed=seed, shrinks=shrinks)
    converter = gguf_cache.converter_digest(tree)
    results: dict[tuple[str, str], ConvertResult] = {}
    restored = 0
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
            want = _stamp(model, env, converter, outtype)
            fresh = path.is_file() and stamp.is_file() and stamp.read_text() == want
            if not fresh and gguf_cache.restore(settings, gguf_cache.entry_key(want), path):
                atomic_write_text(stamp, want)
                restored += 1
                fresh = True
            if fresh:
                results[(model.name, outtype)] = validated(
                    model, path, outtype, 0.0, cached=True, loader=loader
                )
                continue
            check_model_dir(model.path)
            gguf_cache.discard(path)
            job_id = f"{model.name}:{outtype}"
            jobs.append(
                {"id": job_id, "model_dir": str(model.path), "outtype": outtype, "outfile": str(path)}
            )
            pending[job_id] = (model, outtype, path)
    if restored:
        LOG.info(
            f"{restored} GGUF(s) restored from the cache ({settings.cache_dir / 'gguf'}): not converted again"
        )
    startup = 0.0
    if jobs:
        LOG.info(f"converting {len(jobs)} model/type pair(s) with {tree / CONVERT_SCRIPT}")
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
                result = validated(model, path, outtype, float(data["seconds"]), cached=False, loader=loader)
                if result.status == "pass" or result.cause == "load":
                    want = _stamp(model, env, converter, outtype)
                    atomic_write_text(path.with_name(path.name + ".stamp"), want)
                    gguf_cache.store(settings, gguf_cache.entry_key(want), path)
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
    quantize = find_quantize(settings, bins)
    for model in models.models:
        for outtype in types:
            if outtype not in QUANTIZE_TYPES or model.status != "ok":
                continue
            results[(model.name, outtype)] = quantize_gguf(
                settings, model, outtype, quantize, results, env, loader
            )
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
        path = settings.reports_dir / report_name
        if merge:
            write_merged(path, conversion)
        else:
            write_report(path, CONVERT.kind, conversion)
    return conversion
