"""Specs → tiny checkpoints in ``<cache>/models/``, cached by content hash; the ModelSet record.

A model lives in ``<cache>/models/<name>-<hash16>-s<seed>/`` with ``toolchain-model.json`` (its
record). A cached model is reused when its record and the sha256 of its safetensors still match;
a changed spec has another hash and is built anew. Missing models are built by
``worker.py`` in the converter environment, all in one process.
"""

from __future__ import annotations

import json
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..core.claims import claimed_by
from ..core.hashing import sha256_file
from ..core.jsonio import atomic_write_text
from ..core.proc import Completed, available_cores, stream_many
from ..errors import ModelError
from ..log import LOG
from .shrink import Shrink
from .spec import ArchSpec, ModelShape, safe_name, shape_of

WORKER = Path(__file__).with_name("worker.py")
RECORD = "toolchain-model.json"
ALLOWED_FILES = frozenset(
    {
        "config.json",
        "model.safetensors",
        "tokenizer.model",
        "added_tokens.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        RECORD,
    }
)
SAFETENSORS_DTYPES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True)
class TinyModel:
    name: str
    architecture: str
    gguf_arch: str
    path: Path
    content_hash: str
    seed: int
    status: str  # ok | error
    reference: str = ""
    features: tuple[str, ...] = ()
    tokenizer: str = ""
    tokenizer_why: str = ""
    shape: ModelShape | None = None
    reference_shape: dict[str, Any] = field(default_factory=dict)
    safetensors_sha256: str = ""
    n_params: int = 0
    n_tensors: int = 0
    size_bytes: int = 0
    cached: bool = False
    seconds: float = 0.0
    shrinks: tuple[Shrink, ...] = ()
    notes: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class ModelSet:
    cache_dir: Path
    models: tuple[TinyModel, ...]
    seconds: float


