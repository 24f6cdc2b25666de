"""The dry-run sweep per tree: time for 4 profiles on this machine (goal: <= 10 minutes per tree,
build included), the number of generated cases and the classes found.

    python bench/bench_sweep.py [--versions 0.3.25,0.3.30,0.3.36] [--cache DIR]
                                [--build-lock /work/locks/build.lock] [--markdown FILE]

Per tree (a llama-cpp-python sdist, unpacked once): the dry-run program's build (cached per tree
content; "cached" when it already was), then the sweep itself with its own cache bypassed (a
fresh work and result), wall and CPU seconds of both. Writes
``.toolchain/reports/bench-sweep.json`` and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_dryrun_trees import sdist_tree, test_cache  # noqa: E402
from toolchain.dryrun.build import ensure_program  # noqa: E402
from toolchain.dryrun.sweep import sweep  # noqa: E402

GOAL_S = 600.0
VERSIONS = ("0.3.25", "0.3.30", "0.3.36")
PROFILES = ("apple7", "apple9", "apple10", "paravirtual")


def _cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system + t.user + t.system


def row(version: str, cache: Path, trees: Path, lock: Path | None) -> dict[str, Any]:
    tree = sdist_tree(version, trees)
    start, cpu = time.monotonic(), _cpu()
    prog = ensure_program(tree, cache, compiler_cache_dir=cache / "ccache", build_lock=lock)
    build_s, build_cpu = time.monotonic() - start, _cpu() - cpu
    shutil.rmtree(cache / "dryrun" / "sweep", ignore_errors=True)  # the sweep itself, not its cache
    with tempfile.TemporaryDirectory() as work:
        start, cpu = time.monotonic(), _cpu()
        result = sweep(tree, cache, Path(work), profiles=PROFILES)
        sweep_s, sweep_cpu = time.monotonic() - start, _cpu() - cpu
    crash = result.crash_classes()
    return {
        "version": version,
        "commit": result.commit,
        "build": "built" if prog.built_now else "cached",
        "build_s": round(build_s, 1),
        "build_cpu_s": round(build_cpu, 1),
        "sweep_s": round(sweep_s, 1),
        "sweep_cpu_s": round(sweep_cpu, 1),
        "cases": sum(b.cases for b in result.batches),
        "classes": len(result.classes),
        "crash_classes": len(crash),
        "class_list": [c.summary for c in result.classes],
        "goal_met": build_s + sweep_s <= GOAL_S,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", default=",".join(VERSIONS))
    ap.add_argument("--cache", type=Path, default=test_cache() / "dryrun-cache")
    ap.add_argument("--trees", type=Path, default=test_cache() / "dryrun-cache" / "bench-trees")
    ap.add_argument("--build-lock", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    rows = [
        row(v.strip(), args.cache, args.trees, args.build_lock) for v in args.versions.split(",") if v.strip()
    ]
    host = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    table = [
        f"| version | build | sweep (4 profiles) | cases | classes (latent crashes) | goal <= {GOAL_S:.0f} s |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['version']} | {r['build']} {r['build_s']} s | {r['sweep_s']} s (CPU {r['sweep_cpu_s']} s) | "
            f"{r['cases']} | {r['classes']} ({r['crash_classes']}) | {'met' if r['goal_met'] else 'NOT met'} |"
            for r in rows
        ],
    ]
    out = ROOT / ".toolchain" / "reports" / "bench-sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cores": host, "goal_s": GOAL_S, "rows": rows}, indent=2) + "\n")
    text = "\n".join(table)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0 if all(r["goal_met"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
