"""``llama-toolchain models``: list the architectures, make tiny checkpoints, shrink a config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import settings_from
from ..convert.env import ensure_env
from ..core.jsonio import to_jsonable
from ..core.tree import CONVERT_SCRIPT
from ..errors import ConvertError
from ..log import LOG
from ..options import arch_option, chosen_archs, common_options
from .build import make_models
from .config_input import read_config
from .shrink import Shrink, shrink_config
from .spec import ArchSpec, load_specs, select


def _specs(args: argparse.Namespace) -> tuple[list[ArchSpec], dict[str, tuple[Shrink, ...]]]:
    known = load_specs()
    if args.from_config:
        spec, shrinks = shrink_config(read_config(args.from_config), known)
        return [spec], {spec.name: shrinks}
    return select(known, chosen_archs(args)), {}


def cmd_models(args: argparse.Namespace) -> int:
    if args.list:
        specs = list(load_specs().values())
        if args.json:
            print(json.dumps([to_jsonable(s) for s in specs], indent=2, default=str))
        else:
            for spec in specs:
                print(spec.name)
        return 0
    settings = settings_from(args)
    specs, shrinks = _specs(args)
    for name, items in shrinks.items():
        LOG.info(f"{name}: {len(items)} change(s) from the given config.json")
        for s in items:
            LOG.info(f"  {s.key}: {s.before} -> {s.after}  ({s.why})")
    tree = (args.tree or settings.src_dir).resolve()
    if not (tree / CONVERT_SCRIPT).is_file():
        raise ConvertError(
            f"{tree} is not a llama.cpp tree", "run `llama-toolchain fetch` first, or pass --tree"
        )
    env = ensure_env(tree, settings)
    models = make_models(specs, settings, env.python, tree, seed=args.seed, shrinks=shrinks)
    if args.json:
        print(json.dumps(to_jsonable(models), indent=2))
    for m in models.models:
        if m.status != "ok":
            LOG.error(f"{m.name}: {m.error}", title="model")
            continue
        sh = m.shape
        shape = (
            f"hidden {sh.hidden} ffn {sh.ffn} heads {sh.n_head}/{sh.n_head_kv} head_dim {sh.head_dim} layers {sh.layers} vocab {sh.vocab}"
            + (f" experts {sh.n_expert} top-{sh.n_expert_used}" if sh and sh.n_expert else "")
            if sh
            else ""
        )
        LOG.ok(
            f"{m.name}: {shape} ({m.n_params / 1e6:.1f} M params{', cached' if m.cached else ''}) {m.path}"
        )
    return 0 if all(m.status == "ok" for m in models.models) else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="tiny shape-faithful checkpoints per architecture (no hub)")
    common_options(p)
    p.add_argument("--list", action="store_true", help="print the known architectures, one per line")
    p.add_argument("--json", action="store_true", help="machine output on stdout")
    arch_option(p)
    p.add_argument(
        "--from-config",
        type=Path,
        metavar="PATH",
        help="shrink a local config.json, keeping what changes kernels",
    )
    p.add_argument("--seed", type=int, default=0, help="weight seed (same spec + seed = same bytes)")
    p.add_argument(
        "--tree", type=Path, default=None, help="llama.cpp tree (default: the work dir's checkout)"
    )
    p.set_defaults(func=cmd_models)
