"""The coverage stage's records; ``coverage.json`` is :class:`CoverageRun` serialised.

Schema (``kind: "coverage"``, ``schema_version`` from :mod:`toolchain.records`), documented field
by field in ``toolchain/coverage/SCHEMA.md``:

- the run: source (kind, location, ref, full commit), build profile and dir, the tree's tools and
  which columns could not be computed (:class:`ToolColumn`), the device class and capabilities,
  the backends, ``complete`` (false when interrupted), durations, counts per status;
- one :class:`Cell` per architecture × weight type × backend: ``status``, ``reason``,
  ``observed_by``, one :class:`CheckResult` per column (support, test, e2e, archs) with its
  evidence and seconds, and :class:`OpResult` per op/shape the model needs (op, types, shapes,
  params; supported / test verdict);
- with ``--baseline``: a :class:`BaselineDiff` and the one-line verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..records import COVERAGE

# Cell and check statuses, most severe first (a cell's status is its worst check's).
Status = Literal[
    "crash", "hang", "wrong", "unsupported", "fallback", "error", "unverifiable", "not-applicable", "pass"
]
SEVERITY: tuple[Status, ...] = (
    "crash",
    "hang",
    "wrong",
    "unsupported",
    "fallback",
    "error",
    "unverifiable",
    "not-applicable",
    "pass",
)
# Statuses that fail a run by default (``--fail-on``) and that count as "broken" in a baseline diff.
BROKEN: frozenset[str] = frozenset({"crash", "hang", "wrong"})
ObservedBy = Literal["device", "static", "predicted-from-source", "dry-run", "fixture"]
# Whose a cell's failure is: the backend's (a finding about it), our harness's (a bug to fix, never
# reported as the backend's), our spec's (a tiny model the tree cannot load), upstream's (the tree
# disagrees with itself, e.g. its converter writes what its loader refuses), the input's (a given
# GGUF the tree cannot load). "" when nothing failed.
Whose = Literal["", "backend", "harness", "spec", "upstream", "input"]
# Per-op verdicts of test-backend-ops.
OpSupport = Literal["yes", "no", "unknown"]
OpTest = Literal["ok", "fail", "nan-both", "nan-reference", "not-supported", "not-run", "crash"]
COLUMNS = ("support", "test", "e2e", "archs")


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe status (``pass`` for none)."""
    return min(statuses, key=SEVERITY.index) if statuses else "pass"


REPORT_KIND = COVERAGE.kind


@dataclass(frozen=True)
class ModelInput:
    """One model of the matrix: (architecture, weight type, GGUF path) and where it came from."""

    architecture: str  # GGUF general.architecture, e.g. "qwen3"
    weight_type: str  # e.g. "f16", "q8_0"
    path: Path
    source: str = ""  # "convert.json", "test-llama-archs", "given", "fixture"
    variant: str = ""  # e.g. "dense" / "moe" for test-llama-archs models ("" = the only one)

    @property
    def label(self) -> str:
        return f"{self.architecture}-{self.variant}" if self.variant else self.architecture


@dataclass(frozen=True)
class TensorShape:
    type: str  # ggml type name, e.g. "f32", "q8_0"
    ne: tuple[int, int, int, int]
    nb: tuple[int, ...] = ()  # only for non-contiguous sources


@dataclass(frozen=True)
class OpResult:
    """One op/shape the model's graphs need, as test-backend-ops names it, and what the backend did."""

    op: str  # e.g. "MUL_MAT"
    params: str  # the case's full parameter string (exactly as test-backend-ops prints it)
    name: str = ""  # graph tensor name, e.g. "ffn_up-0"
    output: TensorShape | None = None
    sources: tuple[TensorShape, ...] = ()
    op_params: tuple[int, ...] = ()  # non-zero op_params as printed ("index:value" pairs flattened)
    supported: OpSupport = "unknown"
    test: OpTest = "not-run"
    message: str = ""  # e.g. "[SET_ROWS] NaN at index 20 (BLAS=nan CPU=nan)", "ERR = 0.1 > 0.0005"

    @property
    def types(self) -> tuple[str, ...]:
        out = (self.output.type,) if self.output else ()
        return out + tuple(s.type for s in self.sources)

    @property
    def key(self) -> str:
        return f"{self.op}({self.params})"


@dataclass(frozen=True)
class CheckResult:
    """One column of a cell (support / test / e2e / archs)."""

    column: str
    status: Status
    summary: str
    evidence: tuple[str, ...] = ()  # the last log lines of a crash or hang, the lines that decided
    seconds: float = 0.0
    command: tuple[str, ...] = ()
    log: str = ""  # path of the full log
    details: dict[str, object] = field(default_factory=dict)  # e.g. nmse, splits, cpu_nodes


