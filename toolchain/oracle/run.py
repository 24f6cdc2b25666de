"""``predict`` (a model's ops, per GPU family) and ``validate_tree`` (against docs/ops/*.csv)."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import OracleUnavailableError, UsageError
from ..log import LOG
from ..proc import capture
from ..tree import BACKEND_OPS, BACKEND_OPS_SOURCE
from . import normalise
from .extract import Extraction, ExtractionFailed, extract
from .probe import Probe, ProbeUnavailable, SupportRow, ensure_probe, parse_support_csv, run_support
from .profiles import DeviceProfile, default_profiles, select, unmodelled
from .records import (
    OBSERVED_BY,
    STATEMENT,
    CutInfo,
    OpPrediction,
    OracleValidation,
    Predictions,
    ProbeInfo,
    ProfilePredictions,
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

METAL_CSV = Path("docs/ops/Metal.csv")
MIN_AGREEMENT = 0.95


def tree_commit(tree: Path) -> str:
    """The commit of a checked-out tree (its own git repository), or "unknown"."""
    try:
        done = capture(["git", "-C", str(tree), "rev-parse", "--show-toplevel", "HEAD"], timeout=30)
    except OSError:
        return "unknown"
    top = done.stdout.split() if done.ok else []
    if len(top) == 2 and Path(top[0]).resolve() == tree.resolve():
        return top[1]
    return "unknown"


def _unavailable(tree: Path, reason: str) -> OracleUnavailableError:
    return OracleUnavailableError(
        f"Metal oracle unavailable for {tree}: {reason}",
        "the supports_op of this commit cannot be modelled faithfully; no predictions are made for it",
    )


def _profiles_before_probe(
    tree: Path, profiles: Sequence[str] | Sequence[DeviceProfile] | None
) -> tuple[DeviceProfile, ...]:
    """Cut and profiles first (plain text, no compile): a tree the oracle would have to guess for
    is refused before a probe is built for it."""
    try:
        ex = extract(tree)
        if profiles and all(isinstance(p, DeviceProfile) for p in profiles):
            given = tuple(p for p in profiles if isinstance(p, DeviceProfile))
            missing = unmodelled(given, ex.props_used)
            if missing:
                raise ExtractionFailed(
                    f"supports_op reads {', '.join(missing)}, which the given profile(s) "
                    f"{', '.join(p.name for p in given)} do not model"
                )
            return given
        names = [p for p in profiles or () if isinstance(p, str)]
        return select(default_profiles(tree, ex.props_fields, ex.props_used), names or None)
    except ExtractionFailed as exc:
        raise _unavailable(tree, exc.reason) from exc


def _probe(tree: Path, cache_dir: Path, *, supports_op_from: Path | None = None) -> Probe:
    try:
        return ensure_probe(
            tree, cache_dir, supports_op_from=supports_op_from, compiler_cache_dir=cache_dir / "ccache"
        )
    except ProbeUnavailable as exc:
        raise _unavailable(tree, exc.reason) from exc


def probe_info(probe: Probe) -> ProbeInfo:
    ex: Extraction = probe.extraction
    return ProbeInfo(
        probe.key,
        str(probe.executable),
        probe.built_now,
        round(probe.seconds, 2),
        str(ex.tree),
        tuple(CutInfo(f.name, f.file, f.first_line, f.last_line, f.language) for f in ex.functions),
        ex.props_used,
    )


_GENERIC = re.compile(
    r"^(?:name=(?P<name>[^,]*),)?type=(?P<type>[^,]+),ne=(?P<ne>\[[^\]]*\]),"
    r"op_params=(?P<op_params>\[[^\]]*\]),sources=(?P<sources>.*)$"
)


def _strides(line: str) -> tuple[str, ...]:
    """nb of each source from one test-export-graph-ops line (op type ne*4 n p* nsrc (t ne*4 nb*4)* name)."""
    tok = line.split()
    try:
        n_params = int(tok[6])
        i = 7 + n_params
        n_src = int(tok[i])
        i += 1
        out = []
        for _ in range(n_src):
            out.append("[" + ",".join(tok[i + 5 : i + 9]) + "]")
            i += 9
        return tuple(out)
    except (IndexError, ValueError):
        return ()


def predict(
    ops_file: Path,
    tree: Path,
    *,
    cache_dir: Path,
    profiles: Sequence[str] | Sequence[DeviceProfile] | None = None,
    commit: str | None = None,
) -> Predictions:
    """Per-profile predictions for every op of a model's ``test-export-graph-ops`` file.

    The file must come from the same tree (its op and type ids are that tree's enums). Raises
    ``OracleUnavailableError`` when the oracle cannot be made for this tree.
    """
    if not ops_file.is_file():
        raise UsageError(f"no ops file {ops_file}", "write one with test-export-graph-ops -m MODEL -o FILE")
    chosen = _profiles_before_probe(tree, profiles)
    probe = _probe(tree, cache_dir)
    lines = [ln for ln in ops_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
        rows = run_support(probe, chosen, Path(tmp), test_file=ops_file)
    out = []
    for profile in chosen:
        mine = [r for r in rows if r.backend == profile.name]
        aligned = len(mine) == len(lines)
        ops = []
        for i, row in enumerate(mine):
            m = _GENERIC.match(row.case)
            g = m.groupdict() if m else {}
            ops.append(
                OpPrediction(
                    i + 1 if aligned else 0,
                    row.op,
                    g.get("name") or "",
                    g.get("type", ""),
                    g.get("ne", ""),
                    g.get("op_params", ""),
                    g.get("sources", ""),
                    _strides(lines[i]) if aligned else (),
                    row.case,
                    row.supported,
                )
            )
        n_ok = sum(o.supported for o in ops)
        out.append(
            ProfilePredictions(
                profile.name,
                f"metal-predicted:{profile.name}",
                profile.family,
                profile.description,
                profile.switches,
                profile.props,
                n_ok,
                len(ops) - n_ok,
                tuple(ops),
            )
        )
    return Predictions(
        OBSERVED_BY,
        STATEMENT,
        str(tree),
        commit or tree_commit(tree),
        str(ops_file),
        probe_info(probe),
        tuple(out),
    )


# --- validation ------------------------------------------------------------------------------------

NORMALISATION_RULES = (
    "split: op_params split on top-level commas (brackets kept)",
    "renames: old parameter names become the tree's (see renames), in place",
    "defaults: a parameter not every side has for that op is dropped where its value is its default "
    "argument in test-backend-ops.cpp (of this tree and the older one); with another value the case is unmatched",
    "duplicates: identical normalised cases with one answer count once; with different answers they are ambiguous",
    "matched: a case the CSV has and every profile's enumeration has, by (op_name, normalised case)",
)


def _by_backend(rows: Sequence[SupportRow]) -> dict[str, list[SupportRow]]:
    out: dict[str, list[SupportRow]] = {}
    for r in rows:
        out.setdefault(r.backend, []).append(r)
    return out


def _sources(*trees: Path | None) -> list[str]:
    texts = []
    for t in trees:
        if t is not None and (t / BACKEND_OPS_SOURCE).is_file():
            texts.append((t / BACKEND_OPS_SOURCE).read_text(encoding="utf-8", errors="replace"))
    return texts


def _table_validation(
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
        backend,
        "skipped",
        reason,
        str(reference),
        ours,
        observed_by,
        0,
        0,
        0,
        0,
        (),
        (),
        (),
        0.0,
        (),
        (),
        {},
        0,
    )


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
) -> OracleValidation:
    """Validate the oracle against ``docs/ops/Metal.csv`` of ``tree``; BLAS / CPU of a build too.

    ``older_tree``: an older tree of the same upstream, used to tell a stale CSV from a wrong
    oracle. ``measured_build``: a build dir (or its bin/) whose ``test-backend-ops`` is compared
    with ``docs/ops/BLAS.csv`` and ``CPU.csv``. Never raises on disagreement: look at ``.ok``.
    """
    start = time.monotonic()
    tree = tree.resolve()
    metal_csv = tree / METAL_CSV
    measured = _measured(tree, measured_build, older_tree)
    if not metal_csv.is_file():
        metal = skipped(
            "Metal",
            metal_csv,
            f"this tree has no {METAL_CSV}: nothing to validate against (older trees lack it)",
        )
        return _validation(tree, commit, older_tree, older_commit, True, None, (), metal, measured, start)
    chosen = _profiles_before_probe(tree, profiles)
    probe = _probe(tree, cache_dir)
    with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
        rows = run_support(probe, chosen, Path(tmp))
    ours = _by_backend(rows)
    reference = parse_support_csv(metal_csv.read_text(encoding="utf-8"))
    norm = normalise.make_normaliser(
        [[(r.op, r.case) for r in reference], [(r.op, r.case) for rs in ours.values() for r in rs]],
        _sources(tree, older_tree),
    )
    evidence: dict[str, Evidence] = {}
    if older_tree is not None:
        evidence = _older_evidence(tree, older_tree, cache_dir, chosen, norm, older_commit)
    metal, _cmp, _ref = _table_validation(
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
    return _validation(tree, commit, older_tree, older_commit, ok, probe, chosen, metal, measured, start)


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
            older_rules = {n: index(rs, norm).answers for n, rs in _by_backend(rows).items()}
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
            older_own = {n: index(rs, norm).answers for n, rs in _by_backend(rows).items()}
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


def _find_tbo(build: Path) -> Path | None:
    for cand in (d / name for name in BACKEND_OPS for d in (build / "bin", build)):
        if cand.is_file():
            return cand
    return None


def _measured(tree: Path, build: Path | None, older_tree: Path | None) -> tuple[TableValidation, ...]:
    """This machine's ``test-backend-ops support -b BLAS / CPU`` against docs/ops/BLAS.csv / CPU.csv."""
    out = []
    for backend in ("BLAS", "CPU"):
        ref_path = tree / "docs" / "ops" / f"{backend}.csv"
        if build is None:
            out.append(
                skipped(backend, ref_path, "no build given (--build): nothing measured", observed_by="device")
            )
            continue
        tbo = _find_tbo(build)
        if tbo is None:
            out.append(
                skipped(
                    backend,
                    ref_path,
                    f"no test-backend-ops in {build}: build it with --targets build,coverage",
                    observed_by="device",
                )
            )
            continue
        if not ref_path.is_file():
            out.append(
                skipped(backend, ref_path, f"this tree has no docs/ops/{backend}.csv", observed_by="device")
            )
            continue
        args = [str(tbo), "support", "-b", backend, "--output", "csv"]
        try:
            done = capture(args, timeout=600, cwd=tbo.parent)
        except OSError as exc:
            out.append(skipped(backend, ref_path, f"{' '.join(args)} failed: {exc}", observed_by="device"))
            continue
        if done.timed_out:
            why = f"{' '.join(args)} failed: no exit within 600 s (process group ended)"
            out.append(skipped(backend, ref_path, why, observed_by="device"))
            continue
        rows = parse_support_csv(done.stdout)
        if not rows:
            out.append(
                skipped(
                    backend,
                    ref_path,
                    f"this build has no {backend} backend (no rows from {' '.join(args)})",
                    observed_by="device",
                )
            )
            continue
        reference = parse_support_csv(ref_path.read_text(encoding="utf-8"))
        norm = normalise.make_normaliser(
            [[(r.op, r.case) for r in reference], [(r.op, r.case) for r in rows]], _sources(tree, older_tree)
        )
        table, _c, _r = _table_validation(
            backend,
            ref_path,
            reference,
            {backend: rows},
            norm,
            ours_label=f"{' '.join(args)} (this machine)",
            observed_by="device",
            evidence_for=None,
            min_agreement=0.0,
            gate=False,
        )
        out.append(table)
    return tuple(out)
