"""The convert stage: tiny models → GGUFs of each type → validated → ``convert.json``.

``convert_architectures`` is the public entry point (the coverage stage calls it): it makes or
reuses the tiny checkpoints, converts every (architecture, type) the converter can write in
worker processes (one per core, sharing the job list), quantizes q4_0/q4_K with the build's
``llama-quantize`` when there is one, and validates every GGUF. A failure is that pair's verdict (with its cause); the run goes on.
GGUFs live in ``<work>/models/<name>-<hash12>/<name>-<type>.gguf`` and are reused while the
model, the tree and the converter environment are unchanged.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..core.claims import claimed_by
from ..core.jsonio import atomic_write_text
from ..core.proc import Completed, available_cores, stream_many
from ..core.tree import CONVERT_SCRIPT
from ..errors import ConvertError, UsageError
from ..log import LOG
from ..models.build import TinyModel, check_model_dir, make_models
from ..models.shrink import Shrink
from ..models.spec import ArchSpec
from ..records import CONVERT, write_report
from . import gguf_cache
from .checked import kept_verdict, validated
from .env import ConverterEnv, ensure_env
from .load import Loader, find_loader
from .locate import build_bins, find_quantize, gguf_path
from .quantize import QUANTIZE_TYPES, quantize_gguf
from .results import Conversion, ConvertResult, classify, write_merged

WORKER = Path(__file__).with_name("worker.py")
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
ALL_TYPES = CONVERTER_TYPES + tuple(QUANTIZE_TYPES)
DEFAULT_TYPES = ("f16", "q8_0")


def parse_types(text: str) -> tuple[str, ...]:
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


def _ignore_ctrl_c() -> None:
    """In a validation worker: Ctrl-C is the stage's to handle (it stops the pool), not a
    traceback from every worker on the user's terminal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Validation:
    """GGUF validation in worker processes, started as each file is written. The gguf package's
    reader is pure Python over a memmap (~3 s for a 50k-token vocabulary, against ~1.5 s to write
    the file), so validating in the stage's own process after the conversions doubled the stage's
    time; one process per core overlaps it with the converter (one core) and then with itself.
    Spawned, not forked: the stage has threads (the progress display, the stream readers). The
    pool starts only when a file needs validating (an unchanged rerun reuses every verdict)."""

    def __init__(self, loader: Loader | None) -> None:
        self.loader = loader
        self._pool: ProcessPoolExecutor | None = None
        self._checks: dict[str, tuple[Future[ConvertResult], tuple[TinyModel, Path, str, float, bool]]] = {}

    def submit(
        self, job: str, model: TinyModel, path: Path, outtype: str, seconds: float, cached: bool
    ) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=available_cores(),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_ctrl_c,
            )
        args = (model, path, outtype, seconds, cached)
        future = self._pool.submit(
            validated, model, path, outtype, seconds, cached=cached, loader=self.loader
        )
        self._checks[job] = (future, args)

    def collect(self) -> dict[str, ConvertResult]:
        """Every verdict, with progress; a pool that broke (a worker killed) does not cost a
        verdict: that file is validated here instead."""
        out: dict[str, ConvertResult] = {}
        if not self._checks:
            return out
        LOG.info(f"validating {len(self._checks)} GGUF(s) against their checkpoints")
        by_future = {future: job for job, (future, _) in self._checks.items()}
        try:
            with LOG.progress("validating", total=len(by_future)) as bar:
                for n, future in enumerate(as_completed(by_future), start=1):
                    job = by_future[future]
                    try:
                        out[job] = future.result()
                    except BrokenProcessPool:
                        model, path, outtype, seconds, cached = self._checks[job][1]
                        out[job] = validated(model, path, outtype, seconds, cached=cached, loader=self.loader)
                    bar.update(n, detail=job)
        finally:
            self.close()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@dataclass(frozen=True)
class _Workers:
    """How the converter workers ended, and which worker claimed which job."""

    done: tuple[Completed, ...]
    claimed_by: dict[str, int]  # job id -> index into ``done``

    def stopped_before(self, job: str) -> str:
        """Why ``job`` has no result: the exit of the worker that held it, or of every worker."""
        held = self.claimed_by.get(job)
        ended = [self.done[held]] if held is not None else list(self.done)
        exits = ", ".join(f"exit {d.returncode}{', timed out' if d.timed_out else ''}" for d in ended)
        if held is not None:
            return f"the converter process stopped in this job ({exits})"
        return f"every converter process stopped before this job ({exits})"

    def tail(self, job: str) -> tuple[str, ...]:
        held = self.claimed_by.get(job)
        return self.done[held if held is not None else 0].tail[-10:]


