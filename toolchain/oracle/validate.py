"""Join support tables, count agreement, and explain every disagreement.

The tree carries real-device evidence: ``docs/ops/<Backend>.csv`` is ``test-backend-ops support
--output csv`` captured by upstream on real hardware. ``compare`` joins such a table with ours
(normalised by :mod:`.normalise`), ``explain`` labels each disagreement:

- ``stale-csv``: the older tree's supports_op gives the CSV's answer for this very case (run on this
  tree's cases with the older tree's rules, or in the older tree's own enumeration): the CSV was
  captured before the code changed;
- ``profile-mismatch``: another oracle profile gives the CSV's answer;
- ``unexplained``: none of the above. Unexplained disagreements fail ``oracle validate``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .normalise import Normaliser
from .probe import SupportRow

Key = tuple[str, str]  # (op, normalised case)


@dataclass(frozen=True)
class Disagreement:
    op: str
    case: str  # normalised case string (as the tree prints it, after the rules)
    predicted: bool
    reference: bool  # the CSV's answer
    explanation: str  # stale-csv | profile-mismatch | unexplained
    detail: str


@dataclass(frozen=True)
class OpAgreement:
    op: str
    matched: int
    agree: int

    @property
    def rate(self) -> float:
        return round(self.agree / self.matched, 6) if self.matched else 0.0


@dataclass(frozen=True)
class ProfileAgreement:
    profile: str
    matched: int
    agree: int
    agreement: float
    disagreements_by_op: dict[str, int]


@dataclass(frozen=True)
class Unmatched:
    side: str  # "reference" (in the CSV only) or "predicted" (in the tree only)
    reason: str
    count: int
    by_op: dict[str, int]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """Unique normalised cases of one side -> answer; ambiguous ones apart; blocker reasons."""

    answers: dict[Key, bool]
    ambiguous: frozenset[Key]
    blockers: dict[Key, str]
    rows: int


def by_count(counts: Counter[str]) -> dict[str, int]:
    """Most first, ties by name: the same report from the same inputs in every process (a Counter's
    ties keep insertion order, which follows set iteration and so the process's hash seed)."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def index(rows: Iterable[SupportRow], norm: Normaliser) -> Table:
    seen: dict[Key, set[bool]] = defaultdict(set)
    blockers: dict[Key, str] = {}
    n = 0
    for row in rows:
        n += 1
        case, blocker = norm.canonical(row.op, row.case)
        key = (row.op, case)
        seen[key].add(row.supported)
        if blocker:
            blockers[key] = blocker
    answers = {k: next(iter(v)) for k, v in seen.items() if len(v) == 1}
    ambiguous = frozenset(k for k, v in seen.items() if len(v) > 1)
    return Table(answers, ambiguous, blockers, n)


def unmatched(side: str, mine: Table, other: Table, limit: int = 5) -> tuple[Unmatched, ...]:
    other_ops = {op for op, _ in other.answers} | {op for op, _ in other.ambiguous}
    groups: dict[str, list[Key]] = defaultdict(list)
    for key in mine.answers.keys() - other.answers.keys():
        if key in other.ambiguous:
            reason = "ambiguous on the other side (same case, different answers)"
        elif key[0] not in other_ops:
            reason = (
                "op absent from the CSV (added to the tree after the capture)"
                if side == "predicted"
                else "op no longer tested by the tree"
            )
        elif key in mine.blockers:
            what = "added after the capture" if side == "predicted" else "removed from the tree"
            reason = f"has a parameter the other side lacks, not at its default ({what})"
        else:
            reason = (
                "case not in the CSV (added or changed after the capture)"
                if side == "predicted"
                else "case no longer enumerated by the tree (removed or changed)"
            )
        groups[reason].append(key)
    for key in mine.ambiguous:
        groups["ambiguous (same normalised case, different answers)"].append(key)
    out = []
    for reason, keys in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        by_op = by_count(Counter(op for op, _ in keys))
        examples = tuple(f"{op} {case}" for op, case in sorted(keys)[:limit])
        first = sorted(keys)[0]
        extra = (
            f"; e.g. {mine.blockers[first]}"
            if reason.startswith("has a parameter") and first in mine.blockers
            else ""
        )
        out.append(Unmatched(side, reason + extra, len(keys), by_op, examples))
    return tuple(out)


@dataclass(frozen=True)
class Comparison:
    matched: tuple[Key, ...]
    per_profile: dict[str, dict[Key, bool]]  # profile -> its answers on matched keys
    reference: dict[Key, bool]


def compare(profiles: Mapping[str, Table], reference: Table) -> Comparison:
    """Matched = keys the reference has and *every* profile table has (one enumeration, same keys)."""
    keys = set(reference.answers)
    for table in profiles.values():
        keys &= set(table.answers)
    matched = tuple(sorted(keys))
    per = {name: {k: t.answers[k] for k in matched} for name, t in profiles.items()}
    return Comparison(matched, per, {k: reference.answers[k] for k in matched})


def agreement(comparison: Comparison) -> tuple[ProfileAgreement, ...]:
    out = []
    for name, answers in comparison.per_profile.items():
        bad = Counter(op for k, v in answers.items() if v != comparison.reference[k] for op in [k[0]])
        agree = len(answers) - sum(bad.values())
        rate = round(agree / len(answers), 6) if answers else 0.0
        out.append(ProfileAgreement(name, len(answers), agree, rate, by_count(bad)))
    return tuple(sorted(out, key=lambda a: (-a.agreement, a.profile)))


def per_op(comparison: Comparison, profile: str) -> tuple[OpAgreement, ...]:
    matched: Counter[str] = Counter()
    agree: Counter[str] = Counter()
    for key, value in comparison.per_profile[profile].items():
        matched[key[0]] += 1
        agree[key[0]] += value == comparison.reference[key]
    return tuple(OpAgreement(op, matched[op], agree[op]) for op in sorted(matched))


@dataclass(frozen=True)
class Evidence:
    """Answers that can explain a disagreement, each labelled with where it came from."""

    older_rules: Mapping[Key, bool] = field(default_factory=dict)  # older supports_op, this tree's cases
    older_rules_label: str = ""
    older_tree: Mapping[Key, bool] = field(default_factory=dict)  # the older tree's own enumeration
    older_tree_label: str = ""
    other_profiles: Mapping[str, Mapping[Key, bool]] = field(default_factory=dict)


def explain(comparison: Comparison, profile: str, evidence: Evidence) -> tuple[Disagreement, ...]:
    out: list[Disagreement] = []
    for key, predicted in comparison.per_profile[profile].items():
        ref = comparison.reference[key]
        if predicted == ref:
            continue
        if evidence.older_rules.get(key) == ref:
            kind, detail = (
                "stale-csv",
                (
                    f"the older supports_op ({evidence.older_rules_label}) gives the CSV's answer on this case: "
                    "the CSV was captured before this rule changed"
                ),
            )
        elif evidence.older_tree.get(key) == ref:
            kind, detail = (
                "stale-csv",
                (
                    f"the older tree ({evidence.older_tree_label}) gives the CSV's answer on this case: "
                    "the CSV was captured before this rule changed"
                ),
            )
        else:
            agreeing = sorted(
                n for n, t in evidence.other_profiles.items() if n != profile and t.get(key) == ref
            )
            if agreeing:
                kind, detail = "profile-mismatch", f"profile(s) {', '.join(agreeing)} give the CSV's answer"
            else:
                why = []
                if evidence.older_rules_label or evidence.older_tree_label:
                    older = evidence.older_rules.get(key, evidence.older_tree.get(key))
                    why.append(
                        "the older tree has no such case"
                        if older is None
                        else "the older tree answers as this tree"
                    )
                else:
                    why.append("no older tree given to check staleness")
                kind, detail = "unexplained", "; ".join(why) + "; no profile gives the CSV's answer"
        out.append(Disagreement(key[0], key[1], predicted, ref, kind, detail))
    return tuple(out)


def summarise(disagreements: Sequence[Disagreement]) -> dict[str, dict[str, int]]:
    """explanation -> op -> count."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for d in disagreements:
        out[d.explanation][d.op] += 1
    return {k: by_count(v) for k, v in sorted(out.items())}
