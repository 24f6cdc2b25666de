"""One support table of the tree (docs/ops/<Backend>.csv) against ours: matched, compared, explained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..core.tree import BACKEND_OPS_SOURCE
from . import normalise
from .probe import SupportRow
from .records import (
    OBSERVED_BY,
    TableValidation,
)
from .validate import (
    Comparison,
    Evidence,
    Table,
    agreement,
    compare,
    explain,
    index,
    per_op,
    summarise,
    unmatched,
)

NORMALISATION_RULES = (
    "split: op_params split on top-level commas (brackets kept)",
    "renames: old parameter names become the tree's (see renames), in place",
    "defaults: a parameter not every side has for that op is dropped where its value is its default "
    "argument in test-backend-ops.cpp (of this tree and the older one); with another value the case is unmatched",
    "duplicates: identical normalised cases with one answer count once; with different answers they are ambiguous",
    "matched: a case the CSV has and every profile's enumeration has, by (op_name, normalised case)",
)


def by_backend(rows: Sequence[SupportRow]) -> dict[str, list[SupportRow]]:
    out: dict[str, list[SupportRow]] = {}
    for r in rows:
        out.setdefault(r.backend, []).append(r)
    return out


def test_sources(*trees: Path | None) -> list[str]:
    texts = []
    for t in trees:
        if t is not None and (t / BACKEND_OPS_SOURCE).is_file():
            texts.append((t / BACKEND_OPS_SOURCE).read_text(encoding="utf-8", errors="replace"))
    return texts


def table_validation(
    backend: str,
    reference_path: Path,
    reference_rows: Sequence[SupportRow],
    ours: dict[str, list[SupportRow]],
    norm: normalise.Normaliser,
    *,
    ours_label: str,
    observed_by: str,
    evidence_for: dict[str, Evidence] | None,
    min_agreement: float,
    gate: bool,
) -> tuple[TableValidation, Comparison, Table]:
    ref = index(reference_rows, norm)
    tables = {name: index(rows, norm) for name, rows in ours.items()}
    comparison = compare(tables, ref)
    rates = agreement(comparison)
    best_rate = rates[0].agreement if rates else 0.0
    best = tuple(a.profile for a in rates if a.agreement == best_rate)
    first = best[0] if best else ""
    other = {name: comparison.per_profile[name] for name in comparison.per_profile}
    ev = (evidence_for or {}).get(first, Evidence())
    ev = Evidence(ev.older_rules, ev.older_rules_label, ev.older_tree, ev.older_tree_label, other)
    dis = explain(comparison, first, ev) if first else ()
    if not gate:  # a measurement on this machine: listed as a finding, not explained away
        dis = tuple(
            replace(
                d,
                explanation="measured-difference",
                detail=(
                    "this machine's build answers differently from upstream's capture (capture machine and "
                    "commit unknown); reported, not gated"
                ),
            )
            for d in dis
        )
    unexplained = sum(d.explanation == "unexplained" for d in dis) if gate else 0
    problems = []
    if gate:
        if best_rate < min_agreement:
            problems.append(f"best agreement {best_rate:.2%} < {min_agreement:.0%}")
        if unexplained:
            problems.append(f"{unexplained} unexplained disagreement(s)")
    status = ("failed" if problems else "ok") if gate else "reported"
    reason = (
        "; ".join(problems)
        if problems
        else (f"{len(comparison.matched)} cases matched; best {', '.join(best)} at {best_rate:.2%}")
    )
    union: Table = Table({}, frozenset(), {}, 0)
    for t in tables.values():
        union = Table(
            {**union.answers, **t.answers},
            union.ambiguous | t.ambiguous,
            {**union.blockers, **t.blockers},
            t.rows,
        )
    result = TableValidation(
        backend=backend,
        status=status,
        reason=reason,
        reference=str(reference_path),
        ours=ours_label,
        observed_by=observed_by,
        reference_rows=ref.rows,
        reference_cases=len(ref.answers) + len(ref.ambiguous),
        our_cases=len(union.answers) + len(union.ambiguous),
        matched=len(comparison.matched),
        unmatched=unmatched("reference", ref, union) + unmatched("predicted", union, ref),
        profiles=rates,
        best_profiles=best,
        best_agreement=best_rate,
        per_op=per_op(comparison, first) if first else (),
        disagreements=dis,
        explanations=summarise(dis),
        unexplained=unexplained,
    )
    return result, comparison, ref


def skipped(
    backend: str, reference: Path, reason: str, ours: str = "", observed_by: str = OBSERVED_BY
) -> TableValidation:
    return TableValidation(
        backend=backend,
        status="skipped",
        reason=reason,
        reference=str(reference),
        ours=ours,
        observed_by=observed_by,
    )