def _run_converter(
    env: ConverterEnv,
    tree: Path,
    jobs: list[dict[str, str]],
    settings: Settings,
    timeout: float,
    lines: list[str],
    pending: dict[str, tuple[TinyModel, str, Path]],
    checks: _Validation,
) -> _Workers:
    """The conversions in one worker process per core, which share the job list (each claims the
    next job when it is free: :mod:`toolchain.core.claims`); the result lines go to ``lines``, and each
    written file to validation as soon as a worker reports it. The largest checkpoints go first,
    so the last jobs are short ones and no worker finishes long after the other."""
    n = min(available_cores(), len(jobs))
    ordered = sorted(jobs, key=lambda job: -pending[job["id"]][0].size_bytes)
    LOG.info(
        f"converting {len(jobs)} model/type pair(s) with {tree / CONVERT_SCRIPT} in {n} worker process(es)"
    )
    log_dir = settings.work_dir / "models"
    with tempfile.TemporaryDirectory(prefix="toolchain-convert-") as tmp:
        job_file, claims = Path(tmp) / "jobs.json", Path(tmp) / "claims"
        job_file.write_text(json.dumps(ordered))
        claims.mkdir()
        cwds = [Path(tmp) / f"worker-{i + 1}" for i in range(n)]
        for cwd in cwds:
            cwd.mkdir()
        with LOG.progress("converting", total=len(jobs)) as bar:
            finished = 0

            def on_line(line: str) -> None:
                nonlocal finished
                if line.startswith("@@result "):
                    lines.append(line)
                    data = json.loads(line[len("@@result ") :])
                    job = data.get("job")
                    if job:  # (a worker's start-up record has no job)
                        finished += 1
                        bar.update(finished, detail=job)
                    if job in pending and data.get("status") == "ok":  # written: check it now
                        model, outtype, path = pending[job]
                        checks.submit(job, model, path, outtype, float(data["seconds"]), cached=False)

            done = stream_many(
                [
                    [str(env.python), str(WORKER), str(tree), str(job_file), str(claims), str(i + 1)]
                    for i in range(n)
                ],
                log_paths=[log_dir / f"toolchain-convert-{i + 1}.log" for i in range(n)],
                cwds=cwds,
                on_line=on_line,
                timeout=timeout,
            )
        held = {ordered[index]["id"]: worker - 1 for index, worker in claimed_by(claims).items()}
    return _Workers(tuple(done), held)


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
    recheck: dict[str, tuple[TinyModel, str, Path]] = {}  # the GGUF is the one wanted, not its verdict
    checks = _Validation(loader)
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
            job_id = f"{model.name}:{outtype}"
            if fresh:
                verdict = kept_verdict(model, path, 0.0, loader)
                if verdict is not None:
                    results[(model.name, outtype)] = verdict
                else:  # a verdict made with another loader (a new build): check the file again
                    checks.submit(job_id, model, path, outtype, 0.0, cached=True)
                    recheck[job_id] = (model, outtype, path)
                continue
            check_model_dir(model.path)
            gguf_cache.discard(path)
            jobs.append(
                {"id": job_id, "model_dir": str(model.path), "outtype": outtype, "outfile": str(path)}
            )
            pending[job_id] = (model, outtype, path)
    if restored:
        LOG.info(
            f"{restored} GGUF(s) restored from the cache ({settings.cache_dir / 'gguf'}): not converted again"
        )
    startup = 0.0
    lines: list[str] = []
    done: _Workers | None = None
    try:
        if jobs:
            done = _run_converter(env, tree, jobs, settings, timeout, lines, pending, checks)
        checked = checks.collect()
    finally:
        checks.close()
    for job, (model, outtype, path) in recheck.items():
        results[(model.name, outtype)] = result = checked[job]
        if result.status == "pass" or result.cause == "load":
            gguf_cache.store(settings, gguf_cache.entry_key(_stamp(model, env, converter, outtype)), path)
    if done is not None:
        for line in lines:
            data = json.loads(line[len("@@result ") :])
            if "job" not in data:  # a worker's start-up record (they start side by side)
                startup = max(startup, float(data.get("startup_seconds", 0.0)))
                continue
            model, outtype, path = pending.pop(data["job"])
            if data["status"] == "ok":
                result = checked[data["job"]]
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
                error=done.stopped_before(f"{model.name}:{outtype}"),
                tail=done.tail(f"{model.name}:{outtype}"),
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
