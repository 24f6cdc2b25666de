"""The dry run's records; the JSON report (``dryrun.json``) is these, serialised."""

from __future__ import annotations

from dataclasses import dataclass

from ..oracle.profiles import PropValue
from .library import Define

OBSERVED_BY = "dry-run"
STATEMENT = (
    "Dry run: the tree's own Metal backend (its C++ encoders, compiled on Linux) encoded each op "
    "over a stand-in for its Objective-C layer, per GPU-family profile. Encoding only: no kernel "
    "ran and no numbers were checked. Checked: supports_op, every kernel name the encoders ask for "
    "against the tree's Metal sources preprocessed for the profile, encoder asserts, threadgroup "
    "memory and threads per threadgroup. Not modelled: Metal's shader compiler and pipeline-state "
    "errors beyond the name lookup, a pipeline's own thread limit below 1024."
)

# worst first: the verdict of a set of cases is the first of these that any case has
VERDICTS = ("missing-kernel", "encoder-abort", "over-limit", "error", "unsupported", "pass")


@dataclass(frozen=True)
class Tensor:
    type: str
    ne: tuple[int, ...]


@dataclass(frozen=True)
class MissingKernel:
    base: str  # the function name the library is asked for
    name: str  # the specialised pipeline name (function constants included)


@dataclass(frozen=True)
class Limit:
    kernel: str
    what: str  # "threadgroup memory" | "threads per threadgroup"
    value: int
    limit: int


@dataclass(frozen=True)
class CaseResult:
    index: int  # 1-based position of the case in this profile's run (= ops-file line for --test-file)
    op: str
    case: str  # test-backend-ops' parameter string
    out: Tensor
    srcs: tuple[Tensor, ...]
    verdict: str
    kernels: tuple[str, ...]  # specialised pipeline names dispatched, in order, unique
    dispatches: int
    missing: tuple[MissingKernel, ...] = ()
    abort: str = ""  # the assert/abort text with file:line, or the crash
    limits: tuple[Limit, ...] = ()
    rejected_node: str = ""  # unsupported: the node of the case's graph supports_op rejects


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    column: str  # metal-dryrun:<profile>
    verdict: str
    counts: dict[str, int]  # verdict -> cases
    dispatches: int
    findings: tuple[CaseResult, ...]  # every case that is not pass/unsupported
    unsupported: tuple[CaseResult, ...]  # supports_op said no (CPU fallback on a Mac)
    kernels_needed: tuple[str, ...] = ()  # every base name the encoders asked the library for


@dataclass(frozen=True)
class BatchRun:
    batch: str  # "generation" (1 token), "prompt" (>= 512 tokens), "ops" (a file as given), "built-in"
    source: str  # the ops file, or "built-in test-backend-ops cases"
    cases: int
    results: tuple[ProfileResult, ...]
    restarts: int  # processes that ended in an abort and were rerun past it
    seconds: float


@dataclass(frozen=True)
class ProfileInfo:
    profile: str
    description: str
    props: tuple[PropValue, ...]
    library_defines: tuple[Define, ...]
    library_sources: tuple[str, ...]
    kernels: int  # names in the profile's library


@dataclass(frozen=True)
class DryRun:
    observed_by: str
    statement: str
    tree: str
    commit: str
    program: str  # content key of the dry-run build
    profiles: tuple[ProfileInfo, ...]
    runs: tuple[BatchRun, ...]
    # how the stand-in follows this tree's Objective-C interface (toolchain.dryrun.standin): the
    # functions adapted to a changed signature and those "modelled by default"
    standin: tuple[str, ...] = ()
