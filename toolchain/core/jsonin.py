"""One bounded reader for JSON someone else wrote (reports, shards, baselines): bounded size,
bounded nesting, finite numbers only (issue #32: a shard with ``seconds: 1e999`` or ``NaN`` made the
merged ``coverage.json`` invalid JSON; 100 000 nested arrays raised RecursionError).

Errors are :class:`JSONInputError` (a ``ValueError``) naming what is wrong; each caller turns it
into its own error class (ReportError, UsageError)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MAX_DEPTH = 64  # the deepest report we write nests about 8 levels
MAX_REPORT_BYTES = 64 << 20  # a full matrix's coverage.json is a few MiB


class JSONInputError(ValueError):
    """JSON that is not JSON, or not within the bounds (size, depth, finite numbers)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError(f"the number {text[:40]} is out of range (not a finite number)")
    return value


def _no_constant(text: str) -> Any:
    raise JSONInputError(f"{text} is not a JSON number (NaN / Infinity)")


def _depth_within(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``text`` as JSON within the bounds (:class:`JSONInputError` otherwise)."""
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise JSONInputError(f"nested deeper than {max_depth} levels") from None
    except JSONInputError:
        raise
    except ValueError as exc:  # JSONDecodeError, an integer of more than 4300 digits
        raise JSONInputError(f"not JSON: {str(exc)[:200]}") from None
    if not _depth_within(value, max_depth):
        raise JSONInputError(f"nested deeper than {max_depth} levels")
    return value


def read(path: Path, *, max_bytes: int = MAX_REPORT_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON file at ``path`` within the bounds. ``OSError`` passes through (the caller names
    the file); a file larger than ``max_bytes`` is refused before it is read whole."""
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise JSONInputError(f"larger than {max_bytes >> 20} MiB, more than such a report has")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return loads(text, max_depth=max_depth)
