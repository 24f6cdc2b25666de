"""The oracle's records; the JSON reports are these, serialised by ``toolchain.records``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .normalise import Rename
from .profiles import DeviceProfile, PropValue
from .validate import Disagreement, OpAgreement, ProfileAgreement, Unmatched

OBSERVED_BY = "predicted-from-source"
STATEMENT = (
    "Predictions from the tree's own source: ggml_metal_device_supports_op cut out of this commit "
    "and evaluated per GPU-family profile on Linux. Not an observation on a device. Not modelled: "
    "Metal pipeline compile failures at run time, the op-offload batch threshold "
    "(GGML_OP_OFFLOAD_MIN_BATCH), and anything the device reports differently from its family's "
    "published features."
)


@dataclass(frozen=True)
class CutInfo:
    name: str
    file: str
    first_line: int
    last_line: int
    language: str


@dataclass(frozen=True)
class ProbeInfo:
    key: str
    executable: str
    built_now: bool
    seconds: float
    cut_from: str  # the tree the function was cut from
    cut: tuple[CutInfo, ...]
    props_used: tuple[str, ...]


@dataclass(frozen=True)
class Contradiction:
    profile: str
    op: str
    case: str
    verdict: str  # the dry run's: missing-kernel | encoder-abort | over-limit
    detail: str  # kernel names, the assert, or the limit


@dataclass(frozen=True)
class DryRunCrossCheck:
    """Predicted-supported cases the Metal dry run (toolchain.dryrun.contradict) cannot encode, on
    the profiles both sides ran: never a clean pass."""

    available: bool
    reason: str  # why not, or what was compared
    program: str = ""  # the dry-run program's content key
    profiles: tuple[str, ...] = ()
    compared: int = 0  # predicted-supported cases the dry run also ran
    by_profile: dict[str, int] | None = None  # profile -> cases that cannot be encoded
    by_verdict: dict[str, int] | None = None
    cases: tuple[Contradiction, ...] = ()  # every one

    @property
    def count(self) -> int:
        return len(self.cases)


@dataclass(frozen=True)
class OpPrediction:
    """One op of the model, exactly as test-export-graph-ops wrote it, and the profile's verdict."""

    line: int  # 1-based line in the ops file
    op: str
    name: str  # the graph node's name (e.g. Qcur-0)
    type: str
    ne: str
    op_params: str
    sources: str  # type[ne] of each source, as test-backend-ops prints them
    source_strides: tuple[str, ...]  # nb of each source, from the ops file
    case: str  # the full test-backend-ops case string
    supported: bool
    # supported, but the dry run of the same case on the same profile cannot encode it:
    # "missing-kernel: kernel_…" / "encoder-abort: …" / "over-limit: …" ("" when not, or not run)
    dryrun: str = ""


@dataclass(frozen=True)
class ProfilePredictions:
    """One profile's answers; its DeviceProfile's fields are copied so the report stands alone."""

    profile: str
    column: str  # metal-predicted:<profile>
    family: str
    description: str
    switches: tuple[str, ...]
    props: tuple[PropValue, ...]
    supported: int  # ops of the ops file supports_op accepts on this profile
    unsupported: int
    ops: tuple[OpPrediction, ...]
    dryrun_cannot_encode: int = 0  # of the supported ones (see OpPrediction.dryrun)


@dataclass(frozen=True)
class Predictions:
    """``oracle predict``: the tree's Metal supports_op evaluated per profile over an ops file."""

    observed_by: str  # always predicted-from-source
    statement: str  # what these columns are and are not, shown beside them in every report
    tree: str
    commit: str
    ops_file: str  # the ops (test-export-graph-ops output) the profiles were asked about
    probe: ProbeInfo
    profiles: tuple[ProfilePredictions, ...]
    dryrun: DryRunCrossCheck | None = None  # None: not asked for


@dataclass(frozen=True)
class TableValidation:
    """One support table of the tree (docs/ops/<Backend>.csv) against ours."""

    backend: str  # Metal, BLAS, CPU
    status: str  # ok | failed | reported | skipped
    reason: str
    reference: str  # the CSV's path
    ours: str  # what produced our side
    observed_by: str  # predicted-from-source (Metal) or device (this machine's BLAS / CPU)
    # what was compared (all zero / empty for a skipped table)
    reference_rows: int = 0
    reference_cases: int = 0
    our_cases: int = 0
    matched: int = 0
    unmatched: tuple[Unmatched, ...] = ()
    profiles: tuple[ProfileAgreement, ...] = ()
    best_profiles: tuple[str, ...] = ()  # tied at the best agreement
    best_agreement: float = 0.0
    per_op: tuple[OpAgreement, ...] = ()  # for the best profile
    disagreements: tuple[Disagreement, ...] = ()  # every one, for the best profile
    explanations: dict[str, dict[str, int]] = field(default_factory=dict)  # explanation -> op -> count
    unexplained: int = 0


@dataclass(frozen=True)
class OracleValidation:
    observed_by: str
    statement: str
    tree: str
    commit: str
    older_tree: str
    older_commit: str
    ok: bool
    normalisation: tuple[str, ...]
    renames: tuple[Rename, ...]
    probe: ProbeInfo | None
    profiles: tuple[DeviceProfile, ...]
    metal: TableValidation
    measured: tuple[TableValidation, ...]
    seconds: float
    # the built-in cases the oracle accepts that the Metal dry run cannot encode (None: not asked for)
    dryrun: DryRunCrossCheck | None = None
