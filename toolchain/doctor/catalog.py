"""The failure catalog: fourteen classes in the Apple Silicon diagnostic order, read from ``catalog.toml``.

The classes of the README's doctor table. Each class has a stable ``id`` (the JSON name), its
``order`` (most likely first: its position in the file), a title, the fix, and the log patterns
that show it. The data is a TOML file beside this module, one row per pattern with named fields
(no positional arguments to misread; a pattern added or reworded is a one-line diff); this module
only types, checks and indexes it.

Patterns come from three places (``origin``):

- ``tree``: a format string in the llama.cpp tree (file in ``sources``). The drift guard
  (:mod:`toolchain.doctor.drift`) renders the tree's format strings and fails when ``drift_regex``
  (default: ``regex``) no longer matches any of them.
- ``legacy``: printed by older trees only; ``seen_in`` names where (``0.3.20`` is checked against
  that tree by the tests; ``ggml-metal.m`` is the 2023-2024 single-file Metal backend, whose
  ``ggml_metal_init:`` lines users still paste).
- ``system``: not a format string of the tree: macOS / Metal framework / dyld / shell output, or
  values (device and buffer names) filled into the tree's format strings; ``drift_regex`` then
  checks the surrounding format string where there is one.

Every pattern has ``keywords``: literals, one of which every line it matches contains. The
classifier searches for keywords first (fast, in blocks) and runs regexes only on those lines.
They are derived, not written: :mod:`toolchain.doctor.prefilter` reads from each regex the
literals a matching line must contain and picks a few short substrings shared by many patterns.

Severity: ``error`` (the run failed or will), ``warning`` (runs, degraded), ``info`` (an
observation: a finding only as part of a ``Combination``, otherwise a recorded fact). ``weight``
is how strongly one line points at the class; a finding's confidence combines its distinct
patterns' weights. ``explained_by`` drops a match when one of the named patterns matched too
(the generic "command buffer failed" line is a memory problem when the OOM line follows).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal, NotRequired, TypedDict, Unpack, cast

from .findings import Evidence, Finding, ObservedBy, Severity
from .prefilter import choose_keywords

Origin = Literal["tree", "legacy", "system"]
_SEVERITIES = ("error", "warning", "info")
_ORIGINS = ("tree", "legacy", "system")


@dataclass(frozen=True)
class Pattern:
    id: str
    regex: str
    keywords: tuple[str, ...]  # literals: every matching line contains at least one of them
    severity: Severity
    weight: float
    origin: Origin
    sources: tuple[str, ...] = ()
    seen_in: str = ""  # legacy patterns: "0.3.20" or "ggml-metal.m"
    drift_regex: str = ""  # what the drift guard matches against the tree (default: regex)
    explained_by: tuple[str, ...] = ()
    when: str = ""  # name of a predicate on the match (classify.PREDICATES), e.g. a threshold
    note: str = ""

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.regex)

    @property
    def checked_regex(self) -> str:
        """The regex the drift guard checks against the current tree ('' = not checked there)."""
        if self.drift_regex:
            return self.drift_regex
        return self.regex if self.origin == "tree" else ""


@dataclass(frozen=True)
class Combination:
    """When all ``requires`` patterns matched, the class is a finding of ``severity``."""

    requires: tuple[str, ...]
    severity: Severity
    weight: float
    reason: str


class FindingFacts(TypedDict):
    """What a finding says beyond its class (the fields of :class:`Finding` a check decides)."""

    severity: Severity
    confidence: float
    summary: str
    observed_by: ObservedBy
    evidence: NotRequired[tuple[Evidence, ...]]
    matches: NotRequired[int]


@dataclass(frozen=True)
class FailureClass:
    id: str
    order: int
    title: str
    how_it_shows: str
    fix: str
    patterns: tuple[Pattern, ...]
    combinations: tuple[Combination, ...] = ()

    def finding(self, **facts: Unpack[FindingFacts]) -> Finding:
        """A finding of this class (its id, title, fix and diagnostic order come from the class)."""
        return Finding(class_id=self.id, title=self.title, fix=self.fix, order=self.order, **facts)


_PATTERN_FIELDS = frozenset(
    {
        "id",
        "regex",
        "severity",
        "weight",
        "origin",
        "sources",
        "seen_in",
        "drift_regex",
        "explained_by",
        "when",
        "note",
    }
)


def _expand(names: list[str], groups: Mapping[str, list[str]]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        out.extend(groups[name[1:]] if name.startswith("@") else [name])
    return tuple(out)


def _pattern(row: Mapping[str, Any], groups: Mapping[str, list[str]], keywords: tuple[str, ...]) -> Pattern:
    unknown = set(row) - _PATTERN_FIELDS
    if unknown or row["severity"] not in _SEVERITIES or row["origin"] not in _ORIGINS:
        raise ValueError(f"catalog.toml: pattern {row.get('id')!r}: bad field(s) {sorted(unknown)}")
    return Pattern(
        id=row["id"],
        regex=row["regex"],
        keywords=keywords,
        severity=row["severity"],
        weight=float(row["weight"]),
        origin=row["origin"],
        sources=tuple(row.get("sources", ())),
        seen_in=row.get("seen_in", ""),
        drift_regex=row.get("drift_regex", ""),
        explained_by=_expand(row.get("explained_by", []), groups),
        when=row.get("when", ""),
        note=row.get("note", ""),
    )


def load(text: str) -> tuple[FailureClass, ...]:
    """The classes of a catalog in ``catalog.toml``'s format (a broken catalog is a ValueError)."""
    data = tomllib.loads(text)
    groups = cast(dict[str, list[str]], data.get("groups", {}))
    rows = [row for cls in data["class"] for row in cls["patterns"]]
    keywords = choose_keywords({row["id"]: row["regex"] for row in rows})
    classes = []
    for order, cls in enumerate(data["class"], start=1):
        classes.append(
            FailureClass(
                id=cls["id"],
                order=order,
                title=cls["title"],
                how_it_shows=cls["how_it_shows"],
                fix=cls["fix"],
                patterns=tuple(_pattern(row, groups, keywords[row["id"]]) for row in cls["patterns"]),
                combinations=tuple(
                    Combination(tuple(c["requires"]), c["severity"], float(c["weight"]), c["reason"])
                    for c in cls.get("combinations", ())
                ),
            )
        )
    return tuple(classes)


CLASSES: tuple[FailureClass, ...] = load(
    resources.files(__package__).joinpath("catalog.toml").read_text(encoding="utf-8")
)
BY_ID: Mapping[str, FailureClass] = MappingProxyType({c.id: c for c in CLASSES})
PATTERNS: Mapping[str, Pattern] = MappingProxyType({p.id: p for c in CLASSES for p in c.patterns})