@dataclass(frozen=True)
class DeviceSummary:
    """The backend device as verify (or the cell's own runs) saw it."""

    backend: str  # test-backend-ops name: CPU, BLAS, MTL0 …
    description: str = ""
    # real / paravirtual / none (toolchain.verify) / unknown (no fact: never counted as real)
    device_class: str = "unknown"
    capabilities: dict[str, object] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class Cell:
    id: str  # "<arch>-<type>-<backend>", e.g. "qwen3-q8_0-BLAS"
    architecture: str
    weight_type: str
    backend: str
    model: str  # GGUF path
    status: Status
    reason: str
    observed_by: ObservedBy
    checks: tuple[CheckResult, ...] = ()
    ops: tuple[OpResult, ...] = ()
    durations: dict[str, float] = field(default_factory=dict)
    device: DeviceSummary | None = None
    variant: str = ""
    whose: Whose = ""
    # the verdict of an earlier run whose inputs were all the same (cellcache.CellCache): nothing ran
    reused: bool = False

    @property
    def unsupported_ops(self) -> tuple[OpResult, ...]:
        return tuple(o for o in self.ops if o.supported == "no")

    @property
    def failing_ops(self) -> tuple[OpResult, ...]:
        return tuple(o for o in self.ops if o.test in ("fail", "crash"))


def whose_suffix(cell: Cell) -> str:
    """ " (upstream)" and the like after a status that is not the backend's own finding."""
    return f" ({cell.whose})" if cell.whose and cell.whose != "backend" else ""


@dataclass(frozen=True)
class ToolColumn:
    """Whether a column can be computed with this tree's tools, and why not."""

    column: str
    available: bool
    tool: str = ""  # program used, e.g. "test-backend-ops"
    reason: str = ""  # why not (or what limits it)


@dataclass(frozen=True)
class CellChange:
    id: str
    before: str  # status in the baseline ("absent" when the cell is new)
    after: str
    detail: str = ""


@dataclass(frozen=True)
class BaselineDiff:
    baseline: str  # path of the baseline report
    baseline_commit: str
    newly_broken: tuple[CellChange, ...]
    fixed: tuple[CellChange, ...]
    changed: tuple[CellChange, ...]  # other status changes
    new_unsupported: tuple[str, ...]  # "<cell>: OP(params)" newly unsupported shapes
    no_longer_unsupported: tuple[str, ...]
    missing_cells: tuple[str, ...]  # in the baseline, not in this run
    safe_to_bump: bool
    verdict: str  # one line


@dataclass(frozen=True)
class SweepClassRow:
    """One class of the dry-run sweep (``dryrun-sweep.json``) as the coverage report shows it."""

    verdict: str  # missing-kernel | encoder-abort | over-limit | error | invalid-case
    blame: str
    family: str
    what: str  # the kernel name pattern, the assert or the limit
    profiles: tuple[str, ...]
    cases: int
    summary: str
    fix: str
    minimal_case: str  # one test-backend-ops --test-file line of this tree


@dataclass(frozen=True)
class SweepSection:
    """The pinned tree's dry-run sweep classes, when ``nox -s sweep`` made them for this commit."""

    report: str  # the dryrun-sweep.json they come from
    commit: str
    observed_by: str  # "dry-run"
    statement: str
    profiles: tuple[str, ...]
    cases: int
    classes: tuple[SweepClassRow, ...]
    against: str = ""  # against the previous pin's sweep: what no longer crashes, what is new ("" = none)
    changes: tuple[str, ...] = ()  # "no longer crashes on apple9: kernel_…", "new on apple9: …" (first 40)


@dataclass(frozen=True)
class CoverageRun:
    source: dict[str, object]  # kind, location, ref, commit (from build-manifest.json)
    profile: str
    build_dir: str
    device_class: str
    devices: tuple[DeviceSummary, ...]
    backends: tuple[str, ...]
    architectures: tuple[str, ...]
    weight_types: tuple[str, ...]
    columns: tuple[ToolColumn, ...]
    cells: tuple[Cell, ...]
    complete: bool
    interrupted: bool
    started_at: str
    seconds: float
    counts: dict[str, int]
    models_skipped: tuple[str, ...] = ()  # inputs that could not become cells, with the reason
    baseline: BaselineDiff | None = None
    verdict: str = ""
    observed_by: str = "device"
    notes: tuple[str, ...] = ()  # statements the reports show above the matrix (e.g. about predictions)
    shard: str = ""  # "K/N" when the run covered one slice of the matrix (--shard); "" for all of it
    sweep: SweepSection | None = None  # the tree's dry-run sweep classes (dryrun-sweep.json), if made
