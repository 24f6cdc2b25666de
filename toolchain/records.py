"""Every report this toolchain writes, by name: its file name, ``kind`` and schema version.

A report is a record (a frozen dataclass) as JSON with ``schema_version`` and ``kind`` on top
(:func:`write_report`, atomic). This registry names reports and never imports a stage: whoever
reads a report names the record class it expects, ``read_record(path, COVERAGE, CoverageRun)``,
so the registry sits under every stage, as nox's registry sits under what registers.
:func:`read_data` gives the checked JSON object. A file that is not JSON, a report of another
kind, one written by a newer toolchain or a record with a missing or mistyped field is a
:class:`~toolchain.errors.ReportError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from .core import jsonin
from .core.jsonio import RecordMismatch, atomic_write_text, from_jsonable, to_jsonable
from .errors import ReportError

SCHEMA_VERSION = 1  # of every report this toolchain writes
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class ReportType:
    """One kind of report: its ``kind`` field (its file under ``reports/`` is ``<kind>.json``) and
    the newest ``schema_version`` this toolchain reads and writes."""

    kind: str
    schema_version: int = SCHEMA_VERSION

    @property
    def name(self) -> str:
        return f"{self.kind}.json"


BUILD_MANIFEST = ReportType("build-manifest")
VERIFY = ReportType("verify")
CONVERT = ReportType("convert")
COVERAGE = ReportType("coverage")
DOCTOR = ReportType("doctor")
ORACLE_PREDICTIONS = ReportType("oracle-predictions")
ORACLE_VALIDATION = ReportType("oracle-validation")
DRYRUN = ReportType("dryrun")
DRYRUN_VALIDATION = ReportType("dryrun-validation")
DRYRUN_SHIPPED = ReportType("dryrun-shipped")  # plain data: {"libraries", "dry_run"}
DRYRUN_SWEEP = ReportType("dryrun-sweep")
DRYRUN_HISTORY = ReportType("dryrun-history")

REPORTS: dict[str, ReportType] = {
    r.kind: r
    for r in (
        BUILD_MANIFEST,
        VERIFY,
        CONVERT,
        COVERAGE,
        DOCTOR,
        ORACLE_PREDICTIONS,
        ORACLE_VALIDATION,
        DRYRUN,
        DRYRUN_VALIDATION,
        DRYRUN_SHIPPED,
        DRYRUN_SWEEP,
        DRYRUN_HISTORY,
    )
}


def write_report(path: Path, kind: str, record: Any) -> Path:
    """Write ``record`` as ``{"schema_version", "kind", ...fields}`` to ``path`` atomically."""
    version = REPORTS[kind].schema_version if kind in REPORTS else SCHEMA_VERSION
    data = {"schema_version": version, "kind": kind, **to_jsonable(record)}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def read_data(path: Path, report: ReportType) -> dict[str, Any]:
    """The JSON object of ``report`` at ``path``, after checking its kind and schema version."""
    hint = f"the file is written by the stage that makes {report.name}: run it again, or remove the file"
    try:
        data = jsonin.read(path)  # bounded: size, depth, finite numbers (issue #32)
    except OSError as exc:
        raise ReportError(
            f"{path}: cannot read the {report.kind} report: {exc.strerror or exc}", hint
        ) from None
    except ValueError as exc:
        raise ReportError(f"{path}: not a {report.kind} report ({exc})", hint) from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a {report.kind} report (a JSON {type(data).__name__})", hint)
    if data.get("kind") != report.kind:
        raise ReportError(f"{path}: kind is {data.get('kind')!r}, not a {report.kind} report", hint)
    version = data.get("schema_version")
    if type(version) is not int or version < 1:
        raise ReportError(
            f"{path}: schema_version {version!r} is not a version of the {report.kind} report", hint
        )
    if version > report.schema_version:
        raise ReportError(
            f"{path}: {report.kind} report of schema version {version}, newer than this toolchain "
            f"reads ({report.schema_version})",
            "upgrade llama-toolchain, or run the stage again with this one",
        )
    return data


def read_record(path: Path, report: ReportType, record: type[R]) -> R:
    """The ``record`` (the class the caller expects) of ``report`` at ``path`` (:class:`ReportError`
    naming the file when it is not one)."""
    data = read_data(path, report)
    try:
        return typing.cast(R, from_jsonable(record, data))
    except RecordMismatch as exc:
        raise ReportError(
            f"{path}: not a {report.kind} report this toolchain can read: {exc}",
            f"the file is written by the stage that makes {report.name}: run it again, or remove the file",
        ) from None


def read_record_if_any(path: Path, report: ReportType, record: type[R]) -> R | None:
    """:func:`read_record`, or None when there is no file at ``path``."""
    return read_record(path, report, record) if path.is_file() else None
