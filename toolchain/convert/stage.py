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

from ..builder.manifest import last_build_dir
from ..config import Settings
from ..errors import ConvertError, ReportError
from ..log import LOG
from ..models.build import ModelSet, TinyModel, check_model_dir, make_models
from ..models.shrink import Shrink
from ..models.spec import ArchSpec
from ..proc import stream
from ..records import CONVERT, atomic_write_text, read_data, sha256_file, to_jsonable, write_report
from ..tree import CONVERT_SCRIPT, QUANTIZE
from .env import ConverterEnv, ensure_env
from .load import Loader, find_loader, load_gguf, missing_key_finding
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


def parse_types(text: str) -> tuple[str, ...]:
    from ..errors import UsageError

    types = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in types if t not in ALL_TYPES]
    if bad or not types:
        raise UsageError(
            f"unknown output type(s): {', '.join(bad) or '(none)'}", f"known: {', '.join(ALL_TYPES)}"
        )
    return types


def build_bins(settings: Settings) -> list[Path]:
    """The work dir's build bin dirs, best first: the last successful build (build-manifest.json),
    then the others, newest first."""
    out: list[Path] = []
    last = last_build_dir(settings.reports_dir)
    if last is not None and (last / "bin").is_dir():
        out.append(last / "bin")
    if settings.build_root.is_dir():
        others = sorted(
            (p for p in settings.build_root.glob("*/bin") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        out += [p for p in others if p not in out]
    return out


def find_quantize(settings: Settings, bins: list[Path] | None = None) -> Path | None:
    for bin_dir in build_bins(settings) if bins is None else bins:
        for name in QUANTIZE:
            if (bin_dir / name).is_file():
                return bin_dir / name
    return None


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


def _validated(
    model: TinyModel, path: Path, outtype: str, seconds: float, cached: bool, loader: Loader | None = None
) -> ConvertResult:
    """Validate with the gguf package, then load with the tree's loader, once per file content and
    loader: the verdict is kept beside the GGUF with the file's sha256 and the loader's identity
    and reused while both are unchanged (a warm run re-hashes, ~1 GB/s, instead of re-parsing every
    vocabulary: ~2.5 s per GPT-2-vocab file, and instead of loading the model again)."""
    record = path.with_name(path.name + ".check.json")
    digest = sha256_file(path) if path.is_file() else ""
    loader_key = loader.key if loader else ""
    if cached and digest and record.is_file():
        try:
            kept = json.loads(record.read_text())
        except ValueError:
            kept = {}
        if (
            kept.get("sha256") == digest
            and kept.get("source") == model.content_hash
            and kept.get("loader") == loader_key
            and isinstance(kept.get("result"), dict)
        ):
            fields = {k: v for k, v in kept["result"].items() if k not in ("gguf", "tail")}
            fields["tail"] = tuple(kept["result"].get("tail", ()))
            return replace(ConvertResult(**fields), gguf=path, seconds=seconds, cached=True)
    result = _check(model, path, outtype, seconds, cached)
    if result.status == "pass":
        result = _load(result, path, loader)
    if digest and (result.status == "pass" or result.cause == "load"):
        data = {k: v for k, v in to_jsonable(result).items() if k != "gguf"}
        atomic_write_text(
            record,
            json.dumps(
                {"sha256": digest, "source": model.content_hash, "loader": loader_key, "result": data}
            ),
        )
    return result


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
                results[(model.name, outtype)] = _validated(
                    model, path, outtype, 0.0, cached=True, loader=loader
                )
                continue
            check_model_dir(model.path)
            job_id = f"{model.name}:{outtype}"
            jobs.append(
                {"id": job_id, "model_dir": str(model.path), "outtype": outtype, "outfile": str(path)}
            )
            pending[job_id] = (model, outtype, path)
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
                result = _validated(model, path, outtype, float(data["seconds"]), cached=False, loader=loader)
                if result.status == "pass" or result.cause == "load":
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
    quantize = find_quantize(settings, bins)
    for model in models.models:
        for outtype in types:
            if outtype not in QUANTIZE_TYPES or model.status != "ok":
                continue
            results[(model.name, outtype)] = _quantize(
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


def _quantize(
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
    if path.is_file() and stamp.is_file() and stamp.read_text() == want:
        return _validated(model, path, outtype, 0.0, cached=True, loader=loader)
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
    result = _validated(model, path, outtype, done.seconds, cached=False, loader=loader)
    if result.status == "pass" or result.cause == "load":
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
                cells.append(f"{r.status}: {r.cause}" + (f" ({r.whose})" if r.whose else ""))
        gguf_arch = next((r.gguf_architecture for r in items if r.gguf_architecture), "")
        rows.append(f"| {arch} | {gguf_arch} | {items[0].tokenizer} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
