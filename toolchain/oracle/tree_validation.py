"""``validate_tree``: the oracle against the tree's docs/ops/Metal.csv, with an older tree's evidence."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ..core.git import tree_commit
from ..log import LOG
from . import normalise
from .extract import ExtractionFailed
from .measure import measured_tables
from .probe import Probe, ProbeUnavailable, ensure_probe, parse_support_csv, run_support
from .profiles import DeviceProfile, default_profiles, unmodelled
from .records import (
    OBSERVED_BY,
    STATEMENT,
    DryRunCrossCheck,
    OracleValidation,
    TableValidation,
)
from .run import METAL_CSV, MIN_AGREEMENT, probe_for, probe_info, profiles_before_probe
from .table import NORMALISATION_RULES, by_backend, skipped, table_validation, test_sources
from .validate import (
    Evidence,
    index,
)

# The caller's cross-check of the oracle's built-in answers (the dry run's: the oracle does not
# import the dry run, which is built on the oracle's cut).
CrossCheck = Callable[[list[tuple[str, str, str, bool]], Sequence[DeviceProfile]], DryRunCrossCheck]


def validate_tree(
    tree: Path,
    *,
    cache_dir: Path,
    older_tree: Path | None = None,
    profiles: Sequence[str] | Sequence[DeviceProfile] | None = None,
    measured_build: Path | None = None,
    min_agreement: float = MIN_AGREEMENT,
    commit: str | None = None,
    older_commit: str | None = None,
    cross_check: CrossCheck | None = None,
) -> OracleValidation:
    """Validate the oracle against ``docs/ops/Metal.csv`` of ``tree``; BLAS / CPU of a build too.

    ``older_tree``: an older tree of the same upstream, used to tell a stale CSV from a wrong
    oracle. ``cross_check``: the oracle's answers on the built-in cases (``(profile, op, case,
    supported)``) and its profiles -> how many of those it accepts the tree cannot encode (the Metal
    dry run's, given by the caller: ``toolchain.dryrun.contradict.built_in_cross_check``; kept as
    ``.dryrun``, counted, not failed: the table validation is about supports_op). ``measured_build``: a build dir (or its bin/) whose ``test-backend-ops`` is compared
    with ``docs/ops/BLAS.csv`` and ``CPU.csv``. Never raises on disagreement: look at ``.ok``.
    """
    start = time.monotonic()
    tree = tree.resolve()
    metal_csv = tree / METAL_CSV
    measured = measured_tables(tree, measured_build, older_tree)
    if not metal_csv.is_file():
        metal = skipped(
            "Metal",
            metal_csv,
            f"this tree has no {METAL_CSV}: nothing to validate against (older trees lack it)",
        )
        return _validation(tree, commit, older_tree, older_commit, True, None, (), metal, measured, start)
    chosen = profiles_before_probe(tree, profiles)
    probe = probe_for(tree, cache_dir)
    with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
        rows = run_support(probe, chosen, Path(tmp))
    ours = by_backend(rows)
    reference = parse_support_csv(metal_csv.read_text(encoding="utf-8"))
    norm = normalise.make_normaliser(
        [[(r.op, r.case) for r in reference], [(r.op, r.case) for rs in ours.values() for r in rs]],
        test_sources(tree, older_tree),
    )
    evidence: dict[str, Evidence] = {}
    if older_tree is not None:
        evidence = _older_evidence(tree, older_tree, cache_dir, chosen, norm, older_commit)
    metal, _cmp, _ref = table_validation(
        "Metal",
        metal_csv,
        reference,
        ours,
        norm,
        ours_label=f"oracle probe {probe.key}: test-backend-ops support over {len(chosen)} profile(s)",
        observed_by=OBSERVED_BY,
        evidence_for=evidence,
        min_agreement=min_agreement,
        gate=True,
    )
    ok = metal.status == "ok"
    result = _validation(tree, commit, older_tree, older_commit, ok, probe, chosen, metal, measured, start)
    if cross_check is not None:
        check = cross_check([(r.backend, r.op, r.case, r.supported) for r in rows], chosen)
        result = replace(result, dryrun=check, seconds=round(time.monotonic() - start, 2))
    return result


def _validation(
    tree: Path,
    commit: str | None,
    older_tree: Path | None,
    older_commit: str | None,
    ok: bool,
    probe: Probe | None,
    chosen: Sequence[DeviceProfile],
    metal: TableValidation,
    measured: tuple[TableValidation, ...],
    start: float,
) -> OracleValidation:
    return OracleValidation(
        observed_by=OBSERVED_BY,
        statement=STATEMENT,
        tree=str(tree),
        commit=commit or tree_commit(tree),
        older_tree=str(older_tree or ""),
        older_commit=older_commit or (tree_commit(older_tree) if older_tree else ""),
        ok=ok,
        normalisation=NORMALISATION_RULES,
        renames=normalise.RENAMES,
        probe=probe_info(probe) if probe else None,
        profiles=tuple(chosen),
        metal=metal,
        measured=measured,
        seconds=round(time.monotonic() - start, 2),
    )


def _older_evidence(
    tree: Path,
    older: Path,
    cache_dir: Path,
    chosen: Sequence[DeviceProfile],
    norm: normalise.Normaliser,
    older_commit: str | None,
) -> dict[str, Evidence]:
    label = f"{older}" + (f" @ {older_commit}" if older_commit else "")
    older_rules: dict[str, dict[tuple[str, str], bool]] = {}
    older_own: dict[str, dict[tuple[str, str], bool]] = {}
    try:
        cross = ensure_probe(tree, cache_dir, supports_op_from=older, compiler_cache_dir=cache_dir / "ccache")
        missing = unmodelled(chosen, cross.extraction.props_used)
        if missing:  # this tree's profiles would feed the older rules a guessed 0
            LOG.warn(
                f"oracle: the older supports_op reads {', '.join(missing)}, which this tree's profiles "
                "do not model: no stale-CSV evidence from it"
            )
        else:
            with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
                rows = run_support(cross, chosen, Path(tmp))
            older_rules = {n: index(rs, norm).answers for n, rs in by_backend(rows).items()}
    except ProbeUnavailable as exc:
        LOG.warn(f"oracle: the older supports_op does not compile with this tree's headers: {exc.reason}")
    try:
        own = ensure_probe(older, cache_dir, compiler_cache_dir=cache_dir / "ccache")
        older_profiles = default_profiles(older, own.extraction.props_fields, own.extraction.props_used)
        by_name = {p.name: p for p in older_profiles}
        use = [by_name[p.name] for p in chosen if p.name in by_name]
        if use:
            with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
                rows = run_support(own, use, Path(tmp))
            older_own = {n: index(rs, norm).answers for n, rs in by_backend(rows).items()}
    except ProbeUnavailable as exc:
        LOG.warn(f"oracle: no probe for the older tree {older}: {exc.reason}")
    except ExtractionFailed as exc:
        LOG.warn(f"oracle: no profiles for the older tree {older}: {exc.reason}")
    return {
        p.name: Evidence(
            older_rules.get(p.name, {}),
            f"cut from {label}, run on this tree's cases",
            older_own.get(p.name, {}),
            f"{label}, its own cases",
        )
        for p in chosen
    }