# --- safetensors, read without torch or pickle ---------------------------------------------------
def read_safetensors_index(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from the header; the layout is checked against the file size."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                raise ModelError(f"{path}: corrupt safetensors (shorter than its header length)")
            (n,) = struct.unpack("<Q", head)
            if n <= 1 or n > min(size - 8, 100 << 20):
                raise ModelError(f"{path}: corrupt safetensors (header length {n} for a {size}-byte file)")
            header = json.loads(fh.read(n))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{path}: corrupt safetensors: {exc}", "delete the model directory; it is rebuilt"
        ) from exc
    if not isinstance(header, dict):
        raise ModelError(f"{path}: corrupt safetensors (header is not an object)")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, stop) = (
                info["dtype"],
                tuple(int(d) for d in info["shape"]),
                info["data_offsets"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: corrupt safetensors entry {name!r}") from exc
        numel = 1
        for d in shape:
            numel *= d
        if dtype not in SAFETENSORS_DTYPES or stop - start != numel * SAFETENSORS_DTYPES[dtype] or start < 0:
            raise ModelError(
                f"{path}: corrupt safetensors: {name} {dtype}{list(shape)} has {stop - start} bytes"
            )
        end = max(end, stop)
        out[name] = (dtype, shape)
    if 8 + n + end != size:
        raise ModelError(
            f"{path}: corrupt safetensors: data ends at {8 + n + end}, file has {size} bytes (truncated?)"
        )
    return out


def check_model_dir(path: Path) -> None:
    """Only the files we write: no pickles (*.bin, *.pt), no code (*.py), no remote-code config."""
    for entry in path.iterdir():
        if entry.name not in ALLOWED_FILES or entry.is_symlink():
            raise ModelError(
                f"{path}: unexpected file {entry.name}",
                "model directories hold only config, safetensors and tokenizer files",
            )
    config = json.loads((path / "config.json").read_text())
    if "auto_map" in config:
        raise ModelError(f"{path}/config.json has auto_map (remote code): refused")


# --- build ---------------------------------------------------------------------------------------
def model_dir(settings: Settings, spec: ArchSpec, seed: int) -> Path:
    root = (settings.cache_dir / "models").resolve()
    path = (root / f"{safe_name(spec.name)}-{spec.content_hash[:16]}-s{int(seed)}").resolve()
    if not path.is_relative_to(root):
        raise ModelError(f"{path} is outside {root}")
    return path


def _cached(spec: ArchSpec, path: Path, seed: int, shrinks: tuple[Shrink, ...]) -> TinyModel | None:
    record = path / RECORD
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
        if data.get("content_hash") != spec.content_hash or sha256_file(
            path / "model.safetensors"
        ) != data.get("safetensors_sha256"):
            return None
    except (OSError, json.JSONDecodeError):
        return None
    return _model(spec, path, seed, data, shrinks, cached=True)


def _model(
    spec: ArchSpec, path: Path, seed: int, data: dict[str, Any], shrinks: tuple[Shrink, ...], cached: bool
) -> TinyModel:
    config = json.loads((path / "config.json").read_text())
    return TinyModel(
        name=spec.name,
        architecture=spec.architecture,
        gguf_arch=spec.gguf_arch,
        path=path,
        content_hash=spec.content_hash,
        seed=seed,
        status="ok",
        reference=spec.reference,
        features=spec.features,
        tokenizer=spec.tokenizer,
        tokenizer_why=spec.tokenizer_why,
        shape=shape_of(config),
        reference_shape=spec.reference_shape,
        safetensors_sha256=str(data["safetensors_sha256"]),
        n_params=int(data["n_params"]),
        n_tensors=int(data["n_tensors"]),
        size_bytes=sum(p.stat().st_size for p in path.iterdir()),
        cached=cached,
        seconds=float(data.get("seconds", 0.0)) if not cached else 0.0,
        shrinks=shrinks,
        notes=tuple(data.get("notes", ())),
    )


def _run_workers(
    python: Path, jobs: list[dict[str, Any]], tmp: Path, log_dir: Path, timeout: float
) -> tuple[list[str], dict[str, Completed]]:
    """Make the models of ``jobs`` in one worker process per core, which share the job list (each
    claims the next model when it is free: :mod:`toolchain.core.claims`): the workers' ``@@result``
    lines, and per model name the exit of the worker that claimed it (of the first worker when
    none did). Each worker logs to ``toolchain-models-<i>.log``; Ctrl-C ends them all."""
    n = min(available_cores(), len(jobs))
    job_file, claims = tmp / "jobs.json", tmp / "claims"
    job_file.write_text(json.dumps(jobs))
    claims.mkdir()
    lines: list[str] = []
    with LOG.progress("making tiny models", total=len(jobs)) as bar:

        def on_line(line: str) -> None:
            if line.startswith("@@result "):
                lines.append(line)
                bar.update(len(lines), detail=json.loads(line[len("@@result ") :]).get("name", ""))

        dones = stream_many(
            [[str(python), str(WORKER), str(job_file), str(claims), str(i + 1)] for i in range(n)],
            log_paths=[log_dir / f"toolchain-models-{i + 1}.log" for i in range(n)],
            on_line=on_line,
            timeout=timeout,
        )
    held = claimed_by(claims)
    return lines, {str(job["name"]): dones[held.get(i, 1) - 1] for i, job in enumerate(jobs)}


def make_models(
    specs: list[ArchSpec],
    settings: Settings,
    python: Path,
    tree: Path,
    *,
    seed: int = 0,
    shrinks: dict[str, tuple[Shrink, ...]] | None = None,
    timeout: float = 3600.0,
) -> ModelSet:
    """Reuse cached checkpoints, build the missing ones in one worker process per core."""
    start = time.monotonic()
    shrinks = shrinks or {}
    results: dict[str, TinyModel] = {}
    jobs = []
    for spec in specs:
        path = model_dir(settings, spec, seed)
        cached = _cached(spec, path, seed, shrinks.get(spec.name, ()))
        if cached is not None:
            results[spec.name] = cached
            continue
        jobs.append(
            {
                **spec.job(),
                "out_dir": str(path),
                "tree": str(tree),
                "tokenizer_cache": str(settings.cache_dir / "tokenizers"),
                "content_hash": spec.content_hash,
                "seed": int(seed),
            }
        )
    if jobs:
        LOG.info(
            f"making {len(jobs)} tiny model(s) ({len(results)} cached) in {min(available_cores(), len(jobs))} worker process(es)"
        )
        (settings.cache_dir / "models").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="toolchain-models-") as tmp:
            lines, workers = _run_workers(python, jobs, Path(tmp), settings.cache_dir / "models", timeout)
        by_name = {spec.name: spec for spec in specs}
        for line in lines:
            data = json.loads(line[len("@@result ") :])
            spec = by_name[data["name"]]
            path = model_dir(settings, spec, seed)
            if data["status"] != "ok":
                results[spec.name] = TinyModel(
                    spec.name,
                    spec.architecture,
                    spec.gguf_arch,
                    path,
                    spec.content_hash,
                    seed,
                    "error",
                    reference=spec.reference,
                    features=spec.features,
                    tokenizer=spec.tokenizer,
                    error=data["error"] + "\n" + "\n".join(data.get("traceback", [])[-6:]),
                )
                continue
            read_safetensors_index(path / "model.safetensors")
            data["safetensors_sha256"] = sha256_file(path / "model.safetensors")
            data["content_hash"] = spec.content_hash
            record = {
                k: data[k]
                for k in (
                    "content_hash",
                    "safetensors_sha256",
                    "n_params",
                    "n_tensors",
                    "seconds",
                    "notes",
                    "tokenizer",
                )
            }
            atomic_write_text(path / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
            results[spec.name] = _model(spec, path, seed, data, shrinks.get(spec.name, ()), cached=False)
        for spec in specs:
            if spec.name not in results:
                done = workers[spec.name]
                results[spec.name] = TinyModel(
                    spec.name,
                    spec.architecture,
                    spec.gguf_arch,
                    model_dir(settings, spec, seed),
                    spec.content_hash,
                    seed,
                    "error",
                    error=f"the model worker stopped (exit {done.returncode}): " + " / ".join(done.tail[-5:]),
                )
    ordered = tuple(results[s.name] for s in specs)
    return ModelSet(settings.cache_dir / "models", ordered, time.monotonic() - start)
