"""Records as JSON: :func:`to_jsonable` turns a record (nested frozen dataclasses, tuples, Paths,
enums) into plain JSON data, :func:`from_jsonable` reads it back as the annotated type (checking
every field), and :func:`atomic_write_text` writes a file so that a killed run never leaves half
of it. No stage is imported here: the report registry (:mod:`toolchain.records`) and every stage
build on this.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .diskfull import raise_named

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
    """Write ``text`` to ``path`` through a temporary beside it: a killed run or a full disk leaves
    the old file (or none) and no temporary. An OSError names ``path`` (a full disk: ENOSPC)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise_named(exc, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RecordMismatch(ValueError):
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
        except RecordMismatch:
            continue
    raise RecordMismatch(f"{where or 'the report'}: {value!r:.80} is not {hint}")


def _literal(allowed: tuple[Any, ...], value: Any, where: str) -> Any:
    if value in allowed:
        return value
    raise RecordMismatch(f"{where}: {value!r:.80} is not one of {', '.join(map(repr, allowed))}")


def _fixed_tuple(items: tuple[Any, ...], value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise RecordMismatch(f"{where}: expected a list, got {type(value).__name__}")
    if len(items) != len(value):
        raise RecordMismatch(f"{where}: expected {len(items)} items, got {len(value)}")
    return tuple(_reader(a)(v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(items, value, strict=True)))


def _sequence(item: Any, make: Any, value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise RecordMismatch(f"{where}: expected a list, got {type(value).__name__}")
    read = _reader(item)
    return make([read(v, f"{where}[{i}]") for i, v in enumerate(value)])


def _mapping(key: Any, val: Any, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise RecordMismatch(f"{where}: expected an object, got {type(value).__name__}")
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
    raise RecordMismatch(f"{where}: {value!r:.80} is not {getattr(hint, '__name__', hint)}")


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif type(value) is hint or (value is None and hint is type(None)):
        return value
    raise RecordMismatch(f"{where}: {value!r:.80} is not {getattr(hint, '__name__', hint)}")


def _unreadable(hint: Any, value: Any, where: str) -> Any:
    raise RecordMismatch(f"{where}: the record type {hint!r} cannot be read back")


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
        raise RecordMismatch(f"{where or cls.__name__}: expected an object, got {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for field_name, hint, required in _fields(cls):
        if field_name in value:
            name = f"{where}.{field_name}" if where else field_name
            kwargs[field_name] = _reader(hint)(value[field_name], name)
        elif required:
            raise RecordMismatch(f"{f'{where}.' if where else ''}{field_name} is missing")
    return cls(**kwargs)
