"""One bounded, validated reader for ops files (``test-export-graph-ops`` output) before any
native program sees them (issue #32 F, E).

``test-backend-ops --test-file`` (tests/test-backend-ops.cpp, ``make_test_cases_from_file``) reads
each line with ``iss >>`` into unchecked ``ggml_op`` / ``ggml_type`` casts: a blank line becomes a
case of uninitialised ids (``GGML_ASSERT(type …)``), an id past the enum or ``nan`` a SIGSEGV, a
negative ``ne`` a shape that is "supported". So every line is parsed here first, in the exporter's
own format (tests/test-export-graph-ops.cpp)::

    op type ne0 ne1 ne2 ne3 n_params p… n_src (type ne0..ne3 nb0..nb3)… name

and range-checked with the tree's own enums (``ggml/include/ggml.h``: ``enum ggml_op``,
``enum ggml_type``, ``GGML_MAX_OP_PARAMS``, ``GGML_MAX_SRC``). The native program then reads a
canonical copy of the checked lines (blank lines dropped), never the file as given. Bounded: at
most ``MAX_OPS_BYTES`` and ``MAX_OPS_LINES``; nothing is allocated from a count in the file before
that count is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import NothingToPredictError, UsageError
from .jsonio import atomic_write_text
from .tree import ggml_ids

MAX_OPS_BYTES = 4 << 20  # a real model's export is one line (~200 bytes) per graph node
MAX_OPS_LINES = 10_000
MAX_NE = 1 << 40  # per dimension; elements of one tensor at most MAX_ELEMENTS
MAX_ELEMENTS = 1 << 48
MAX_NB = 1 << 62
INT32 = (-(1 << 31), (1 << 31) - 1)
_INT = re.compile(r"-?[0-9]+")  # ASCII digits only: no "nan", "1e9", "١٢" (str.isdigit would)
_HINT = "give the file test-export-graph-ops of the same tree wrote (test-export-graph-ops -m MODEL -o FILE)"


@dataclass(frozen=True)
class OpsLimits:
    """What the tree's ggml.h allows."""

    ops: frozenset[int]
    types: frozenset[int]
    max_params: int
    max_src: int


def limits_of(tree: Path) -> OpsLimits:
    op_ids, type_ids = ggml_ids(tree)
    if not op_ids or not type_ids:
        raise UsageError(
            f"cannot read enum ggml_op / enum ggml_type from {tree}/ggml/include/ggml.h: an ops file "
            "cannot be checked against this tree",
            "give a llama.cpp tree (--tree)",
        )
    try:
        header = (tree / "ggml" / "include" / "ggml.h").read_text(encoding="utf-8", errors="replace")
    except OSError:
        header = ""

    def define(name: str, default: int) -> int:
        m = re.search(rf"#define\s+{name}\s+(\d+)", header)
        return int(m[1]) if m else default

    ops = frozenset(v for k, v in op_ids.items() if k not in ("GGML_OP_NONE", "GGML_OP_COUNT"))
    types = frozenset(v for k, v in type_ids.items() if k != "GGML_TYPE_COUNT")
    return OpsLimits(ops, types, define("GGML_MAX_OP_PARAMS", 64) // 4, define("GGML_MAX_SRC", 10))


class _Bad(ValueError):
    pass


class _Tokens:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos = tokens, 0

    def int(self, what: str, low: int, high: int) -> int:
        if self.pos >= len(self.tokens):
            raise _Bad(f"ends before {what}")
        token = self.tokens[self.pos]
        self.pos += 1
        if not _INT.fullmatch(token) or len(token) > 20:
            raise _Bad(f"{what} is {token[:24]!r}, not a whole number")
        value = int(token)
        if not low <= value <= high:
            raise _Bad(f"{what} is {value}, outside {low}..{high}")
        return value

    def rest(self) -> list[str]:
        return self.tokens[self.pos :]


def _shape(t: _Tokens, what: str) -> list[int]:
    ne = [t.int(f"{what} ne[{i}]", 0, MAX_NE) for i in range(4)]  # 0: an empty view the exporter writes
    elements = ne[0] * ne[1] * ne[2] * ne[3]
    if elements > MAX_ELEMENTS:
        raise _Bad(f"{what} has {elements} elements, more than {MAX_ELEMENTS}")
    return ne


def _check_line(text: str, lim: OpsLimits) -> str:
    t = _Tokens(text.split())
    op = t.int("the op id", 0, 1 << 16)
    if op not in lim.ops:
        raise _Bad(f"op id {op} is no op of this tree's enum ggml_op")
    typ = t.int("the type id", 0, 1 << 16)
    if typ not in lim.types:
        raise _Bad(f"type id {typ} is no type of this tree's enum ggml_type")
    out = [op, typ, *_shape(t, "the result")]
    n_params = t.int("n_params", 0, lim.max_params)
    out += [n_params, *(t.int(f"op_params[{i}]", *INT32) for i in range(n_params))]
    n_src = t.int("n_src", 0, lim.max_src)
    out.append(n_src)
    for s in range(n_src):
        stype = t.int(f"src{s} type id", 0, 1 << 16)
        if stype not in lim.types:
            raise _Bad(f"src{s} type id {stype} is no type of this tree's enum ggml_type")
        out += [stype, *_shape(t, f"src{s}"), *(t.int(f"src{s} nb[{i}]", 0, MAX_NB) for i in range(4))]
    name = t.rest()
    if not name:
        raise _Bad("ends before the name (the exporter writes - for none)")
    shown = " ".join(name)
    if len(shown) > 256 or not shown.isprintable():
        raise _Bad("the name is not a tensor name (printable, at most 256 characters)")
    return " ".join(map(str, out)) + " " + shown


def checked_lines(path: Path, tree: Path) -> list[str]:
    """The lines of the ops file at ``path``, each checked against ``tree`` and written the
    canonical way (blank lines dropped). :class:`UsageError` naming the line and field;
    :class:`NothingToPredictError` when the file holds no op."""
    lim = limits_of(tree)
    try:
        if not path.is_file():
            raise UsageError(f"no ops file {path} (not a regular file)", _HINT)
        with path.open("rb") as fh:
            data = fh.read(MAX_OPS_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"ops file {path}: cannot be read: {exc.strerror or exc}", _HINT) from None
    if len(data) > MAX_OPS_BYTES:
        raise UsageError(
            f"ops file {path}: more than {MAX_OPS_BYTES >> 20} MiB, more than a model's graph has", _HINT
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"ops file {path}: not UTF-8 text (byte {exc.start})", _HINT) from None
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(out) >= MAX_OPS_LINES:
            raise UsageError(
                f"ops file {path}: more than {MAX_OPS_LINES} ops, more than a model's graph has", _HINT
            )
        try:
            out.append(_check_line(line, lim))
        except _Bad as exc:
            raise UsageError(f"ops file {path}, line {lineno}: {exc}", _HINT) from None
    if not out:
        raise NothingToPredictError(
            f"ops file {path} holds no op ({len(text.splitlines())} line(s)): nothing to predict",
            "export the model's ops with test-export-graph-ops -m MODEL -o FILE",
        )
    return out


def write_checked(lines: list[str], dest: Path) -> Path:
    """The canonical copy of checked lines at ``dest``: what the native program reads."""
    atomic_write_text(dest, "\n".join(lines) + "\n")  # a full disk leaves no half of it (ENOSPC, named)
    return dest
