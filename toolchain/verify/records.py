"""The verify stage's records: one :class:`Check` per question asked of a build, the device seen at
run time, and the :class:`Verification` that holds them. They are also the JSON of ``verify.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Status = Literal["pass", "fail", "unverifiable"]
# static: read from binaries or files; device: seen by running the build; fixture: tests only;
# static+dry-run: a library read from the binary against what the Metal dry run's encoders ask for.
ObservedBy = Literal["static", "device", "fixture", "static+dry-run"]
# real: the backend's device with what its kernels need; paravirtual: a VM device lacking it
# (hosted macOS runners); none: no device of this backend on this machine.
DeviceClass = Literal["real", "paravirtual", "none"]
# The checks whose pass proves the profile's backend is there (the others only qualify it).
ESTABLISHING = frozenset({"registration", "runtime.device"})


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "registration", "embedded-library", "runtime.one-token"
    expected: str
    found: str
    file: str  # the file the evidence was found in ("" when none)
    status: Status
    observed_by: ObservedBy
    arch: str = ""  # the slice of a fat binary, "" when the file has one architecture
    hint: str = ""  # what to do when status is fail (or why it is unverifiable)
    evidence: tuple[str, ...] = ()  # e.g. the last log lines of a crashed run

    @property
    def failed(self) -> bool:
        return self.status == "fail"


@dataclass(frozen=True)
class DeviceInfo:
    """One device of the backend as the build itself reported it."""

    backend: str  # profile name
    name: str  # e.g. "MTL0", "BLAS"
    description: str = ""  # e.g. "Apple M4 Max", "OpenBLAS"
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    # Metal capabilities (None: not reported by this backend or this tree's log format).
    gpu_family: int | None = None  # N of MTLGPUFamilyAppleN
    gpu_families: tuple[str, ...] = ()  # every family line, e.g. ("MTLGPUFamilyApple9", "MTLGPUFamilyMetal3")
    simdgroup_reduction: bool | None = None  # "simdgroup reduction   = true"
    simdgroup_mm: bool | None = None  # "simdgroup matrix mul. = true"
    unified_memory: bool | None = None  # "has unified memory    = true"
    bfloat: bool | None = None  # "has bfloat            = true"
    tensor: bool | None = None  # "has tensor            = true" (the M5's tensor API)
    max_working_set_mb: float | None = None
    device_class: DeviceClass = "none"
    class_reason: str = ""


@dataclass(frozen=True)
class RuntimeRun:
    """One run of the build's own program (device listing or the one-token run)."""

    args: tuple[str, ...]
    returncode: int | None  # negative: killed by that signal
    seconds: float
    timed_out: bool
    tail: tuple[str, ...]  # its last lines of output, verbatim


@dataclass(frozen=True)
class Verification:
    path: Path
    profile: str
    checks: tuple[Check, ...]
    runtime_requested: bool
    devices: tuple[DeviceInfo, ...] = ()
    device_class: DeviceClass | None = None  # None: run time not verified
    runs: tuple[RuntimeRun, ...] = ()
    files: tuple[str, ...] = field(default=())  # binaries inspected
    era: str = ""  # how the build carries the backend, read from its symbols (profiles.BackendEra)
    # what its shipped Metal library can / cannot run, read from the build (shipped_kernels.Fact)
    shipped: tuple[object, ...] = ()
    # the fetchable tree whose Metal library the build ships byte for byte and the evidence, or
    # "no fetchable tree matches: ..." ("" when no match was attempted: a work dir's build, no sdists)
    tree_match: str = ""

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.failed)

    @property
    def verified(self) -> bool:
        """Whether any check established the backend: its registration found in the binaries, or
        its device seen at run time. Without one, "no failure" means nothing was checked."""
        return any(c.status == "pass" and c.name in ESTABLISHING for c in self.checks)

    @property
    def unverifiable(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "unverifiable")
