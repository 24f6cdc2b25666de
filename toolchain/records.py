"""Records are frozen dataclasses; reports are those records as JSON.

``to_jsonable`` turns a record (nested dataclasses, tuples, Paths, enums) into plain JSON data;
``write_report`` writes it atomically (a killed run never leaves half a report that claims
success) with the report's ``schema_version``.

Every report is registered here once (:data:`REPORTS`: file name, kind, schema version, record
class), and a stage reads another stage's report only through :func:`read_record` (the typed
record back) or :func:`read_data` (the checked JSON object): a file that is not JSON, a report
of another kind, one written by a newer toolchain or a record with a missing or mistyped field
is a :class:`~toolchain.errors.ReportError` naming the file.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import os
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import jsonin
from .errors import ReportError

if TYPE_CHECKING:
    from .builder.manifest import BuildManifest
    from .convert.results import Conversion
    from .coverage.records import CoverageRun
    from .doctor.findings import DoctorReport
    from .dryrun.records import DryRun
    from .dryrun.validate import Validation as DryRunValidation
    from .oracle.records import OracleValidation, Predictions
    from .verify.records import Verification

SCHEMA_VERSION = 1  # of every report this toolchain writes
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class ReportType(Generic[R]):
    """One kind of report: its file name under ``reports/``, its ``kind`` field and the newest
    ``schema_version`` this toolchain reads and writes; ``record`` is its record class."""

    name: str
    kind: str
    schema_version: int = SCHEMA_VERSION

    @property
    def record(self) -> type[R]:
        return typing.cast("type[R]", _record_classes()[self.kind])


def _record_classes() -> dict[str, type]:
    """Each kind's record class, imported when a report is first read (the stages import this module)."""
    from .builder.manifest import BuildManifest
    from .convert.results import Conversion
    from .coverage.records import CoverageRun
    from .doctor.findings import DoctorReport
    from .dryrun.records import DryRun
    from .dryrun.validate import Validation
    from .oracle.records import OracleValidation, Predictions
    from .verify.records import Verification

    return {
        BUILD_MANIFEST.kind: BuildManifest,
        VERIFY.kind: Verification,
        CONVERT.kind: Conversion,
        COVERAGE.kind: CoverageRun,
        DOCTOR.kind: DoctorReport,
        ORACLE_PREDICTIONS.kind: Predictions,
        ORACLE_VALIDATION.kind: OracleValidation,
        DRYRUN.kind: DryRun,
        DRYRUN_VALIDATION.kind: Validation,
        DRYRUN_SHIPPED.kind: dict,  # {"libraries": [...], "dry_run": DryRun}: read back as plain data
    }


BUILD_MANIFEST: ReportType[BuildManifest] = ReportType("build-manifest.json", "build-manifest")
VERIFY: ReportType[Verification] = ReportType("verify.json", "verify")
CONVERT: ReportType[Conversion] = ReportType("convert.json", "convert")
COVERAGE: ReportType[CoverageRun] = ReportType("coverage.json", "coverage")
DOCTOR: ReportType[DoctorReport] = ReportType("doctor.json", "doctor")
ORACLE_PREDICTIONS: ReportType[Predictions] = ReportType("oracle-predictions.json", "oracle-predictions")
ORACLE_VALIDATION: ReportType[OracleValidation] = ReportType("oracle-validation.json", "oracle-validation")
DRYRUN: ReportType[DryRun] = ReportType("dryrun.json", "dryrun")
DRYRUN_VALIDATION: ReportType[DryRunValidation] = ReportType("dryrun-validation.json", "dryrun-validation")
DRYRUN_SHIPPED: ReportType[dict[str, Any]] = ReportType("dryrun-shipped.json", "dryrun-shipped")

REPORTS: dict[str, ReportType[Any]] = {
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
    )
}


_SCALARS = frozenset({str, int, float, bool, type(None)})


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type (None for any other type), looked up once per type."""
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = (
            tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        )
    return _FIELD_NAMES[cls]


def to_jsonable(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    names = None if isinstance(value, type) else _field_names(type(value))
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(path: Path, kind: str, record: Any) -> Path:
    """Write ``record`` as ``{"schema_version", "kind", ...fields}`` to ``path`` atomically."""
    version = REPORTS[kind].schema_version if kind in REPORTS else SCHEMA_VERSION
    data = {"schema_version": version, "kind": kind, **to_jsonable(record)}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def read_data(path: Path, report: ReportType[Any]) -> dict[str, Any]:
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


def read_record(path: Path, report: ReportType[R]) -> R:
    """The record of ``report`` at ``path`` (:class:`ReportError` naming the file when it is not one)."""
    data = read_data(path, report)
    try:
        return typing.cast(R, from_jsonable(report.record, data))
    except _Mismatch as exc:
        raise ReportError(
            f"{path}: not a {report.kind} report this toolchain can read: {exc}",
            f"the file is written by the stage that makes {report.name}: run it again, or remove the file",
        ) from None


def read_record_if_any(path: Path, report: ReportType[R]) -> R | None:
    """:func:`read_record`, or None when there is no file at ``path``."""
    return read_record(path, report) if path.is_file() else None


class _Mismatch(ValueError):
    """A JSON value that does not fit the record's type (the message names the field)."""


