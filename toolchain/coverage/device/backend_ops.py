"""Read what ``test-backend-ops`` prints: the ``support`` CSV and the ``test`` console lines.

CSV (``--output csv``; tests/test-backend-ops.cpp ``csv_printer``): a header of quoted field
names, then one quoted row per case. Fields are printed in ``test_result::get_fields()`` order
filtered by ``get_fields_csv()`` — in 0.3.20 and 0.3.36: backend_name, op_name, op_params,
test_mode, supported, error_message, backend_reg_name. ``supported`` is ``1``/``0``
(``std::to_string(bool)``); in support mode ``error_message`` holds ``yes``/``no``. Columns are
looked up by the header's names, never by position; a row that does not fit is kept as a parse
problem, never guessed.

Console (``test`` mode): per case ``  OP(params): `` then ``OK`` / ``FAIL`` (ANSI-coloured) or
``not supported [BACKEND]``; the compare callback's messages (``[OP] NaN at index i (A=x B=y)``,
``[OP] ERR = e > max``, ``inf mismatch``) land on the same line, before (0.3.36) or after (0.3.20)
the case string. **NaN trap**: random inputs to an op taken out of its graph can make *both*
sides NaN; that is ``nan-both`` (the input, not the backend), never the backend's wrong result.

The parameter string of a case made from an exported graph (``test_generic_op``) reads
``[name=N,]type=T,ne=[a,b,c,d],op_params=[i:v,…],sources=T[a,b,c,d][nb[…]],…``;
:func:`parse_generic_params` turns it into types and shapes.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..records import OpResult, OpTest, TensorShape

CSV_FIELDS = (
    "backend_name",
    "op_name",
    "op_params",
    "test_mode",
    "supported",
    "error_message",
    "backend_reg_name",
)
REQUIRED_CSV_FIELDS = ("op_name", "op_params", "supported")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SHAPE = re.compile(r"(?P<type>[a-z0-9_]+)\[(?P<ne>-?\d+(?:,-?\d+){3})\](?:nb\[(?P<nb>\d+(?:,\d+)*)\])?")
_NAN = re.compile(
    r"\[(?P<op>[^\]]+)\] NaN at index (?P<i>\d+) \((?P<a>[^=\s]+)=(?P<va>\S+) (?P<b>[^=\s]+)=(?P<vb>\S+)\)"
)
_CASE_LINE = re.compile(r"(?:^|\s)(?P<op>[A-Z][A-Z0-9_]*)\((?P<params>.*)\): (?P<rest>.*)$")
_NOT_SUPPORTED = re.compile(r"not supported \[(?P<who>[^\]]*)\]")
_MESSAGES = re.compile(
    r"\[[^\]]+\] (?:NaN at index \d+ \([^)]*\)|ERR = \S+ > \S+|inf (?:sign )?mismatch: [^\[]*?(?=\s\s|\s*$)|"
    r"MAA = \S+ > \S+|nonfinite gradient[^\[]*)|sentinel mismatch: \S+|failed to allocate[^\[]*\]|compare failed"
)


@dataclass(frozen=True)
class SupportParse:
    ops: tuple[OpResult, ...]
    header: tuple[str, ...]
    problems: tuple[str, ...]  # malformed rows / missing header, named
    backend_names: tuple[str, ...]
    backend_reg_names: tuple[str, ...]


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def parse_generic_params(params: str) -> dict[str, object]:
    """``name``, ``output`` (TensorShape), ``sources`` and ``op_params`` of a generic case string;
    ``{}`` when the string is not of that form (a built-in test case)."""
    m = re.match(
        r"^(?:name=(?P<name>.*?),)?type=(?P<type>[a-z0-9_]+),ne=\[(?P<ne>-?\d+(?:,-?\d+){3})\],"
        r"op_params=\[(?P<op>[^\]]*)\],sources=(?P<src>.*)$",
        params,
    )
    if not m:
        return {}
    try:  # a number too long for Python's int() (> 4300 digits) is no tensor dimension
        ne = tuple(int(x) for x in m["ne"].split(","))
        sources = tuple(
            TensorShape(
                s["type"],
                tuple(int(x) for x in s["ne"].split(",")),  # type: ignore[arg-type]
                tuple(int(x) for x in s["nb"].split(",")) if s["nb"] else (),
            )
            for s in _SHAPE.finditer(m["src"])
        )
    except ValueError:
        return {}
    op_params: list[int] = []
    for pair in filter(None, m["op"].split(",")):
        idx, _, val = pair.partition(":")
        try:
            op_params.extend((int(idx), int(val)))
        except ValueError:
            continue
    return {
        "name": m["name"] or "",
        "output": TensorShape(m["type"], ne),  # type: ignore[arg-type]
        "sources": sources,
        "op_params": tuple(op_params),
    }


def op_result(op: str, params: str, **kw: object) -> OpResult:
    info = parse_generic_params(params)
    return OpResult(op=op, params=params, **info, **kw)  # type: ignore[arg-type]


def parse_support_csv(lines: Iterable[str], *, backend: str | None = None) -> SupportParse:
    """Parse ``test-backend-ops support --output csv`` stdout (log lines mixed in are skipped)."""
    header: list[str] | None = None
    problems: list[str] = []
    ops: dict[str, OpResult] = {}
    names: set[str] = set()
    regs: set[str] = set()
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line.startswith('"'):
            continue  # a log line (stderr merged, or "Testing N devices" of another printer)
        try:
            row = next(csv.reader([line], strict=True))
        except (csv.Error, StopIteration) as exc:
            problems.append(f"line {n}: not CSV ({exc}): {line[:200]}")
            continue
        if header is None:
            if any(f in row for f in CSV_FIELDS):
                header = row
                missing = [f for f in REQUIRED_CSV_FIELDS if f not in header]
                if missing:
                    problems.append(f"line {n}: CSV header lacks {', '.join(missing)}: {line[:200]}")
                    header = None
                    break
                continue
            problems.append(f"line {n}: CSV row before any header: {line[:200]}")
            continue
        if len(row) != len(header):
            problems.append(f"line {n}: {len(row)} fields, header has {len(header)}: {line[:200]}")
            continue
        rec = dict(zip(header, row, strict=True))
        if rec.get("test_mode", "support") not in ("support", ""):
            continue
        if backend and rec.get("backend_name") and rec["backend_name"] != backend:
            continue
        value = rec["supported"].strip().lower()
        if value in ("1", "true", "yes"):
            supported = "yes"
        elif value in ("0", "false", "no"):
            supported = "no"
        else:
            problems.append(f"line {n}: supported={rec['supported']!r} is neither 1 nor 0")
            continue
        names.add(rec.get("backend_name", ""))
        regs.add(rec.get("backend_reg_name", ""))
        result = op_result(rec["op_name"], rec["op_params"], supported=supported)
        ops.setdefault(result.key, result)
    if header is None and not problems:
        problems.append("no CSV header in the output (is this test-backend-ops --output csv?)")
    return SupportParse(
        tuple(ops.values()),
        tuple(header or ()),
        tuple(problems),
        tuple(sorted(n for n in names if n)),
        tuple(sorted(r for r in regs if r)),
    )


def _is_nan(text: str) -> bool:
    return text.strip().lstrip("+-").lower().startswith("nan")


def classify_nan(message: str, backend: str) -> OpTest | None:
    """``nan-both`` when both sides of a NaN report are NaN, ``nan-reference`` when only the CPU
    reference is, ``None`` when the backend alone produced NaN (a real wrong result) or no NaN."""
    m = _NAN.search(message)
    if not m:
        return None
    a_nan, b_nan = _is_nan(m["va"]), _is_nan(m["vb"])
    if a_nan and b_nan:
        return "nan-both"
    # the compare callback prints (backend1=…, backend2=…): backend1 is the tested one, backend2 the CPU
    tested_nan = a_nan if m["a"] == backend or m["b"] != backend else b_nan
    ref_nan = b_nan if m["a"] == backend or m["b"] != backend else a_nan
    if ref_nan and not tested_nan:
        return "nan-reference"
    return None


@dataclass(frozen=True)
class TestLine:
    op: str
    params: str
    outcome: OpTest
    message: str


def parse_test_line(line: str, backend: str, known: Sequence[str] = ()) -> TestLine | None:
    """One console line of ``test`` mode, or None. ``known``: exact case keys ``OP(params)`` from
    the support CSV, matched first (params may themselves contain ``): `` in tensor names)."""
    text = strip_ansi(line).rstrip()
    op = params = rest = ""
    before = ""
    for key in known:
        at = text.find(key + ": ")
        if at >= 0:
            op, _, params = key.partition("(")
            params = params[:-1]
            before, rest = text[:at], text[at + len(key) + 2 :]
            break
    if not op:
        m = _CASE_LINE.search(text)
        if not m:
            return None
        op, params, rest = m["op"], m["params"], m["rest"]
        before = text[: m.start("op")]
    rest = rest.strip()
    messages = [s.strip() for s in (_MESSAGES.findall(before) + _MESSAGES.findall(rest))]
    message = "; ".join(dict.fromkeys(messages))
    outcome: OpTest
    if _NOT_SUPPORTED.search(rest) or rest.startswith("not supported"):
        outcome = "not-supported"
    elif rest.endswith("OK") and "FAIL" not in rest:
        outcome = "ok"
    elif rest.endswith("FAIL"):
        outcome = _nan_verdict(messages, backend) or "fail"
    elif rest.startswith("skipping"):
        outcome = "not-run"
    else:
        return None
    return TestLine(op, params, outcome, message)


def _nan_verdict(messages: Sequence[str], backend: str) -> OpTest | None:
    """``nan-both`` / ``nan-reference`` when every failure message is such a NaN report."""
    if not messages:
        return None
    verdicts = [classify_nan(m, backend) for m in messages]
    if any(v is None for v in verdicts):
        return None
    return "nan-reference" if "nan-reference" in verdicts else "nan-both"


def parse_test_output(lines: Iterable[str], backend: str, cases: Sequence[OpResult]) -> dict[str, TestLine]:
    """Map case key -> the test line for it (cases missing from the output are absent)."""
    keys = [c.key for c in cases]
    out: dict[str, TestLine] = {}
    for line in lines:
        if "): " not in line:
            continue
        parsed = parse_test_line(line, backend, keys)
        if parsed:
            out.setdefault(f"{parsed.op}({parsed.params})", parsed)
    return out


def merge_test(cases: Sequence[OpResult], results: dict[str, TestLine]) -> tuple[OpResult, ...]:
    return tuple(
        replace(c, test=results[c.key].outcome, message=results[c.key].message) if c.key in results else c
        for c in cases
    )
