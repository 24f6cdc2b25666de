"""Dry-run benchmark: every built-in test-backend-ops case on the four default profiles, and a
model's ops (the MoE fixture, both batches) per profile, after the one-time build.

    python bench/bench_dryrun.py [--tree DIR] [--cache DIR]

Prints wall and CPU seconds (the children's CPU time: on a shared machine wall time includes
waiting for a core). Goals (issue #16): all built-in cases <= 180 s, <= 2 s per model per profile.
Writes ``.toolchain/reports/bench-dryrun.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain.config import load_settings  # noqa: E402
from toolchain.dryrun.run import dry_run, program  # noqa: E402
from toolchain.records import write_report  # noqa: E402

MOE = ROOT / "fixtures" / "dryrun" / "moe"
GOAL_BUILTIN = 180.0
GOAL_MODEL = 2.0


def _cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    settings = load_settings(None)
    tree = (args.tree or settings.src_dir).resolve()
    cache = (args.cache or settings.cache_dir).resolve()
    t0 = time.monotonic()
    prog = program(tree, cache)
    build_s = time.monotonic() - t0
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = _cpu(), time.monotonic()
        builtin = dry_run(tree, cache, Path(tmp) / "b", batches=[("built-in", None)])
        builtin_wall, builtin_cpu = time.monotonic() - t0, _cpu() - c0
        c0, t0 = _cpu(), time.monotonic()
        model = dry_run(
            tree,
            cache,
            Path(tmp) / "m",
            batches=[
                ("generation", MOE / "qwen3moe-k3-f16-generation.ops"),
                ("prompt", MOE / "qwen3moe-k3-f16-prompt.ops"),
            ],
        )
        model_wall, model_cpu = time.monotonic() - t0, _cpu() - c0
    n_prof = len(builtin.profiles)
    cases = builtin.runs[0].cases
    per_model_profile = model_wall / n_prof
    result = {
        "tree": str(tree),
        "program_built_now": prog.built_now,
        "program_seconds": round(build_s, 1),
        "profiles": [p.profile for p in builtin.profiles],
        "builtin_cases_per_profile": cases,
        "builtin_restarts": builtin.runs[0].restarts,
        "builtin_wall_s": round(builtin_wall, 1),
        "builtin_cpu_s": round(builtin_cpu, 1),
        "builtin_goal_met": builtin_wall <= GOAL_BUILTIN,
        "model_wall_s_both_batches": round(model_wall, 2),
        "model_cpu_s": round(model_cpu, 2),
        "model_per_profile_s": round(per_model_profile, 2),
        "model_goal_met": per_model_profile <= GOAL_MODEL,
        "model_verdicts": {b.batch: {r.profile: r.verdict for r in b.results} for b in model.runs},
    }
    for k, v in result.items():
        print(f"{k:30} {v}")
    write_report(settings.reports_dir / "bench-dryrun.json", "bench-dryrun", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
