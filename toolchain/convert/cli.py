"""``llama-toolchain convert``: tiny models → GGUF with the tree's own converter → convert.json."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..cli import settings_from
from ..errors import ModelError
from ..log import LOG
from ..models.config_input import read_config
from ..models.shrink import shrink_config
from ..models.spec import load_specs, select
from ..options import arch_option, chosen_archs, common_options
from ..records import CONVERT
from .results import ConvertResult, results_table
from .stage import DEFAULT_TYPES, convert_architectures, parse_types


def from_config_report(spec_name: str) -> str:
    """The report name of ``convert --from-config``: ``convert-<spec name>.json`` (never convert.json)."""
    return f"convert-{spec_name}.json"


def cmd_convert(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    known = load_specs()
    shrinks = {}
    report = CONVERT.name
    if args.from_config:
        spec, items = shrink_config(read_config(args.from_config), known)
        specs, shrinks = [spec], {spec.name: items}
        # a user's own model has its own report: the main job's convert.json stays as it was
        report = from_config_report(spec.name)
    else:
        specs = select(known, chosen_archs(args))
    types = parse_types(args.types)
    with LOG.step(f"convert {len(specs)} architecture(s) x {', '.join(types)}"):
        conversion = convert_architectures(
            specs,
            types,
            settings,
            tree=args.tree,
            seed=args.seed,
            shrinks=shrinks,
            report_name=report,
            bin_dir=(args.build_dir / "bin" if (args.build_dir / "bin").is_dir() else args.build_dir)
            if args.build_dir
            else None,
            merge=bool(chosen_archs(args)),  # a subset (-a) updates its pairs in convert.json, keeps the rest
        )
    print(results_table(conversion))
    failed = [r for r in conversion.results if r.status in ("error", "not-loaded")]
    for r in failed:
        whose = f" ({r.whose})" if r.whose else ""
        LOG.warn(f"{r.architecture} {r.type}: {r.cause}{whose}: {r.error.splitlines()[0] if r.error else ''}")
    passed = sum(r.status == "pass" for r in conversion.results)
    LOG.info(
        f"{passed}/{len(conversion.results)} pass (converted, validated and loaded by the tree) in "
        f"{conversion.seconds:.0f} s; report: {settings.reports_dir / report}"
    )
    if args.from_config:
        refused = [r for r in conversion.results if r.cause == "load" and r.status == "error"]
        if refused:
            changed = "; ".join(f"{s.key}: {s.before} -> {s.after}" for s in shrinks[spec.name][:12])
            raise ModelError(
                f"the tiny model shrunk from {args.from_config} cannot be loaded by this tree: "
                f"{refused[0].error}",
                f"the shrink changed {changed or 'nothing'}; one of these is a property the tree's loader "
                "branches on and no shrink rule keeps it yet (toolchain/models/shrink.py); report: "
                f"{settings.reports_dir / report}",
            )
        LOG.info(f"cover it with `llama-toolchain coverage --convert-report {settings.reports_dir / report}`")
    upstream = [r for r in failed if r.whose == "upstream"]
    if upstream and len(upstream) == len(failed):
        LOG.info(
            f"{len(upstream)} pair(s) failed by an upstream defect of this tree (labelled `upstream` in the "
            "report, with the evidence); the matrix shows them as such and covers the rest"
        )
    return exit_status(conversion.results, args.keep_going)


def exit_status(results: Sequence[ConvertResult], keep_going: bool) -> int:
    """1 when a pair failed for a reason that is ours or unknown (spec, shrink rule, environment, no
    loader to check it), or when no pair passed at all; 0 otherwise. A failure labelled ``upstream``
    (the tree's own converter writes what its own loader refuses) does not stop the main job: the
    matrix shows it as an upstream defect. ``--keep-going`` is always 0."""
    if keep_going:
        return 0
    failed = [r for r in results if r.status in ("error", "not-loaded")]
    ours = [r for r in failed if r.whose != "upstream"]
    passed = any(r.status == "pass" for r in results)
    return 1 if ours or (failed and not passed) else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "convert", help="convert the tiny models with the tree's convert_hf_to_gguf.py, validate every GGUF"
    )
    common_options(p)
    arch_option(p)
    p.add_argument(
        "--types", default=",".join(DEFAULT_TYPES), help="comma-separated: f32,f16,bf16,q8_0,q4_0,q4_K"
    )
    p.add_argument(
        "--from-config", type=Path, metavar="PATH", help="convert a shrunk copy of this config.json"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tree", type=Path, default=None, help="llama.cpp tree (default: the work dir's checkout)"
    )
    p.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="build whose loader and llama-quantize to use (default: the work dir's last build)",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="exit 0 even when some pairs failed (they are in convert.json)",
    )
    p.set_defaults(func=cmd_convert)
