"""Drift guard: do the catalog's patterns still match what the llama.cpp tree at hand prints?

The tree's C/C++/Objective-C sources are read for string literals (adjacent literals and
``PRIu64``-style macros between them are joined), each literal is rendered as a log line would
look (``%d`` -> ``0``, ``%.2f`` -> ``0.00``, ``%s``/``%c`` -> ``X``) and every pattern's
``checked_regex`` must match at least one rendered string. A pattern that matches nothing means
upstream reworded the message: the classifier would go silent on it, so the guard fails loudly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog import PATTERNS, Pattern

# Where llama.cpp prints from (relative to the tree root), and which files hold code.
SOURCE_DIRS = ("ggml/src", "ggml/include", "src", "common", "tools", "examples")
SOURCE_SUFFIXES = (".c", ".cpp", ".h", ".hpp", ".m", ".mm")

_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"'  # a string literal
    r"|'(?:[^'\\\n]|\\.)*'"  # a character literal (so '"' does not open a string)
    r"|\bPRI[diouxX]\w*\b"  # <inttypes.h> format macros between literals
    r"|//[^\n]*|/\*.*?\*/",  # comments: commented-out messages are not printed
    re.DOTALL,
)
_CONVERSION = re.compile(
    r"%(?P<flags>[-+ "
    r"#0']*)(?P<width>\d+|\*)?(?:\.(?P<prec>\d+|\*))?(?:hh|h|ll|l|j|z|t|L)?(?P<conv>[diouxXeEfFgGaAcspn%])"
)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'", "r": "\r", "0": ""}


@dataclass(frozen=True)
class FormatString:
    file: str  # relative to the tree
    line: int
    text: str  # rendered as it would print


@dataclass(frozen=True)
class DriftResult:
    pattern_id: str
    regex: str
    matched: bool
    where: str = ""  # file:line of the rendered string it matched (one in the pattern's sources if any)
    example: str = ""
    in_sources: bool = False  # matched in a file the catalog names


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _render(fmt: str) -> str:
    def conv(m: re.Match[str]) -> str:
        c = m.group("conv")
        if c == "%":
            return "%"
        if c in "diouxX":
            return "0"
        if c in "eEfFgGaA":
            prec = m.group("prec")
            digits = int(prec) if prec and prec.isdigit() else 2
            return "0." + "0" * digits if digits else "0"
        if c == "p":
            return "0x0"
        return "X"

    return _CONVERSION.sub(conv, fmt)


def _literal_groups(text: str) -> Iterator[tuple[int, str]]:
    """(offset, joined format) for each run of adjacent literals (with PRI macros between)."""
    parts: list[str] = []
    first = 0
    last_end = -1
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        adjacent = last_end >= 0 and not text[last_end : m.start()].strip()
        if tok.startswith('"'):
            if not (parts and adjacent):
                if parts:
                    yield first, "".join(parts)
                parts, first = [], m.start()
            parts.append(_unescape(tok[1:-1]))
            last_end = m.end()
        elif tok.startswith("PRI") and parts and adjacent:
            parts.append(tok[3])  # "%" PRIu64 -> %u
            last_end = m.end()
        else:
            if parts:
                yield first, "".join(parts)
            parts, last_end = [], -1
    if parts:
        yield first, "".join(parts)


def format_strings(tree: Path, dirs: Iterable[str] = SOURCE_DIRS) -> list[FormatString]:
    """Every string literal in the tree's sources, rendered as printed text (trailing newline cut)."""
    out: list[FormatString] = []
    for d in dirs:
        base = tree / d
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if '"' not in text:
                continue
            rel = str(path.relative_to(tree))
            for offset, fmt in _literal_groups(text):
                if len(fmt) < 4:
                    continue
                line = text.count("\n", 0, offset) + 1
                out.append(FormatString(rel, line, _render(fmt).rstrip("\n")))
    return out


def check_patterns(
    strings: list[FormatString], patterns: Iterable[Pattern] | None = None, *, legacy: str = ""
) -> list[DriftResult]:
    """Match each pattern against the rendered strings.

    Default: patterns the current tree must print (``checked_regex``). With ``legacy`` (a
    ``seen_in`` value such as ``0.3.20``): the legacy patterns recorded as printed by that tree.
    """
    pats = list(patterns if patterns is not None else PATTERNS.values())
    results: list[DriftResult] = []
    for p in pats:
        if legacy:
            if p.origin != "legacy" or p.seen_in != legacy:
                continue
            regex = p.regex
        else:
            regex = p.checked_regex
            if not regex:
                continue
        rx = re.compile(regex, re.MULTILINE)
        hits = [s for s in strings if rx.search(s.text)]
        named = [s for s in hits if s.file in p.sources]
        hit = (named or hits)[0] if hits else None
        results.append(
            DriftResult(
                pattern_id=p.id,
                regex=regex,
                matched=hit is not None,
                where=f"{hit.file}:{hit.line}" if hit else "",
                example=hit.text[:200] if hit else "",
                in_sources=bool(named),
            )
        )
    return results


def check_tree(tree: Path) -> list[DriftResult]:
    """The drift guard for one tree: every tree-checked pattern, matched or not."""
    return check_patterns(format_strings(tree))
