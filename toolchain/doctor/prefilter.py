"""Prefilter keywords derived from the catalog's regexes (no hand-tuned substrings).

The classifier looks only at lines holding a keyword, so a pattern's keywords must be such that
every line its regex matches contains one of them. :func:`required_literals` reads that from the
parsed regex: for a sequence, a literal run every match contains (or, for a group or an
alternation in it, one literal per branch); for an alternation, one per branch. A regex with no
such literal is refused (it could only be found by running it on every line).

:func:`choose_keywords` then covers all patterns with few short needles, since each needle is one
``bytes.find`` pass over every block of the log: greedily, the substring (``MIN_NEEDLE`` to
``MAX_NEEDLE`` characters, or a whole literal shorter than that) found in most still-uncovered
literals, the longer one on a tie (fewer false hits). Deterministic: the same catalog gives the
same keywords.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

# re's own parser (Python >= 3.11 names it re._parser; the sre_parse alias warns): a regex is read
# exactly as re reads it
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

MIN_NEEDLE = 4
MAX_NEEDLE = 8


def _best(candidates: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The alternative set whose shortest member is longest (then: the fewest members)."""
    if not candidates:
        return None
    return max(candidates, key=lambda alts: (min(len(a) for a in alts), -len(alts)))


def _options(items: Any) -> list[tuple[str, ...]]:
    """Each a set of literals one of which every match contains (all of them hold at once)."""
    candidates: list[tuple[str, ...]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            candidates.append(("".join(run),))
            run.clear()

    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        flush()
        sub: tuple[str, ...] | None = None
        if op is _c.SUBPATTERN:
            sub = _best(_options(av[3]))
        elif op is _c.BRANCH:
            branches = [_best(_options(b)) for b in av[1]]
            if all(b is not None for b in branches):
                sub = tuple(dict.fromkeys(a for b in branches if b is not None for a in b))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and av[0] >= 1:
            sub = _best(_options(av[2]))
        if sub:
            candidates.append(sub)
    flush()
    return candidates


def required_literals(regex: str) -> list[tuple[str, ...]]:
    """Options, each a set of literals one of which every line matching ``regex`` contains.

    ``foo \\d+ (?:bar|qux)`` gives ``[("foo ",), (" ",), ("bar", "qux")]``: a match contains "foo "
    and " " and "bar" or "qux". ValueError when there is no option.
    """
    parsed = _parser.parse(regex)
    if parsed.state.flags & re.IGNORECASE:
        raise ValueError(f"regex {regex!r}: case-insensitive patterns cannot be prefiltered")
    found = _options(parsed)
    if not found:
        raise ValueError(f"regex {regex!r} has no literal every match contains: it cannot be prefiltered")
    return found


def _pieces(literal: str) -> set[str]:
    """Needle candidates for one literal: pieces of its words (a needle never spans a word break)."""
    words = [w for w in re.findall(r"\w+", literal) if len(w) >= MIN_NEEDLE]
    if not words:
        return {literal}
    return {
        w[i : i + n]
        for w in words
        for n in range(MIN_NEEDLE, min(MAX_NEEDLE, len(w)) + 1)
        for i in range(len(w) - n + 1)
    }


def _keywords(options: list[tuple[str, ...]], chosen: list[str]) -> tuple[str, ...] | None:
    """The chosen needles for the first option whose every literal holds one ('None': none yet)."""
    for option in options:
        picks = [next((k for k in chosen if k in lit), None) for lit in option]
        if all(picks):
            return tuple(sorted({k for k in picks if k}))
    return None


def choose_keywords(regexes: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Pattern id -> its keywords: needles shared across patterns, one inside each literal it needs."""
    options = {pid: required_literals(regex) for pid, regex in regexes.items()}
    units: dict[str, set[tuple[str, str]]] = {}  # needle -> (pattern, literal) it lies in
    for pid, opts in options.items():
        for lit in {lit for option in opts for lit in option}:
            for piece in _pieces(lit):
                units.setdefault(piece, set()).add((pid, lit))
    # of the pieces found in the same literals only the longest can win: keep those
    best: dict[frozenset[tuple[str, str]], str] = {}
    for piece, where in units.items():
        key = frozenset(where)
        if key not in best or (len(piece), piece) > (len(best[key]), best[key]):
            best[key] = piece
    hits = {piece: {pid for pid, _ in where} for where, piece in best.items()}
    pool = dict(hits)
    chosen: list[str] = []
    left = set(options)
    while left:
        needle = max(pool, key=lambda k: (len(pool[k] & left), len(k), k))
        del pool[needle]
        chosen.append(needle)
        left -= {pid for pid in hits[needle] & left if _keywords(options[pid], chosen) is not None}
    # drop needles that later ones made unneeded (latest picked first: they cover the fewest)
    for needle in reversed(chosen[:]):
        rest = [k for k in chosen if k != needle]
        if all(_keywords(options[pid], rest) for pid in hits[needle]):
            chosen = rest
    out = {pid: _keywords(options[pid], chosen) for pid in regexes}
    return {pid: kws for pid, kws in out.items() if kws}
