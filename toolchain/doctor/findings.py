"""The doctor's records: evidence, findings and the report (these dataclasses are the JSON).

``observed_by`` says where a finding was seen: ``log`` (a log or a captured run), ``gguf`` (the
model file), ``static`` (a build read from disk, or a computation from stated inputs such as the
memory plan), ``system`` (the machine doctor runs on), ``dry-run`` (the Metal dry run of a tree
encoding the case a log names: predicted, never observed on a device) or ``fixture`` (tests only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
ObservedBy = Literal["log", "gguf", "static", "system", "dry-run", "fixture"]

SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Evidence:
    text: str
    line: int | None = None  # 1-based line number in the log; None when not from a log line
    pattern: str = ""  # catalog pattern id that matched, if any


@dataclass(frozen=True)
class Finding:
    class_id: str  # the catalog's stable id: memory, gguf-format, ...
    title: str
    severity: Severity
    confidence: float  # 0..1
    summary: str
    fix: str
    observed_by: ObservedBy
    evidence: tuple[Evidence, ...] = ()
    order: int = 99  # the catalog's diagnostic order
    matches: int = 0  # how many lines matched in total (evidence keeps a bounded sample)

    @property
    def is_problem(self) -> bool:
        return self.severity in ("error", "warning")


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...]
    inputs: dict[str, Any] = field(default_factory=dict)
    log: Any = None  # LogScan summary, if a log was read
    gguf: Any = None  # GGUFCheck, if a GGUF was read
    memory: Any = None  # MemoryPlan, if one was computed
    system: Any = None  # SystemStatus, if probed
    build: Any = None  # BuildCheck, if a build was checked
    run: Any = None  # RunResult, for `doctor run`
    dry_run: Any = None  # KernelDryRun(s): the dry run of the log's missing-kernel case(s)
    notes: tuple[str, ...] = ()
    # False while doctor runs (the report written at its start) and when it was interrupted
    # (Ctrl-C): then the findings are those of the stages done, and ``interrupted_during`` names
    # the stage that was cut short (log, gguf, build, system, run)
    complete: bool = True
    interrupted_during: str = ""

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_problem)

    @property
    def ok(self) -> bool:
        return not self.problems


def sort_findings(findings: list[Finding] | tuple[Finding, ...]) -> tuple[Finding, ...]:
    """Problems first, in the catalog's diagnostic order, most confident first; then observations."""
    return tuple(
        sorted(findings, key=lambda f: (SEVERITY_RANK[f.severity] > 1, f.order, -f.confidence, f.class_id))
    )
