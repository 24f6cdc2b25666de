"""What the coverage matrix needs to know about each backend, as data.

The names, devices, capabilities and placement kinds come from :mod:`toolchain.profiles`; this
module turns them into how to put a model on the backend and how to keep the CPU-only reference
off it:

- ``gpu`` backends (Metal, Vulkan, CUDA) take layers with ``-ngl 99 -dev NAME``; the reference
  runs with ``-dev none -ngl 0``; a compute node the scheduler gives the CPU is a fallback.
- ``accel`` backends (BLAS) are always added by llama.cpp next to the CPU and take only the ops
  their ``supports_op`` accepts (BLAS: MUL_MAT with every dimension >= 32). The reference keeps
  them idle with micro-batches below that size (``reference_ubatch``); CPU nodes are the design,
  not a fallback — but a device run in which the backend got no node at all is one.
- ``cpu``: the reference itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...core import tree
from ...profiles import PROFILES

Kind = Literal["cpu", "accel", "gpu"]
# Micro-batch size that keeps every accel backend we know off the reference run (BLAS: 32 -> 16).
REFERENCE_UBATCH = min(p.min_batch for p in PROFILES.values() if p.placement == "accel") // 2


@dataclass(frozen=True)
class CoverageBackend:
    name: str  # test-backend-ops -b name: CPU, BLAS, MTL0, Vulkan0, CUDA0
    profile: str
    kind: Kind
    # Smallest batch at which the backend takes work (accel backends); the prompt must be longer.
    min_batch: int = 0
    # Prefix of the backend's name in the scheduler's debug lines (tree.SCHED_NAME_WIDTH).
    sched_prefix: str = ""

    @property
    def needs_device_class(self) -> bool:
        """Verdicts on this backend need verify's device class (a GPU can be a VM's)."""
        return bool(PROFILES[self.profile].device.required_capabilities) or self.kind == "gpu"

    def device_args(self, runner_flags: tuple[str, ...] = ()) -> tuple[str, ...]:
        if self.kind == "gpu":
            return ("-ngl", "99", "-dev", self.name)
        if self.kind == "accel":
            # The CPU's extra buffer types (AMX on recent Xeons, the repacked layouts on ARM/x86)
            # take the matrix weights when the host has them, and only the CPU backend can read
            # those buffers: BLAS would then get no node at all, on this host only. `--no-repack`
            # keeps the weights in plain host memory, which the accelerator reads.
            return ("-ngl", "99", *(("--no-repack",) if "--no-repack" in runner_flags else ()))
        return reference_args()


def reference_args(whole_prompt: bool = False) -> tuple[str, ...]:
    """CPU-only placement. ``whole_prompt``: encoder models need the prompt in one ubatch
    (llama-context.cpp: "encoder requires n_ubatch >= n_tokens"), so the small ubatch that keeps
    accelerators such as BLAS out of the reference cannot be used for them."""
    if whole_prompt:
        return ("-ngl", "0", "-dev", "none", "-ub", "512", "-b", "512")
    return ("-ngl", "0", "-dev", "none", "-ub", str(REFERENCE_UBATCH))


# test-backend-ops' cases rebuilt from an exported graph (tests/test-backend-ops.cpp
# `test_generic_op`, the `--test-file` path) initialise only their sources, while the base class
# initialises every tensor: the 1024-float sentinels the harness puts around each tensor to catch
# overruns (and compares, NaN check included), the output rows an op does not write (SET_ROWS) and
# the gaps of a strided source's backing keep whatever bytes the allocator hands out. When those
# bytes read as a NaN the case says "NaN on both sides" whatever the backend computed (measured on
# a Mixtral ops file with the 0.3.36 tree: 1-3 such cases in every run, now and then every case of
# a run). An upstream harness defect; our answer: glibc's MALLOC_PERTURB_ fills every allocation
# with the complement of its byte, so 255 hands out zero bytes, as the base class's initialisation
# would have (the same file then ran with no NaN in 12 runs of 12). Other C libraries ignore it.
HARNESS_ENV = {"MALLOC_PERTURB_": "255"}


def backend(name: str) -> CoverageBackend:
    """The backend whose test-backend-ops name is ``name`` (CPU, BLAS, MTL0 …)."""
    for prof in PROFILES.values():
        kind = prof.placement
        if name in prof.backend_names or (kind == "gpu" and name.startswith(prof.device_prefixes)):
            return CoverageBackend(name, prof.name, kind, prof.min_batch, name[: tree.SCHED_NAME_WIDTH])
    return CoverageBackend(name, "", "gpu", 0, name[: tree.SCHED_NAME_WIDTH])


def backends_for_profile(profile: str) -> tuple[str, ...]:
    """Default backends of a build of ``profile``: the CPU, then the profile's own device."""
    names = ["CPU"]
    prof = PROFILES.get(profile)
    if prof and prof.name != "cpu" and prof.backend_names:
        names.append(prof.backend_names[0])
    return tuple(names)
