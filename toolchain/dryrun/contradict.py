"""Where ``metal-predicted`` says "supported" but the dry run finds that the tree cannot encode the op.

The oracle answers ``supports_op`` (predicted-from-source); the dry run runs the tree's encoders on
the same case for the same profile. A case the oracle accepts and the dry run finds
``missing-kernel``, ``encoder-abort`` or ``over-limit`` is what a Mac dies on at the first token:
it must never be shown as a clean pass. The join is by (profile, op, case string): both sides are
the same tree's test-backend-ops printing the same cases (an ops file, or the built-in cases).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import DryRunUnavailableError
from ..oracle.profiles import DeviceProfile
from ..oracle.records import Contradiction, DryRunCrossCheck, Predictions
from .records import CaseResult, DryRun
from .run import DEFAULT_PROFILES, dry_run

CANNOT_ENCODE = ("missing-kernel", "encoder-abort", "over-limit")


def detail(f: CaseResult) -> str:
    if f.missing:
        return ", ".join(m.base if m.base == m.name else f"{m.base} ({m.name})" for m in f.missing)
    if f.abort:
        return f.abort.strip().splitlines()[0][:300]
    return ", ".join(f"{lim.what} {lim.value} > {lim.limit} in {lim.kernel}" for lim in f.limits)


def cannot_encode(run: DryRun) -> dict[tuple[str, str, str], CaseResult]:
    """(profile, op, case) -> the dry run's finding, for every case it cannot encode."""
    out: dict[tuple[str, str, str], CaseResult] = {}
    for batch in run.runs:
        for p in batch.results:
            for f in p.findings:
                if f.verdict in CANNOT_ENCODE:
                    out.setdefault((p.profile, f.op, f.case), f)
    return out


def cross_check(supported: Iterable[tuple[str, str, str]], run: DryRun) -> DryRunCrossCheck:
    """``supported``: (profile, op, case) the oracle accepts."""
    bad = cannot_encode(run)
    ran = {p.profile for b in run.runs for p in b.results}
    cases: list[Contradiction] = []
    compared = 0
    for key in dict.fromkeys(supported):
        if key[0] not in ran:
            continue
        compared += 1
        f = bad.get(key)
        if f is not None:
            cases.append(Contradiction(key[0], key[1], key[2], f.verdict, detail(f)))
    return DryRunCrossCheck(
        True,
        f"{compared} predicted-supported cases dry-run on {', '.join(sorted(ran))}: "
        f"{len(cases)} cannot be encoded",
        run.program,
        tuple(sorted(ran)),
        compared,
        dict(Counter(c.profile for c in cases)),
        dict(Counter(c.verdict for c in cases)),
        tuple(cases),
    )


def check_predictions(preds: Predictions, tree: Path, cache_dir: Path, work: Path) -> Predictions:
    """``preds`` with the dry run of the same ops file on the same profiles: each supported op the
    dry run cannot encode says so (``OpPrediction.dryrun``), counted per profile; when the dry run
    is unavailable for the tree, ``preds.dryrun`` says why and nothing else changes."""
    names = [p.profile for p in preds.profiles]
    try:
        run = dry_run(tree, cache_dir, work, batches=[("ops", Path(preds.ops_file))], profiles=names)
    except DryRunUnavailableError as exc:
        return replace(preds, dryrun=DryRunCrossCheck(False, exc.message))
    supported = [(p.profile, o.op, o.case) for p in preds.profiles for o in p.ops if o.supported]
    check = cross_check(supported, run)
    bad = {(c.profile, c.op, c.case): c for c in check.cases}
    profiles = []
    for p in preds.profiles:
        ops = tuple(
            replace(o, dryrun=f"{c.verdict}: {c.detail}") if (c := bad.get((p.profile, o.op, o.case))) else o
            for o in p.ops
        )
        profiles.append(replace(p, ops=ops, dryrun_cannot_encode=sum(1 for o in ops if o.dryrun)))
    return replace(preds, profiles=tuple(profiles), dryrun=check)


def built_in_cross_check(
    rows: Iterable[tuple[str, str, str, bool]],
    profiles: Sequence[DeviceProfile],
    *,
    tree: Path,
    cache_dir: Path,
    work: Path,
) -> DryRunCrossCheck:
    """The oracle's answers on the built-in cases (``(profile, op, case, supported)``) against the dry
    run of the same cases on those of its ``profiles`` the dry run runs by default."""
    names = [p.name for p in profiles if p.name in DEFAULT_PROFILES]
    try:
        run = dry_run(tree, cache_dir, work, batches=[("built-in", None)], profiles=names)
    except DryRunUnavailableError as exc:
        return DryRunCrossCheck(False, exc.message)
    return cross_check([(p, op, case) for p, op, case, ok in rows if ok], run)
