"""Plan and run the matrix: inputs -> cells in parallel -> :class:`CoverageRun`.

    from toolchain.coverage import CoverageRequest, plan, run_matrix, write_reports
    planned = plan(request)                      # tools, model inputs, cell specs, skips
    result = run_matrix(request, planned)        # threads up to the core count
    write_reports(result, request.reports_dir)   # coverage.json/.md/.html, junit-coverage.xml

Ctrl-C: the pending cells are dropped, every child's process group is ended, and the report of
the finished cells is written with ``complete: false`` before :class:`InterruptedError_` (130).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...builder.manifest import BuildManifest
from ...core import isolate
from ...core.jsonio import to_jsonable
from ...records import BUILD_MANIFEST, CONVERT, VERIFY, read_record_if_any
from ...verify.records import Verification
from ..records import COLUMNS, Cell, CoverageRun, DeviceSummary, ModelInput, ObservedBy
from ..reports.write import diff_baseline
from .backends import backend, backends_for_profile
from .cell import CellOptions, CellRunner, CellSpec, blocked_cell
from .inputs import (
    DEFAULT_ARCHITECTURES,
    DEFAULT_TYPES,
    BlockedInput,
    ModelSkip,
    archs_models,
    blocked_from_convert_report,
    from_convert_report,
    with_types,
)
from .tools import Toolset, detect


@dataclass(frozen=True)
class CoverageRequest:
    build_dir: Path  # a build dir (with bin/) or a bin dir
    reports_dir: Path
    scratch_dir: Path  # logs and per-model cache (work dir's coverage/)
    architectures: tuple[str, ...] = ()  # () = the defaults (or every model of convert.json)
    types: tuple[str, ...] = DEFAULT_TYPES
    backends: tuple[str, ...] = ()  # () = CPU + the build profile's backend
    columns: tuple[str, ...] = COLUMNS
    timeout: float = 120.0
    jobs: int = 0  # 0 = the core count
    models: tuple[ModelInput, ...] = ()  # given explicitly (--model)
    convert_report: Path | None = None
    use_archs_models: bool = True  # test-llama-archs -o as a model source
    variants: tuple[str, ...] = ("dense",)
    observed_by: ObservedBy = "device"
    env: dict[str, str] = field(default_factory=dict)
    n_predict: int = 4
    cell_cache: Path | None = None  # finished cells reused while their inputs are unchanged

    @property
    def bin_dir(self) -> Path:
        return self.build_dir / "bin" if (self.build_dir / "bin").is_dir() else self.build_dir


@dataclass(frozen=True)
class Plan:
    tools: Toolset
    inputs: tuple[ModelInput, ...]
    skips: tuple[ModelSkip, ...]
    specs: tuple[CellSpec, ...]
    manifest: BuildManifest | None  # None: the build dir has none (a bin dir given by hand)
    devices: dict[str, DeviceSummary]
    device_class: str
    backends: tuple[str, ...]
    blocked: tuple[BlockedInput, ...] = ()  # converted models the tree's loader refused

    @property
    def tree(self) -> Path | None:
        """The llama.cpp source tree the build was made from (None without a manifest)."""
        return self.manifest.source_dir if self.manifest else None


def read_manifest(build_dir: Path, reports_dir: Path) -> BuildManifest | None:
    """The build manifest of ``build_dir`` (its own, else the reports' when it names that dir)."""
    for path in (build_dir / BUILD_MANIFEST.name, reports_dir / BUILD_MANIFEST.name):
        manifest = read_record_if_any(path, BUILD_MANIFEST, BuildManifest)
        if manifest is not None and manifest.build_dir.resolve() == build_dir.resolve():
            return manifest
    return None


def device_summaries(
    reports_dir: Path, build_dir: Path, backends: Sequence[str]
) -> tuple[dict[str, DeviceSummary], str]:
    """Per backend: verify.json's device (class, capabilities) when it verified this build."""
    verify = read_record_if_any(reports_dir / VERIFY.name, VERIFY, Verification)
    if verify is not None and verify.path.resolve() != build_dir.resolve():
        verify = None
    found: dict[str, DeviceSummary] = {}
    caps_keys = (
        "gpu_family",
        "gpu_families",
        "simdgroup_reduction",
        "simdgroup_mm",
        "unified_memory",
        "bfloat",
        "tensor",
        "max_working_set_mb",
        "memory_total_mib",
    )
    for device in verify.devices if verify else ():
        dev = to_jsonable(device)
        caps = {k: dev[k] for k in caps_keys if dev.get(k) not in (None, [], "")}
        found[device.name] = DeviceSummary(
            device.name, device.description, device.device_class, caps, device.class_reason
        )
    out: dict[str, DeviceSummary] = {}
    for name in backends:
        be = backend(name)
        if name in found:
            out[name] = found[name]
        elif be.kind == "cpu":
            out[name] = DeviceSummary(name, os.uname().machine, "real", {}, "the host CPU")
        elif not be.needs_device_class:
            out[name] = DeviceSummary(
                name, "", "real", {}, "runs on the host CPU (no device capabilities involved)"
            )
        else:
            why = (
                "verify.json has no run-time device for this build (run `llama-toolchain verify`)"
                if not verify
                else f"verify saw no {name} device"
            )
            out[name] = DeviceSummary(name, "", "none", {}, why)
    classes = [d.device_class for n, d in out.items() if backend(n).kind != "cpu"]
    device_class = str((verify and verify.device_class) or (classes[0] if classes else "real"))
    return out, device_class


def asked_for(model: ModelInput, architectures: tuple[str, ...]) -> bool:
    """Whether ``-a`` names this model: by its GGUF architecture (``qwen3moe``, what test-llama-archs
    calls it) or by the spec it was converted from (``qwen3_moe``, what ``convert -a`` takes), so one
    ``-a`` serves ``nox -s build coverage``."""
    return model.architecture in architectures or bool(model.variant and model.variant in architectures)


def plan(request: CoverageRequest, log: Callable[[str], None] = lambda _m: None) -> Plan:
    tools = detect(request.bin_dir)
    manifest = read_manifest(request.build_dir, request.reports_dir)
    profile = manifest.profile if manifest else request.build_dir.name.split("-", 1)[0]
    backends = request.backends or backends_for_profile(profile)
    devices, device_class = device_summaries(request.reports_dir, request.build_dir, backends)
    inputs: list[ModelInput] = list(request.models)
    skips: list[ModelSkip] = []
    blocked: list[BlockedInput] = []
    convert = request.convert_report or request.reports_dir / CONVERT.name
    if not request.models and convert.is_file():
        got = from_convert_report(convert)
        blocked = [
            b
            for b in blocked_from_convert_report(convert)
            if b.model.weight_type in request.types
            and (not request.architectures or asked_for(b.model, request.architectures))
        ]
        if request.architectures:
            got = [m for m in got if asked_for(m, request.architectures)]
        log(
            f"{len(got)} model(s) from {convert}"
            + (f"; {len(blocked)} the tree cannot load" if blocked else "")
        )
        inputs += got
    have_archs = {name for m in inputs for name in (m.architecture, m.variant) if name}
    if request.use_archs_models and not request.models:
        wanted = request.architectures or (DEFAULT_ARCHITECTURES if not inputs else ())
        missing = [a for a in wanted if a not in have_archs]
        if missing:
            made, skipped = archs_models(
                tools, missing, request.scratch_dir / "models" / "archs", request.timeout, request.variants
            )
            log(f"{len(made)} model(s) from test-llama-archs -o")
            inputs += made
            skips += skipped
    typed, skipped = with_types(
        tools, inputs, request.types, request.scratch_dir / "models" / "typed", request.timeout
    )
    skips += skipped
    specs = tuple(CellSpec(m, b) for m in typed for b in backends)
    return Plan(
        tools,
        tuple(typed),
        tuple(skips),
        specs,
        manifest,
        devices,
        device_class,
        tuple(backends),
        tuple(blocked),
    )


def run_matrix(
    request: CoverageRequest,
    planned: Plan,
    *,
    on_cell: Callable[[Cell, int, int], None] = lambda _c, _i, _n: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> CoverageRun:
    """Run every planned cell; KeyboardInterrupt yields a partial, incomplete run (``interrupted``:
    the caller writes its reports, then exits 130, as ``coverage.cli`` does)."""
    jobs = request.jobs or os.cpu_count() or 1
    options = CellOptions(
        timeout=request.timeout,
        columns=request.columns,
        threads=1 if jobs > 1 else 0,
        env=request.env,
        observed_by=request.observed_by,
        n_predict=request.n_predict,
    )
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    runner = CellRunner(
        planned.tools,
        request.scratch_dir / "cache",
        request.scratch_dir / "logs" / stamp,
        options,
        planned.devices,
        request.cell_cache,
    )
    cells: list[Cell] = [
        blocked_cell(b.model, name, b.reason, "upstream" if b.whose == "upstream" else "spec", b.evidence)
        for b in planned.blocked
        for name in planned.backends
    ]
    stop = threading.Event()
    interrupted = False
    isolate.reset_cancel()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cell") as pool:
        futures: dict[Future[Cell], CellSpec] = {}
        pending = list(planned.specs)

        def submit_some() -> None:
            while pending and len(futures) < jobs * 2 and not stop.is_set():
                spec = pending.pop(0)
                futures[pool.submit(runner.run, spec, stop.is_set)] = spec

        try:
            submit_some()
            while futures:
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    futures.pop(fut)
                    cells.append(fut.result())
                    on_cell(cells[-1], len(cells), len(planned.specs))
                if should_stop():
                    raise KeyboardInterrupt
                submit_some()
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            pending.clear()
            isolate.cancel_all()
            for fut in futures:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
    done_ids = {c.id for c in cells}
    order = {s.id: i for i, s in enumerate(planned.specs)}
    cells.sort(key=lambda c: order.get(c.id, len(order)))
    return build_run(
        request,
        planned,
        tuple(cells),
        started,
        time.monotonic() - t0,
        complete=not interrupted and {s.id for s in planned.specs} <= done_ids,
        interrupted=interrupted,
    )


def build_run(
    request: CoverageRequest,
    planned: Plan,
    cells: tuple[Cell, ...],
    started: str,
    seconds: float,
    *,
    complete: bool,
    interrupted: bool,
) -> CoverageRun:
    m = planned.manifest
    source: dict[str, object] = (
        {"kind": m.source.kind, "location": m.source.location, "ref": m.source.ref, "commit": m.source.commit}
        if m
        else dict.fromkeys(("kind", "location", "ref", "commit"))
    )
    if m and m.source.sdist is not None:
        source["upstream_commit"] = m.source.sdist.upstream_commit
    counts = Counter(c.status for c in cells)
    return CoverageRun(
        source=source,
        profile=m.profile if m else request.build_dir.name.split("-", 1)[0],
        build_dir=str(request.build_dir),
        device_class=planned.device_class,
        devices=tuple(planned.devices[b] for b in planned.backends if b in planned.devices),
        backends=planned.backends,
        architectures=tuple(
            dict.fromkeys(
                [*(s.model.label for s in planned.specs), *(b.model.label for b in planned.blocked)]
            )
        ),
        weight_types=tuple(
            dict.fromkeys(
                [
                    *(s.model.weight_type for s in planned.specs),
                    *(b.model.weight_type for b in planned.blocked),
                ]
            )
        ),
        columns=planned.tools.columns,
        cells=cells,
        complete=complete,
        interrupted=interrupted,
        started_at=started,
        seconds=round(seconds, 2),
        counts=dict(sorted(counts.items())),
        models_skipped=tuple(f"{s.label}: {s.reason}" for s in planned.skips),
        observed_by=request.observed_by,
    )


def with_baseline(run: CoverageRun, baseline: Path | None, old: dict[str, Any] | None = None) -> CoverageRun:
    """``run`` with its diff against ``baseline`` (``old``: the report, already loaded and checked)."""
    if baseline is None:
        return run

    d = diff_baseline(run, baseline, old)
    return replace(run, baseline=d, verdict=d.verdict)