def from_jsonable(hint: Any, value: Any, where: str = "") -> Any:
    """``value`` (JSON data, as :func:`to_jsonable` makes it) as the type ``hint``: dataclasses
    from objects (unknown keys ignored, missing ones take the field's default), tuples from lists,
    Paths and enums from their values, each checked against the annotation."""
    return _reader(hint)(value, where)


Reader = typing.Callable[[Any, str], Any]


@functools.cache
def _reader(hint: Any) -> Reader:
    """How to read a value of type ``hint``, worked out once per type (a report of 900 cells holds
    ~100 000 records: the annotations are not looked at again for each)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return lambda value, where: value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return functools.partial(_dataclass, hint)
    if origin is typing.Union or origin is types.UnionType:
        return functools.partial(
            _union, hint, tuple(a for a in args if a is not type(None)), type(None) in args
        )
    if origin is typing.Literal:
        return functools.partial(_literal, args)
    if origin in (tuple, list, set, frozenset) or hint in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return functools.partial(_fixed_tuple, args)
        return functools.partial(_sequence, args[0] if args else Any, origin or hint)
    if origin in (dict, Mapping) or hint is dict:
        key, val = args if args else (Any, Any)
        return functools.partial(_mapping, key, val)
    if hint is Path or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return functools.partial(_converted, hint)
    if hint in (float, int, str, bool, type(None)):
        return functools.partial(_scalar, hint)
    return functools.partial(_unreadable, hint)


def _union(hint: Any, options: tuple[Any, ...], optional: bool, value: Any, where: str) -> Any:
    if value is None and optional:
        return None
    for arg in options:
        try:
            return _reader(arg)(value, where)
        except _Mismatch:
            continue
    raise _Mismatch(f"{where or 'the report'}: {value!r:.80} is not {hint}")


def _literal(allowed: tuple[Any, ...], value: Any, where: str) -> Any:
    if value in allowed:
        return value
    raise _Mismatch(f"{where}: {value!r:.80} is not one of {', '.join(map(repr, allowed))}")


def _fixed_tuple(items: tuple[Any, ...], value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise _Mismatch(f"{where}: expected a list, got {type(value).__name__}")
    if len(items) != len(value):
        raise _Mismatch(f"{where}: expected {len(items)} items, got {len(value)}")
    return tuple(_reader(a)(v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(items, value, strict=True)))


def _sequence(item: Any, make: Any, value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise _Mismatch(f"{where}: expected a list, got {type(value).__name__}")
    read = _reader(item)
    return make([read(v, f"{where}[{i}]") for i, v in enumerate(value)])


def _mapping(key: Any, val: Any, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise _Mismatch(f"{where}: expected an object, got {type(value).__name__}")
    read_key, read_val = _reader(key), _reader(val)
    return {read_key(k, f"{where} key"): read_val(v, f"{where}.{k}") for k, v in value.items()}


def _converted(hint: Any, value: Any, where: str) -> Any:
    if hint is Path:
        if isinstance(value, str):
            return Path(value)
    else:
        try:
            return hint(value)
        except ValueError:
            pass
    raise _Mismatch(f"{where}: {value!r:.80} is not {getattr(hint, '__name__', hint)}")


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif type(value) is hint or (value is None and hint is type(None)):
        return value
    raise _Mismatch(f"{where}: {value!r:.80} is not {getattr(hint, '__name__', hint)}")


def _unreadable(hint: Any, value: Any, where: str) -> Any:
    raise _Mismatch(f"{where}: the record type {hint!r} cannot be read back")


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) of each init field: the annotations evaluated once per class."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.init
    )


def _dataclass(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise _Mismatch(f"{where or cls.__name__}: expected an object, got {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for field_name, hint, required in _fields(cls):
        if field_name in value:
            name = f"{where}.{field_name}" if where else field_name
            kwargs[field_name] = _reader(hint)(value[field_name], name)
        elif required:
            raise _Mismatch(f"{f'{where}.' if where else ''}{field_name} is missing")
    return cls(**kwargs)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
