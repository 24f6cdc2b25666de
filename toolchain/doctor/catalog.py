"""The failure catalog as data: twelve classes in the Apple Silicon diagnostic order.

The classes of the README's doctor table. Each class has a stable ``id`` (the JSON name),
its ``order`` (most likely first), a title, the fix, and the log patterns that show it.

Patterns come from three places (``origin``):

- ``tree``: a format string in the llama.cpp tree (file in ``sources``). The drift guard
  (:mod:`toolchain.doctor.drift`) renders the tree's format strings and fails when ``drift_regex``
  (default: ``regex``) no longer matches any of them.
- ``legacy``: printed by older trees only; ``seen_in`` names where (``0.3.20`` is checked against
  that tree by the tests; ``ggml-metal.m`` is the 2023-2024 single-file Metal backend, whose
  ``ggml_metal_init:`` lines users still paste).
- ``system``: not a format string of the tree: macOS / Metal framework / dyld / shell output, or
  values (device and buffer names) filled into the tree's format strings; ``drift_regex`` then
  checks the surrounding format string where there is one.

Every pattern has ``keywords``: literals, one of which every line it matches contains. The
classifier searches for keywords first (fast, in blocks) and runs regexes only on those lines.

Severity: ``error`` (the run failed or will), ``warning`` (runs, degraded), ``info`` (an
observation: a finding only as part of a ``Combination``, otherwise a recorded fact). ``weight``
is how strongly one line points at the class; a finding's confidence combines its distinct
patterns' weights. ``explained_by`` drops a match when one of the named patterns matched too
(the generic "command buffer failed" line is a memory problem when the OOM line follows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Literal

from .findings import Severity

Origin = Literal["tree", "legacy", "system"]


@dataclass(frozen=True)
class Pattern:
    id: str
    regex: str
    keywords: tuple[str, ...]  # literals: every matching line contains at least one of them
    severity: Severity
    weight: float
    origin: Origin
    sources: tuple[str, ...] = ()
    seen_in: str = ""  # legacy patterns: "0.3.20" or "ggml-metal.m"
    drift_regex: str = ""  # what the drift guard matches against the tree (default: regex)
    explained_by: tuple[str, ...] = ()
    when: str = ""  # name of a predicate on the match (classify.PREDICATES), e.g. a threshold
    note: str = ""

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.regex)

    @property
    def checked_regex(self) -> str:
        """The regex the drift guard checks against the current tree ('' = not checked there)."""
        if self.drift_regex:
            return self.drift_regex
        return self.regex if self.origin == "tree" else ""


@dataclass(frozen=True)
class Combination:
    """When all ``requires`` patterns matched, the class is a finding of ``severity``."""

    requires: tuple[str, ...]
    severity: Severity
    weight: float
    reason: str


@dataclass(frozen=True)
class FailureClass:
    id: str
    order: int
    title: str
    how_it_shows: str
    fix: str
    patterns: tuple[Pattern, ...]
    combinations: tuple[Combination, ...] = ()


def _p(
    id: str,
    regex: str,
    keyword: str,  # "a|b": alternatives
    severity: Severity,
    weight: float,
    origin: Origin,
    *sources: str,
    seen_in: str = "",
    drift_regex: str = "",
    explained_by: tuple[str, ...] = (),
    when: str = "",
    note: str = "",
) -> Pattern:
    return Pattern(
        id=id,
        regex=regex,
        keywords=tuple(keyword.split("|")),
        severity=severity,
        weight=weight,
        origin=origin,
        sources=sources,
        seen_in=seen_in,
        drift_regex=drift_regex,
        explained_by=explained_by,
        when=when,
        note=note,
    )


_METAL_DEV = "ggml/src/ggml-metal/ggml-metal-device.m"
_METAL_CTX = "ggml/src/ggml-metal/ggml-metal-context.m"
_METAL_OPS = "ggml/src/ggml-metal/ggml-metal-ops.cpp"
_METAL_CPP = "ggml/src/ggml-metal/ggml-metal.cpp"
_GGUF = "ggml/src/gguf.cpp"
_LOADER = "src/llama-model-loader.cpp"
_CONTEXT = "src/llama-context.cpp"

_UNKNOWN_ARCH = (
    "architecture-too-new.unknown-arch",
    "architecture-too-new.wrong-tensor-count",
    "architecture-too-new.tensor-not-found",
    "architecture-too-new.wrong-shape",
    "architecture-too-new.unknown-pre-tokenizer",
)
_GGUF_SPECIFIC = (
    "gguf-format.invalid-magic",
    "gguf-format.v1",
    "gguf-format.version-too-new",
    "gguf-format.bad-version",
    "gguf-format.out-of-bounds",
    "gguf-format.pre-gguf-loader",
    "gguf-format.read-failed",
)
_MEMORY_ERRORS = (
    "memory.cb-oom",
    "memory.metal-buffer",
    "memory.metal-buffer-oom",
    "memory.galloc",
    "memory.kv-cache",
    "memory.compute-buffers",
    "memory.legacy-metal-buffer",
)

_METAL_LIBRARY_ERRORS = (
    "metal-library.failed-init",
    "metal-library.cocoa-file",
    "metal-library.compile-error",
    "metal-library.source-compile",
    "metal-library.source-missing",
)
# A device that cannot run the main kernels: graph splits are its consequence, not the cause.
_WEAK_DEVICE = (
    "no-usable-device.paravirtual",
    "no-usable-device.old-family",
    "no-usable-device.no-simdgroup-reduction",
)

CLASSES: tuple[FailureClass, ...] = (
    FailureClass(
        id="memory",
        order=1,
        title="context / KV cache too large for unified memory",
        how_it_shows=(
            "crash only at long contexts; Metal buffer allocation fails; command buffer out of memory"
        ),
        fix=(
            "lower -c to the largest context that fits (weights + KV cache + compute buffer <= ~70% of "
            "unified memory / recommendedMaxWorkingSetSize: run `llama-toolchain doctor --gguf MODEL` for "
            "the number); quantize the KV cache (-ctk q8_0 -ctv q8_0, needs flash attention); fewer -ngl; "
            "smaller -ub"
        ),
        patterns=(
            _p(
                "memory.cb-oom",
                r"kIOGPUCommandBufferCallbackErrorOutOfMemory|error: Insufficient Memory",
                "rror",
                "error",
                0.95,
                "system",
                _METAL_CTX,
                note=(
                    "the Metal framework's error text, printed after 'command buffer N failed with status 5'"
                ),
            ),
            _p(
                "memory.metal-buffer",
                r"failed to allocate buffer, size =\s*[\d.]+ MiB",
                "fail",
                "error",
                0.9,
                "tree",
                _METAL_DEV,
            ),
            _p(
                "memory.metal-buffer-oom",
                r"failed to allocate Metal buffer of \d+ bytes \(out of memory\)",
                "fail",
                "error",
                0.9,
                "tree",
                _METAL_CPP,
            ),
            _p(
                "memory.galloc",
                r"failed to allocate \S+ buffer of size \d+",
                "fail",
                "error",
                0.85,
                "tree",
                "ggml/src/ggml-alloc.c",
            ),
            _p(
                "memory.backend-buffer",
                r"failed to allocate buffer of size \d+",
                "fail",
                "error",
                0.6,
                "tree",
                "ggml/src/ggml-backend.cpp",
            ),
            _p(
                "memory.kv-cache",
                r"failed to allocate buffer for kv cache",
                "fail",
                "error",
                0.95,
                "tree",
                "src/llama-kv-cache.cpp",
            ),
            _p(
                "memory.compute-buffers",
                r"failed to allocate compute (?:pp |tg )?buffers",
                "fail",
                "error",
                0.8,
                "tree",
                _CONTEXT,
            ),
            _p(
                "memory.host-alloc",
                r"error: (?:vm_allocate|posix_memalign) failed",
                "fail",
                "error",
                0.6,
                "tree",
                _METAL_DEV,
            ),
            _p(
                "memory.working-set",
                r"current allocated size is greater than the recommended max working set size",
                "ize",
                "warning",
                0.7,
                "tree",
                _METAL_DEV,
            ),
            _p(
                "memory.legacy-metal-buffer",
                r"failed to allocate '[^']*' buffer, size =",
                "fail",
                "error",
                0.9,
                "legacy",
                seen_in="ggml-metal.m",
                note=(
                    "ggml_metal_add_buffer: error: failed to allocate 'data            ' buffer, size = "
                    "... MB"
                ),
            ),
            _p(
                "memory.recommended-working-set",
                r"recommendedMaxWorkingSetSize\s*=\s*(?P<value>[\d.]+) MB",
                "ize",
                "info",
                0.0,
                "tree",
                _METAL_DEV,
                note="a fact: the device's working-set budget, used by the memory planner",
            ),
        ),
    ),
    FailureClass(
        id="gguf-format",
        order=2,
        title="GGUF too old, damaged, or not GGUF",
        how_it_shows="fails before inference while reading the model file",
        fix=(
            "re-download a current GGUF, or reconvert from the original weights with the tree's "
            "convert_hf_to_gguf.py; a pre-GGUF ggml/ggjt file must be reconverted (or migrated with "
            "convert_llama_ggml_to_gguf.py); a truncated file must be downloaded again"
        ),
        patterns=(
            _p(
                "gguf-format.invalid-magic",
                r"invalid magic characters",
                "magic",
                "error",
                0.95,
                "tree",
                _GGUF,
            ),
            _p(
                "gguf-format.pre-gguf-magic",
                r"invalid magic characters:? '(?:tjgg|lmgg|fmgg|algg)'",
                "magic",
                "error",
                0.97,
                "system",
                _GGUF,
                drift_regex=r"invalid magic characters",
                note="ggjt/ggml/ggmf/ggla magics read as little-endian characters: a pre-GGUF file",
            ),
            _p("gguf-format.v1", r"GGUFv1 is no longer supported", "GG", "error", 0.97, "tree", _GGUF),
            _p(
                "gguf-format.version-too-new",
                r"this GGUF file is version \d+ but this software only supports up to version \d+",
                "GG",
                "error",
                0.95,
                "tree",
                _GGUF,
            ),
            _p(
                "gguf-format.bad-version",
                r"bad GGUF version: \d+|GGUF file version \d+ is extremely large",
                "GG",
                "error",
                0.9,
                "tree",
                _GGUF,
            ),
            _p(
                "gguf-format.read-failed",
                r"gguf\w*: failed to read (?:magic|header|key-value pairs|tensor info|tensor data)|"
                r"failed to read tensor data binary blob",
                "fail",
                "error",
                0.8,
                "tree",
                _GGUF,
                drift_regex=r"failed to read (?:magic|tensor info)",
            ),
            _p(
                "gguf-format.out-of-bounds",
                r"data is not within the file bounds, model is corrupted or incomplete",
                "not ",
                "error",
                0.95,
                "tree",
                "src/llama-model-loader.h",
            ),
            _p(
                "gguf-format.pre-gguf-loader",
                r"unknown \(magic, version\) combination: [0-9a-f]+, [0-9a-f]+; is this really a GGML file\?",
                "magic",
                "error",
                0.95,
                "legacy",
                seen_in="llama.cpp before GGUF (2023)",
            ),
            _p(
                "gguf-format.failed-to-load",
                r"error loading model: |failed to load model",
                "model",
                "error",
                0.3,
                "tree",
                "src/llama.cpp",
                explained_by=(*_UNKNOWN_ARCH, *_GGUF_SPECIFIC, *_MEMORY_ERRORS),
                note="generic: counts only when nothing more specific explains it",
            ),
        ),
    ),
    FailureClass(
        id="no-metal-build",
        order=3,
        title="built without Metal",
        how_it_shows="runs, but slowly: no Metal device lines, 0 layers offloaded, CPU buffers",
        fix=(
            "rebuild with -DGGML_METAL=ON (`llama-toolchain build --profile metal`), then "
            "`llama-toolchain verify`; check that the deployment target is not newer than the running macOS"
        ),
        patterns=(
            _p(
                "no-metal-build.no-usable-gpu",
                r"no usable GPU found, --gpu-layers(?:-draft)? option will be ignored|"
                r"llama\.cpp was compiled without GPU support",
                "GPU",
                "warning",
                0.9,
                "tree",
                "common/arg.cpp",
            ),
            _p(
                "no-metal-build.legacy-not-compiled",
                r"not compiled with GPU offload support, --(?:n-)?gpu-layers option will be ignored",
                "GPU",
                "warning",
                0.9,
                "legacy",
                seen_in="ggml-metal.m",
            ),
            _p(
                "no-metal-build.offloaded-zero",
                r"offloaded 0/\d+ layers to GPU",
                "GPU",
                "warning",
                0.5,
                "tree",
                "src/llama-model.cpp",
                drift_regex=r"offloaded \d+/\d+ layers to GPU",
                explained_by=("no-metal-build.metal-device", "no-metal-build.metal-buffer"),
                when="gpu_layers_requested",
                note="only a problem when no Metal device showed up (else it is -ngl 0)",
            ),
            _p(
                "no-metal-build.metal-device",
                r"GPU name:\s+\S",
                "GPU",
                "info",
                0.0,
                "tree",
                _METAL_DEV,
                note="a fact: the Metal backend initialised a device",
            ),
            _p(
                "no-metal-build.metal-buffer",
                r"\b(?:Metal|MTL\d+)(?:_Mapped)? (?:model |KV |compute )?buffer size",
                "ize",
                "info",
                0.0,
                "system",
                "src/llama-model.cpp",
                drift_regex=r"model buffer size = ",
                note="a fact: buffers on the Metal device (buffer type names filled into the format)",
            ),
        ),
    ),
    FailureClass(
        id="unsupported-op",
        order=4,
        title="an op or tensor shape the Metal kernels cannot run",
        how_it_shows="aborts at the first token with 'unsupported op', or runs slowly with many graph splits "
        "and ops (flash attention) assigned to the CPU",
        fix=(
            "update llama.cpp (Metal coverage lags CUDA for new architectures) and check the model's "
            "upstream "
            "PR; run `llama-toolchain coverage` for this architecture to see which ops fall back; for flash "
            "attention use a supported head size and the same K and V cache types"
        ),
        patterns=(
            _p(
                "unsupported-op.unsupported-op",
                r"unsupported op '[^']*'",
                "upport",
                "error",
                0.95,
                "tree",
                _METAL_OPS,
            ),
            _p(
                "unsupported-op.not-implemented",
                r"node\s+\d+, op =\s*\S+ not implemented",
                "not ",
                "error",
                0.9,
                "tree",
                _METAL_OPS,
            ),
            _p(
                "unsupported-op.fused-disabled",
                r": .+ not supported, set to disabled",
                "upport",
                "warning",
                0.6,
                "tree",
                _CONTEXT,
            ),
            _p(
                "unsupported-op.fa-disabled",
                r"Flash Attention was auto, set to disabled",
                "disabled",
                "warning",
                0.6,
                "legacy",
                _CONTEXT,
                seen_in="0.3.20",
            ),
            _p(
                "unsupported-op.missing-support",
                r"is assigned to device \S+ \(usually due to missing support\)",
                "upport",
                "warning",
                0.6,
                "tree",
                _CONTEXT,
            ),
            _p(
                "unsupported-op.graph-splits",
                r"graph(?: \(pp bs=\d+, tg bs=\d+\))?: nodes = [\d /]+, splits = (?P<value>\d+)",
                "split",
                "warning",
                0.5,
                "tree",
                _CONTEXT,
                when="many_splits",
                explained_by=_WEAK_DEVICE,
                drift_regex=r"graph\w*: nodes = \S+, splits = ",
            ),
            _p(
                "unsupported-op.legacy-graph-splits",
                r"graph splits = (?P<value>\d+)",
                "split",
                "warning",
                0.5,
                "legacy",
                _CONTEXT,
                seen_in="0.3.20",
                when="many_splits",
                explained_by=_WEAK_DEVICE,
            ),
        ),
    ),
    FailureClass(
        id="other-gpu-users",
        order=5,
        title="other processes hold GPU / wired memory",
        how_it_shows=(
            "allocation failures or OOM that vanish when GPU-heavy apps close; device shows little free"
        ),
        fix=(
            "close GPU-heavy apps (browsers with many tabs, other model servers, video/3D apps); on a "
            "server make "
            "sure no idle Metal process holds memory; `sudo sysctl iogpu.wired_limit_mb=...` raises the "
            "wired "
            "limit (at the system's risk)"
        ),
        patterns=(
            _p(
                "other-gpu-users.device-mostly-used",
                r"\((?P<total>\d+) MiB, (?P<free>\d+) MiB free\)",
                "free",
                "warning",
                0.6,
                "tree",
                "common/arg.cpp",
                when="device_mostly_used",
            ),
        ),
    ),
    FailureClass(
        id="metal-library",
        order=6,
        title="Metal library missing or not loadable",
        how_it_shows=(
            "default.metallib not found, source compile errors, 'failed to initialize the Metal library'"
        ),
        fix=(
            "build with -DGGML_METAL_EMBED_LIBRARY=ON (the metal profile does), or keep default.metallib "
            "beside "
            "the binary / set GGML_METAL_PATH_RESOURCES; after an OS or SDK update, rebuild"
        ),
        patterns=(
            _p(
                "metal-library.failed-init",
                r"failed to initialize the Metal library",
                "fail",
                "error",
                0.95,
                "tree",
                _METAL_CTX,
            ),
            _p(
                "metal-library.no-precompiled",
                r"the device does not have a precompiled Metal library",
                "etal",
                "warning",
                0.6,
                "tree",
                _METAL_CTX,
            ),
            _p(
                "metal-library.cocoa-file",
                r"Error Domain=NSCocoaErrorDomain Code=2(?:58|60)",
                "rror",
                "error",
                0.9,
                "system",
                _METAL_DEV,
            ),
            _p(
                "metal-library.compile-error",
                r"MTLLibraryErrorDomain Code=\d+",
                "rror",
                "error",
                0.85,
                "system",
                _METAL_DEV,
            ),
            _p(
                "metal-library.source-compile",
                r"error compiling source|failed to create Metal library from source|failed to build "
                r"'[^']*' library",
                "source|fail",
                "error",
                0.9,
                "tree",
                _METAL_DEV,
                drift_regex=r"error compiling source",
            ),
            _p(
                "metal-library.source-missing",
                r"source is NULL|failed to create NSString from source",
                "source",
                "error",
                0.8,
                "tree",
                _METAL_DEV,
            ),
            _p(
                "metal-library.kernel-not-found",
                r"kernel not found in any metal library",
                "not ",
                "error",
                0.8,
                "tree",
                _METAL_DEV,
            ),
            _p(
                "metal-library.nil-pipeline",
                r"nil Metal pipeline",
                "ipeline",
                "error",
                0.8,
                "tree",
                _METAL_DEV,
            ),
            _p(
                "metal-library.pipeline-compile",
                r"failed to compile pipeline|failed to create pipeline state",
                "fail",
                "error",
                0.6,
                "tree",
                _METAL_DEV,
                explained_by=("no-usable-device.sc-compilation",),
            ),
            _p(
                "metal-library.not-found-source",
                r"default\.metallib not found, loading (?:kernel sources|from source)",
                "etal",
                "info",
                0.4,
                "tree",
                _METAL_DEV,
                drift_regex=r"default\.metallib not found",
            ),
            _p(
                "metal-library.resources-nil",
                r"GGML_METAL_PATH_RESOURCES = nil",
                "GG",
                "info",
                0.3,
                "legacy",
                _METAL_DEV,
                seen_in="ggml-metal.m",
                drift_regex=r"GGML_METAL_PATH_RESOURCES = ",
                note=(
                    "0.3.20 still printed 'nil' as the %s argument; 0.3.36 prints the line only when it "
                    "is set"
                ),
            ),
            _p(
                "metal-library.not-in-bundle",
                r"could not locate \S+ in bundle, falling back to cwd",
                "not ",
                "info",
                0.3,
                "tree",
                _METAL_DEV,
            ),
        ),
        combinations=(
            Combination(
                ("metal-library.not-found-source", "metal-library.cocoa-file"),
                "error",
                0.95,
                "default.metallib is missing and the kernel source could not be read either",
            ),
        ),
    ),
    FailureClass(
        id="no-usable-device",
        order=7,
        title="no usable Metal device (VM / paravirtual, Intel or AMD GPU)",
        how_it_shows=(
            "'Apple Paravirtual device', an old GPU family, no simdgroup reduction, context allocation fails"
        ),
        fix=(
            "results on this device are unverifiable: use a real Apple Silicon Mac (a self-hosted runner "
            "or a "
            "developer machine); `-ngl 0` runs on the CPU meanwhile"
        ),
        patterns=(
            _p(
                "no-usable-device.paravirtual",
                r"Apple Paravirtual device",
                "Paravirtual",
                "warning",
                0.9,
                "system",
                _METAL_DEV,
                drift_regex=r"GPU name:\s+X",
            ),
            _p(
                "no-usable-device.old-family",
                r"GPU family: MTLGPUFamilyApple[1-6]\b",
                "GPU",
                "warning",
                0.6,
                "system",
                _METAL_DEV,
                drift_regex=r"GPU family: MTLGPUFamilyApple\d+",
            ),
            _p(
                "no-usable-device.no-simdgroup-reduction",
                r"simdgroup reduction(?: support)?\s*= false",
                "simdgroup",
                "warning",
                0.7,
                "system",
                _METAL_DEV,
                drift_regex=r"simdgroup reduction\s*= ",
            ),
            _p(
                "no-usable-device.not-apple-gpu",
                r"GPU name:\s+(?:MTL\d+ \()?(?:AMD|Intel|Radeon)",
                "GPU",
                "warning",
                0.7,
                "system",
                _METAL_DEV,
                drift_regex=r"GPU name:\s+X",
            ),
            _p(
                "no-usable-device.no-context",
                r"error: failed to allocate context$",
                "fail",
                "error",
                0.7,
                "tree",
                _METAL_CPP,
                explained_by=_METAL_LIBRARY_ERRORS,
            ),
            _p(
                "no-usable-device.no-queue",
                r"error: failed to create command queue",
                "fail",
                "error",
                0.7,
                "tree",
                _METAL_CTX,
            ),
            _p("no-usable-device.sc-compilation", r"SC compilation failure", "fail", "error", 0.8, "system"),
        ),
    ),
    FailureClass(
        id="architecture-too-new",
        order=8,
        title="model architecture newer than the build",
        how_it_shows="'unknown model architecture', wrong number of tensors, a tensor not found",
        fix=(
            "update the pin (`llama-toolchain update`) to a llama.cpp that knows this architecture, "
            "rebuild, and "
            "reconvert with the matching convert_hf_to_gguf.py"
        ),
        patterns=(
            _p(
                "architecture-too-new.unknown-arch",
                r"unknown model architecture: '",
                "model",
                "error",
                0.95,
                "tree",
                "src/llama-model.cpp",
            ),
            _p(
                "architecture-too-new.wrong-tensor-count",
                r"wrong number of tensors; expected \d+, got \d+",
                "tensor",
                "error",
                0.85,
                "tree",
                _LOADER,
            ),
            _p(
                "architecture-too-new.tensor-not-found",
                r"tensor '[^']*' not found",
                "tensor",
                "error",
                0.8,
                "tree",
                _LOADER,
            ),
            _p(
                "architecture-too-new.wrong-shape",
                r"tensor '[^']*' has wrong shape; expected",
                "tensor",
                "error",
                0.7,
                "tree",
                _LOADER,
            ),
            _p(
                "architecture-too-new.unknown-pre-tokenizer",
                r"unknown pre-tokenizer type: '",
                "unknown",
                "error",
                0.85,
                "tree",
                "src/llama-vocab.cpp",
            ),
        ),
    ),
    FailureClass(
        id="bf16-unsupported",
        order=9,
        title="bf16 on a device without bfloat",
        how_it_shows=(
            "'has bfloat = false' with bf16 tensors in the model; bf16 kernels skipped or ops rejected"
        ),
        fix=(
            "use f16 (or quantized) weights: reconvert with --outtype f16, or run on a newer chip (M2 or "
            "later)"
        ),
        patterns=(
            _p(
                "bf16-unsupported.no-bfloat",
                r"has bfloat\s*= false",
                "bf",
                "info",
                0.3,
                "system",
                _METAL_DEV,
                drift_regex=r"has bfloat\s*= ",
            ),
            _p(
                "bf16-unsupported.model-bf16",
                r"- type\s+bf16:\s+\d+ tensors|file type\s+= BF16",
                "bf|BF16",
                "info",
                0.2,
                "system",
                _LOADER,
                drift_regex=r"- type\s+\S+:\s+\d+ tensors",
            ),
            _p(
                "bf16-unsupported.legacy-skipped",
                r"skipping kernel_\w*bf16\w*\s*\(not supported\)",
                "bf",
                "info",
                0.3,
                "legacy",
                seen_in="ggml-metal.m",
            ),
        ),
        combinations=(
            Combination(
                ("bf16-unsupported.no-bfloat", "bf16-unsupported.model-bf16"),
                "error",
                0.9,
                "the model has bf16 tensors and the GPU reports no bfloat support",
            ),
            Combination(
                ("bf16-unsupported.legacy-skipped", "bf16-unsupported.model-bf16"),
                "error",
                0.85,
                "the model has bf16 tensors and the Metal bf16 kernels were skipped",
            ),
        ),
    ),
    FailureClass(
        id="gpu-command-buffer",
        order=10,
        title="GPU command buffer errors that poison the backend",
        how_it_shows="command buffer failed (timeout, impacting interactivity, submissions ignored); "
        "'backend is in error state'",
        fix=(
            "use smaller batches (-ub 256 or lower), restart the process; keep the display GPU otherwise idle"
        ),
        patterns=(
            _p(
                "gpu-command-buffer.failed",
                r"command buffer \d+ failed with status \d+",
                "command",
                "error",
                0.6,
                "tree",
                _METAL_CTX,
                explained_by=("memory.cb-oom",),
            ),
            _p(
                "gpu-command-buffer.aborted",
                r"command buffer \d+ aborted",
                "command",
                "error",
                0.5,
                "tree",
                _METAL_CTX,
            ),
            _p(
                "gpu-command-buffer.interactivity",
                r"kIOGPUCommandBufferCallbackErrorImpactingInteractivity",
                "rror",
                "error",
                0.9,
                "system",
            ),
            _p(
                "gpu-command-buffer.submissions-ignored",
                r"kIOGPUCommandBufferCallbackErrorSubmissionsIgnored",
                "rror",
                "error",
                0.9,
                "system",
            ),
            _p(
                "gpu-command-buffer.timeout",
                r"kIOGPUCommandBufferCallbackError(?:Timeout|Hang)",
                "rror",
                "error",
                0.85,
                "system",
            ),
            _p(
                "gpu-command-buffer.error-state",
                r"backend is in error state from a previous command buffer failure",
                "rror",
                "error",
                0.9,
                "tree",
                _METAL_CTX,
            ),
        ),
    ),
    FailureClass(
        id="build-toolchain",
        order=11,
        title="build-time toolchain problem",
        how_it_shows=(
            "'unable to find utility \"metal\"' (Command Line Tools only); binary built for a newer macOS"
        ),
        fix=(
            "install full Xcode and `sudo xcode-select --switch /Applications/Xcode.app`, or build with "
            "GGML_METAL_EMBED_LIBRARY=ON (no metal compiler needed); build with "
            "CMAKE_OSX_DEPLOYMENT_TARGET not "
            "newer than the macOS it runs on"
        ),
        patterns=(
            _p(
                "build-toolchain.no-metal-utility",
                r"unable to find utility \"metal(?:lib)?\"",
                "etal",
                "error",
                0.95,
                "system",
            ),
            _p(
                "build-toolchain.xcode-required",
                r"xcode-select: error: tool '\w+' requires Xcode",
                "rror",
                "error",
                0.9,
                "system",
            ),
            _p(
                "build-toolchain.newer-os",
                r"built for macOS [\d.]+ which is newer than running OS",
                "newer",
                "error",
                0.9,
                "system",
            ),
            _p(
                "build-toolchain.symbol-not-found",
                r"Symbol not found: _?(?:_OBJC_CLASS_\$_)?MTL\w*",
                "not ",
                "error",
                0.85,
                "system",
            ),
            _p(
                "build-toolchain.library-not-loaded",
                r"Library not loaded: \S*libggml",
                "not ",
                "error",
                0.7,
                "system",
            ),
            _p(
                "build-toolchain.sdk-too-old",
                r"error: (?:unknown type name|use of undeclared identifier) '(?:MTL|_MTL)\w*'",
                "rror",
                "error",
                0.7,
                "system",
            ),
        ),
    ),
    FailureClass(
        id="crash",
        order=12,
        title="hard crash (signal, assertion, abort)",
        how_it_shows="SIGSEGV / SIGABRT / SIGBUS, GGML_ASSERT, GGML_ABORT, an uncaught exception",
        fix=(
            "keep the last log lines and the op being encoded (GGML_METAL_GRAPH_DEBUG=1, -v); the "
            "findings above "
            "name the cause when one was recognised; otherwise report it upstream with the log"
        ),
        patterns=(
            _p(
                "crash.ggml-assert",
                r"GGML_ASSERT\(.*\) failed",
                "GG",
                "error",
                0.9,
                "tree",
                "ggml/include/ggml.h",
            ),
            _p(
                "crash.legacy-ggml-assert",
                r"GGML_ASSERT: \S+:\d+: ",
                "GG",
                "error",
                0.9,
                "legacy",
                seen_in="ggml-metal.m",
            ),
            _p(
                "crash.ggml-abort",
                r"\bggml[\w/.-]*\.(?:c|cpp|m|mm|h):\d+: \S",
                "ggml",
                "error",
                0.7,
                "tree",
                "ggml/src/ggml.c",
                drift_regex=r"^\S+:\d+: $",
                explained_by=("crash.ggml-assert",),
                note="GGML_ABORT prints 'file:line: message'",
            ),
            _p(
                "crash.signal",
                r"\b(?:SIGSEGV|SIGABRT|SIGBUS|SIGILL|SIGFPE)\b|Segmentation fault|Abort trap|Bus error|"
                r"Illegal instruction|(?:zsh|bash): (?:abort|segmentation fault|bus error)",
                "SIG|fault|bort|Bus error|Illegal",
                "error",
                0.9,
                "system",
            ),
            _p(
                "crash.uncaught",
                r"terminating due to uncaught exception|terminate called after throwing",
                "terminat",
                "error",
                0.7,
                "system",
            ),
        ),
    ),
)

BY_ID: Mapping[str, FailureClass] = MappingProxyType({c.id: c for c in CLASSES})
PATTERNS: Mapping[str, Pattern] = MappingProxyType({p.id: p for c in CLASSES for p in c.patterns})
