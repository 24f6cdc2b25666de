"""Doctor: walk the Apple Silicon diagnostic order for a failed or slow llama.cpp run, with evidence.

Inputs: a log (file or stdin), a GGUF, the run's parameters, a build; or ``doctor run -- CMD``.
Output: findings (:class:`Finding`) carrying the catalog's class ids, ordered by the catalog's
diagnostic order, written to ``.toolchain/reports/doctor.json``.
"""

from __future__ import annotations

from .catalog import BY_ID, CLASSES, PATTERNS, FailureClass, Pattern
from .classify import LogScan, RunParams, classify_log, classify_stream, classify_text
from .findings import DoctorReport, Evidence, Finding, sort_findings

__all__ = [
    "BY_ID",
    "CLASSES",
    "PATTERNS",
    "DoctorReport",
    "Evidence",
    "FailureClass",
    "Finding",
    "LogScan",
    "Pattern",
    "RunParams",
    "classify_log",
    "classify_stream",
    "classify_text",
    "sort_findings",
]
