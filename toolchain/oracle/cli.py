"""``llama-toolchain oracle predict --ops ops.txt`` and ``llama-toolchain oracle validate``."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from ..builder.manifest import last_build_dir
from ..cli import settings_from
from ..config import Settings
from ..core.digests import ggml_environment, program_digest, toolchain_digest, tree_digest
from ..core.git import tree_commit
from ..core.jsonio import to_jsonable
from ..dryrun.contradict import built_in_cross_check, check_predictions
from ..errors import OracleValidationError, ReportError
from ..log import LOG
from ..options import profiles_of, tree_of, tree_options
from ..records import ORACLE_VALIDATION, read_record_if_any, write_report
from . import PREDICTIONS_REPORT, VALIDATION_REPORT
from .measure import find_backend_ops
from .older import older_tree
from .predict import predict
from .records import OracleValidation, Predictions, TableValidation
from .run import MIN_AGREEMENT
from .tree_validation import validate_tree


def _print_table(t: TableValidation, origin: str, agreement: str, *, main: bool = False) -> bool:
    """A support table's headline (``origin``: where our side came from), or why it was skipped
    (a warning for the ``main`` table, Metal's: it is what the validation is for); False if skipped."""
    if t.status == "skipped":
        if main:
            LOG.warn(f"oracle validate: {t.backend} skipped: {t.reason}")
        else:
            LOG.info(f"{t.backend}: skipped: {t.reason}")
        return False
    LOG.info(f"{t.backend} ({origin}): {t.matched} of {t.reference_cases} CSV cases matched{agreement}")
    return True


def _print_validation(v: OracleValidation) -> None:
    m = v.metal
    agree = f"; best profile(s) {', '.join(m.best_profiles)} agree on {m.best_agreement:.2%}"
    if _print_table(m, m.reference, agree, main=True):
        for a in m.profiles:
            LOG.info(f"    {a.profile:16} {a.agreement:8.2%}  ({a.matched - a.agree} disagree)")
        for kind, ops in m.explanations.items():
            LOG.info(f"    {kind}: " + ", ".join(f"{op} {n}" for op, n in ops.items()))
        for u in m.unmatched:
            LOG.info(f"    unmatched ({u.side}): {u.count} - {u.reason}")
    for t in v.measured:
        _print_table(t, t.ours, f", {t.best_agreement:.2%} agree, {len(t.disagreements)} differ (reported)")
    if v.dryrun is not None:
        d = v.dryrun
        if not d.available:
            LOG.info(f"dry run unavailable, 'supported' unchecked: {d.reason}")
        else:
            say = LOG.warn if d.count else LOG.info
            say(
                f"supported but not encodable (dry run {d.program}): {d.count} of {d.compared} predicted-supported "
                f"built-in cases on {', '.join(d.profiles)}"
                + (f" ({', '.join(f'{k} {n}' for k, n in (d.by_verdict or {}).items())})" if d.count else "")
            )
            for c in d.cases[:10]:
                say(f"    {c.profile} {c.op} {c.case[:120]} -> {c.verdict}: {c.detail[:200]}")


def cmd_validate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    tree = tree_of(args, settings.src_dir)
    older, older_commit = older_tree(
        tree, settings, tree_dir=args.older_tree, requirement=args.older_pypi, ref=args.older_ref
    )
    build = args.build.resolve() if args.build else _default_build(settings)
    name, kind = VALIDATION_REPORT
    kept = settings.cache_dir / "oracle" / "validations" / f"{_validation_key(args, tree, older, build)}.json"
    v = None if args.fresh else _kept_validation(kept)
    if v is None:
        v = validate_tree(
            tree,
            cache_dir=settings.cache_dir,
            older_tree=older,
            profiles=profiles_of(args),
            measured_build=build,
            min_agreement=args.min_agreement,
            older_commit=older_commit,
            cross_check=None
            if args.no_dryrun
            else partial(
                built_in_cross_check,
                tree=tree,
                cache_dir=settings.cache_dir,
                work=settings.work_dir / "oracle-dryrun",
            ),
        )
        write_report(kept, kind, v)
    else:
        LOG.info(
            f"oracle validation reused ({kept.name}): the toolchain, the tree, the older tree, the profiles "
            "and the build's test-backend-ops are unchanged (--fresh validates again)"
        )
    path = write_report(settings.reports_dir / name, kind, v)
    _print_validation(v)
    if args.json:
        print(json.dumps(to_jsonable(v), indent=2))
    if not v.ok:
        raise OracleValidationError(
            f"oracle validation against {v.metal.reference} failed: {v.metal.reason} (report: {path})",
            "each disagreement is listed in the report; give --older-tree/--older-ref/--older-pypi to check staleness",
        )
    LOG.ok(f"oracle validation: {v.metal.status} ({path})")
    return 0


def _validation_key(args: argparse.Namespace, tree: Path, older: Path | None, build: Path | None) -> str:
    """What a validation is made of: the toolchain, both trees (ggml, test-backend-ops, docs/ops and
    their commits), the profiles, the agreement asked for, and the build's test-backend-ops (with
    its libraries, on this machine's kind of CPU) that measures BLAS.csv and CPU.csv."""
    import hashlib
    import platform

    def tree_id(t: Path | None) -> list[str]:
        return [tree_digest(t, Path("docs") / "ops"), tree_commit(t)] if t is not None else []

    tbo = find_backend_ops(build) if build is not None else None
    env = ggml_environment()
    parts = [
        toolchain_digest(),
        tree_id(tree),
        tree_id(older),
        profiles_of(args),
        args.min_agreement,
        "no-dryrun" if getattr(args, "no_dryrun", False) else "dryrun",
        program_digest(tbo) if tbo is not None else str(build),
        platform.machine(),
        env,
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _kept_validation(path: Path) -> OracleValidation | None:
    try:
        return read_record_if_any(path, ORACLE_VALIDATION, OracleValidation)
    except ReportError:
        return None  # unreadable or of another schema: validated again


def _default_build(settings: Settings) -> Path | None:
    return last_build_dir(settings.reports_dir)


def cmd_predict(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    tree = tree_of(args, settings.src_dir)
    preds: Predictions = predict(
        args.ops, tree, cache_dir=settings.cache_dir, profiles=profiles_of(args), commit=tree_commit(tree)
    )
    if not args.no_dryrun:
        with LOG.step("oracle predict: the Metal dry run of the same ops (is 'supported' encodable?)"):
            preds = check_predictions(preds, tree, settings.cache_dir, settings.work_dir / "oracle-dryrun")
    name, kind = PREDICTIONS_REPORT
    path = write_report(settings.reports_dir / name, kind, preds)
    if args.json:
        print(json.dumps(to_jsonable(preds), indent=2))
    LOG.info(f"predicted from source ({preds.commit}), not observed on a device:")
    for p in preds.profiles:
        rejected = sorted({f"{o.op}" for o in p.ops if not o.supported})
        LOG.info(
            f"    {p.column:36} {p.supported:4} supported, {p.unsupported:4} rejected  {' '.join(rejected)}"
        )
        if p.dryrun_cannot_encode:
            # never a clean pass: the cell says both
            LOG.warn(
                f"    {p.column:36} supported by supports_op, but the dry run cannot encode "
                f"{p.dryrun_cannot_encode} of them (metal-dryrun:{p.profile}):"
            )
            for o in p.ops:
                if o.dryrun:
                    LOG.warn(f"        {o.op} {o.case[:160]} -> {o.dryrun[:300]}")
    if preds.dryrun is not None:
        LOG.info(
            ("dry run: " if preds.dryrun.available else "dry run unavailable, predictions unchecked: ")
            + preds.dryrun.reason
        )
    LOG.ok(f"oracle predictions for {args.ops} ({path})")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    oracle = sub.add_parser("oracle", help="Metal supports_op from the tree's source, per Apple GPU family")
    osub = oracle.add_subparsers(dest="oracle_command", metavar="SUBCOMMAND", required=True)

    def shared(p: argparse.ArgumentParser) -> None:
        tree_options(p, "comma-separated oracle profiles (default: all the tree knows)")
        p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    pred = osub.add_parser("predict", help="per-profile verdicts for a model's exported graph ops")
    shared(pred)
    pred.add_argument("--ops", type=Path, required=True, help="test-export-graph-ops output of the same tree")
    pred.add_argument(
        "--no-dryrun",
        action="store_true",
        help="do not check the 'supported' answers with the Metal dry run of the same ops (default: checked "
        "when the dry run is available for the tree)",
    )
    pred.set_defaults(func=cmd_predict)

    val = osub.add_parser(
        "validate", help="check the oracle against the tree's docs/ops/Metal.csv (and BLAS/CPU)"
    )
    shared(val)
    older = val.add_mutually_exclusive_group()
    older.add_argument(
        "--older-tree", type=Path, default=None, help="an older tree, to tell a stale CSV from a wrong oracle"
    )
    older.add_argument(
        "--older-ref", default=None, help="an older commit of the tree's repository (exported into the cache)"
    )
    older.add_argument(
        "--older-pypi",
        default=None,
        metavar="REQ",
        help="an older llama-cpp-python sdist, e.g. llama-cpp-python==0.3.20 "
        "(default: [tool.llama-toolchain] oracle-older)",
    )
    val.add_argument(
        "--build",
        type=Path,
        default=None,
        help="build dir whose test-backend-ops is compared with BLAS.csv/CPU.csv (default: the last build)",
    )
    val.add_argument(
        "--min-agreement",
        type=float,
        default=MIN_AGREEMENT,
        help=f"best-profile agreement required (default {MIN_AGREEMENT})",
    )
    val.add_argument(
        "--no-dryrun",
        action="store_true",
        help="do not count the accepted built-in cases the Metal dry run cannot encode (default: counted when "
        "the dry run is available for the tree)",
    )
    val.add_argument(
        "--fresh",
        action="store_true",
        help="validate again (default: the validation of unchanged trees, profiles and build is reused)",
    )
    val.set_defaults(func=cmd_validate)
