"""Conversion benchmark: seconds per architecture, amortised over one converter process.

python bench/bench_convert.py [--arch A ...] [--types f16,q8_0]

Uses the work dir's checkout (.toolchain/src) and the cache's converter environment and tiny
models (made first if missing; not timed). Each run converts into a fresh temporary work dir,
so no GGUF is reused. Prints the amortised seconds per architecture against the 5 s goal, the
converter's start-up (paid once) and the ratio to one process per model (start-up x N + work).
Writes .toolchain/reports/bench-convert.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain.config import load_settings  # noqa: E402
from toolchain.convert.env import ensure_env  # noqa: E402
from toolchain.convert.stage import convert_architectures, parse_types  # noqa: E402
from toolchain.models.build import make_models  # noqa: E402
from toolchain.models.spec import load_specs, select  # noqa: E402
from toolchain.records import write_report  # noqa: E402

GOAL_SECONDS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", nargs="+")
    parser.add_argument("--types", default="f16,q8_0")
    args = parser.parse_args()
    settings = load_settings(ROOT)
    specs = select(load_specs(), args.arch)
    types = parse_types(args.types)
    tree = settings.src_dir
    env = ensure_env(tree, settings)
    make_models(specs, settings, env.python, tree)  # not timed: the checkpoints are cached
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        fresh = replace(settings, work_dir=Path(tmp) / ".toolchain")
        start = time.monotonic()
        conversion = convert_architectures(specs, types, fresh, tree=tree, write=False)
        wall = time.monotonic() - start
    passed = [r for r in conversion.results if r.status == "pass"]
    work = sum(r.seconds for r in conversion.results)
    startup = conversion.converter_startup_seconds
    per_arch = wall / len(specs)
    one_per_model = startup * len(passed) + work
    result = {
        "architectures": len(specs),
        "types": list(types),
        "pass": len(passed),
        "pairs": len(conversion.results),
        "wall_seconds": round(wall, 2),
        "converter_startup_seconds": round(startup, 2),
        "seconds_per_architecture": round(per_arch, 2),
        "goal_seconds_per_architecture": GOAL_SECONDS,
        "one_process_per_model_estimate_seconds": round(one_per_model, 2),
        "ratio_batched_vs_one_process_each": round(wall / one_per_model, 3) if one_per_model else None,
    }
    print(json.dumps(result, indent=2))
    print(
        f"{per_arch:.2f} s per architecture amortised ({'within' if per_arch <= GOAL_SECONDS else 'over'} the {GOAL_SECONDS:.0f} s goal)"
    )
    write_report(settings.reports_dir / "bench-convert.json", "bench-convert", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
