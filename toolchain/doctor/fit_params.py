"""Upstream's own memory fit beside ours: ``llama-fit-params`` (tools/fit-params, PR #16653).

Where the build has the program, doctor runs it twice on the same GGUF with the same parameters:

- ``--fit-print on``: the estimated memory in MiB per device and for the host, as ``NAME model
  context compute`` lines (``common_fit_print`` in common/fit.cpp). llama.cpp gets these by
  loading the model without allocating and creating a context, so they are the sizes its
  buffers would really have (``llama_memory_breakdown``), floored to MiB.
- the default mode: the CLI arguments fitted to the free device memory (``-c N -ngl N`` and,
  on several devices or with overflow, ``-ts`` / ``-ot``), or a failure to fit.

Why the answers differ (said in the report): our weights are the GGUF's tensor data, theirs the
allocated buffers (alignment, repacked CPU weights, the output layer kept on the host); our compute
buffer is a formula, theirs the scheduler's reservation for the real graph; we budget a share of
the machine's memory (or recommendedMaxWorkingSetSize), they fit the free memory of each device
now, minus a margin (``--fit-target``, 1024 MiB by default); a build without a GPU backend has
no device for them to fit at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core.proc import stream
from ..core.tree import FIT_PARAMS
from .classify import RunParams

TIMEOUT = 300.0
MAX_OUTPUT = 4 << 20

_MEMORY_LINE = re.compile(r"^(?P<name>\S+) (?P<model>\d+) (?P<context>\d+) (?P<compute>\d+) ?$")
_FITTED = re.compile(r"^-c (?P<ctx>\d+) -ngl (?P<ngl>-?\d+)(?P<rest>.*)$")


@dataclass(frozen=True)
class FitDevice:
    name: str  # a device (MTL0, CUDA0, …) or Host
    model_mib: int
    context_mib: int
    compute_mib: int


@dataclass(frozen=True)
class UpstreamFit:
    """What llama-fit-params said; ``error`` says why a part is missing ('' when all is there)."""

    program: str
    args: tuple[str, ...]  # the parameters both runs got (after the program)
    devices: tuple[FitDevice, ...] = ()
    fitted: str = ""  # the fitted CLI arguments, e.g. "-c 4096 -ngl 33"
    fitted_ctx: int | None = None
    fitted_ngl: int | None = None
    error: str = ""

    def total_mib(self, part: str) -> int:
        return sum(int(getattr(d, f"{part}_mib")) for d in self.devices)


def find_program(build: Path | None) -> Path | None:
    """llama-fit-params in a build dir (``bin/``), beside a given binary, or None."""
    if build is None:
        return None
    base = build if build.is_dir() else build.parent
    for candidate in (c for name in FIT_PARAMS for c in (base / "bin" / name, base / name)):
        if candidate.is_file():
            return candidate
    return None


def fit_args(gguf: Path, params: RunParams, n_ctx: int) -> list[str]:
    """The run's parameters as llama.cpp's common arguments (the ones the memory plan used)."""
    args = ["-m", str(gguf), "-c", str(n_ctx)]
    if params.n_gpu_layers is not None:
        args += ["-ngl", str(params.n_gpu_layers)]
    if params.cache_type_k:
        args += ["-ctk", params.cache_type_k]
    if params.cache_type_v:
        args += ["-ctv", params.cache_type_v]
    if params.n_ubatch:
        args += ["-ub", str(params.n_ubatch)]
    if params.flash_attn is not None:
        args += ["-fa", "on" if params.flash_attn else "off"]
    return args


def parse_memory(lines: list[str] | tuple[str, ...]) -> tuple[FitDevice, ...]:
    out = []
    for line in lines:
        m = _MEMORY_LINE.match(line)
        if m:
            out.append(FitDevice(m["name"], int(m["model"]), int(m["context"]), int(m["compute"])))
    return tuple(out)


def parse_fitted(lines: list[str] | tuple[str, ...]) -> tuple[str, int | None, int | None]:
    for line in reversed(lines):
        m = _FITTED.match(line.strip())
        if m:
            return line.strip(), int(m["ctx"]), int(m["ngl"])
    return "", None, None


def run_fit_params(program: Path, args: list[str], log_path: Path) -> UpstreamFit:
    """Both runs of ``program``; a failure of either is recorded in ``error``, never raised."""
    log_path.unlink(missing_ok=True)
    errors = []
    devices: tuple[FitDevice, ...] = ()
    fitted, ctx, ngl = "", None, None
    try:
        shown = stream(
            [str(program), *args, "--fit-print", "on"],
            log_path=log_path,
            timeout=TIMEOUT,
            max_output=MAX_OUTPUT,
        )
        devices = parse_memory(shown.tail)
        if shown.returncode != 0 or not devices:
            errors.append(f"--fit-print gave no estimate (exit {shown.returncode}): {_last(shown.tail)}")
        fit = stream([str(program), *args], log_path=log_path, timeout=TIMEOUT, max_output=MAX_OUTPUT)
        fitted, ctx, ngl = parse_fitted(fit.tail)
        if fit.returncode != 0 or not fitted:
            errors.append(f"no fitted arguments (exit {fit.returncode}): {_last(fit.tail)}")
    except OSError as exc:
        errors.append(f"cannot run {program}: {exc.strerror or exc}")
    return UpstreamFit(str(program), tuple(args), devices, fitted, ctx, ngl, "; ".join(errors))


def _last(lines: tuple[str, ...]) -> str:
    return next((line for line in reversed(lines) if line.strip()), "no output")


# --- side by side ------------------------------------------------------------------------------
MiB = 1 << 20
# A part differs when the answers are this far apart (relative and absolute: small models round).
DIFF_FRACTION = 0.10
DIFF_MIB = 16

WHY = {
    "model": "our weights are the GGUF's tensor data; theirs the buffers llama.cpp would allocate "
    "(weights memory-mapped from the file on the host count 0; alignment padding, weights repacked "
    "for this CPU, the output layer kept on the host)",
    "context": "theirs is the memory module as allocated (the KV cache padded to 256 cells per "
    "sequence, recurrent state for such models); ours the KV formula",
    "compute": "our compute buffer is a formula for one ubatch; theirs the scheduler's reservation "
    "for the real prompt and generation graphs",
}


def side_by_side(
    fit: UpstreamFit, *, weights: int, kv: int, compute: int, n_ctx: int, budget_text: str, largest: str
) -> tuple[str, ...]:
    """Evidence lines: both estimates, where they differ and why, and both answers to what fits."""
    if not fit.devices and not fit.fitted:
        return (f"llama-fit-params could not answer: {fit.error}",)
    lines = []
    ours = {"model": weights // MiB, "context": kv // MiB, "compute": compute // MiB}
    if fit.devices:
        theirs = {part: fit.total_mib(part) for part in ours}
        where = "; ".join(f"{d.name} {d.model_mib}+{d.context_mib}+{d.compute_mib}" for d in fit.devices)
        lines.append(
            f"at -c {n_ctx}, MiB model + context + compute: ours {ours['model']} + {ours['context']} + "
            f"~{ours['compute']} = {sum(ours.values())}; llama-fit-params {theirs['model']} + "
            f"{theirs['context']} + {theirs['compute']} = {sum(theirs.values())} ({where})"
        )
        for part, mine in ours.items():
            gap = theirs[part] - mine
            if abs(gap) > max(DIFF_MIB, DIFF_FRACTION * max(mine, theirs[part])):
                lines.append(f"{part} differs by {gap:+d} MiB: {WHY[part]}")
    if fit.fitted:
        gpu = [d for d in fit.devices if d.name != "Host"]
        why = (
            "this build has no GPU device, so there is nothing for it to fit: it keeps the parameters"
            if fit.devices and not gpu
            else "it fits the free memory of each device now, minus a margin (--fit-target, 1024 MiB)"
        )
        lines.append(
            f"what fits: llama-fit-params {fit.fitted} ({why}); ours {largest} ({budget_text}, "
            "whatever else runs)"
        )
    if fit.error:
        lines.append(f"llama-fit-params: {fit.error}")
    return tuple(lines)
