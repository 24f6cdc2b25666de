"""Build benchmarks: ratios measured in one run, printed as a table, written to bench.json.

Measures (each against its baseline, on the local upstream built from the 0.3.20/0.3.36 sdists):
- targeted cold build (the `build` target group) vs `cmake --build` of every target, both cold
  and with the same configuration                                    goal: ratio <= 1/3
- rebuild after wiping the build dir, warm compiler cache, vs cold    goal: <= 5%
- rebuild after moving the pin 0.3.20 -> 0.3.36 (warm cache of 0.3.20) vs cold 0.3.36
- no-op `llama-toolchain build` (whole command, Python start-up included)   goal: <= 2 s

    python bench/bench_build.py [--skip-everything] [--keep DIR]

A cold build of every target takes ~20 minutes on 2 cores; --skip-everything leaves that one out.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.upstream.build_upstream import DEFAULT_VERSIONS, build_upstream, fetch_sdists  # noqa: E402
from toolchain.records import write_report  # noqa: E402


@dataclass(frozen=True)
class Measure:
    name: str
    seconds: float
    baseline: str
    ratio: float | None
    goal: str


class Project:
    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.cache = cache
        root.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str) -> float:
        env = {**os.environ, "TOOLCHAIN_CACHE": str(self.cache), "PYTHONPATH": str(ROOT)}
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "toolchain", *args], cwd=self.root, env=env, capture_output=True, text=True
        )
        seconds = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"llama-toolchain {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return seconds

    def manifest(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(
            (self.root / ".toolchain/reports/build-manifest.json").read_text()
        )
        return data

    def wipe_build(self) -> None:
        shutil.rmtree(self.root / ".toolchain" / "build", ignore_errors=True)


def everything_seconds(build_dir: Path) -> tuple[float, list[str]]:
    """`cmake --build` of every target in an already configured build dir (no compiler cache);
    ninja keeps going past a target that fails, and the failures are returned, not hidden."""
    cache = json.loads((build_dir / ".toolchain-configured.json").read_text())
    args = [
        cache["cmake"],
        "--build",
        str(build_dir),
        "--parallel",
        str(os.cpu_count() or 2),
        "--",
        "-k",
        "0",
    ]
    start = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True)
    failed = [
        line.removeprefix("FAILED: ").strip()
        for line in done.stdout.splitlines()
        if line.startswith("FAILED:")
    ]
    return time.monotonic() - start, failed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-everything", action="store_true", help="skip the cold build of every target")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir, removed)")
    args = parser.parse_args()

    test_cache = Path(
        os.environ.get("TOOLCHAIN_TEST_CACHE", Path.home() / ".cache" / "llama-toolchain-tests")
    )
    upstream_dir = test_cache / "upstream.git"
    commits = build_upstream(upstream_dir, fetch_sdists(DEFAULT_VERSIONS, test_cache))
    url = upstream_dir.as_uri()
    base = args.keep or Path(tempfile.mkdtemp(prefix="llama-bench-"))
    measures: list[Measure] = []
    notes: list[str] = []

    def add(
        name: str, seconds: float, baseline: str = "", base_seconds: float | None = None, goal: str = ""
    ) -> None:
        ratio = round(seconds / base_seconds, 4) if base_seconds else None
        measures.append(Measure(name, round(seconds, 2), baseline, ratio, goal))
        print(
            f"  {name}: {seconds:.1f} s" + (f" (ratio {ratio:.3f} to {baseline})" if ratio else ""),
            flush=True,
        )

    try:
        # 1. cold targeted build, no compiler cache
        cold = Project(base / "cold", base / "cold-cache")
        cold.run("update", "--git", url, "--ref", "v0.3.36")
        t_cold = cold.run("build", "--no-compiler-cache")
        build_dir = Path(str(cold.manifest()["build_dir"]))
        add("cold targeted build (no compiler cache)", t_cold)
        if not args.skip_everything:
            # every target cold = the targeted build + building the rest in the same (cold) build dir:
            # ninja shares the objects, so this equals one cold full build (minus one Python start-up)
            rest, failed = everything_seconds(build_dir)
            t_all = rest + t_cold
            add("cold build of every target", t_all)
            if failed:
                print(
                    f"  note: {len(failed)} step(s) of 'every target' failed to build: {'; '.join(failed[:5])}"
                )
                notes.append(f"every target: {len(failed)} failed step(s): {'; '.join(failed[:5])}")
            add("targeted / everything", t_cold, "cold build of every target", t_all, "<= 0.333")

        # 2. warm compiler cache: build once with the cache, wipe the build dir, build again
        warm = Project(base / "warm", base / "warm-cache")
        warm.run("update", "--git", url, "--ref", "v0.3.36")
        warm.run("build")
        warm.wipe_build()
        t_warm = warm.run("build")
        add(
            "rebuild after wiping the build dir, warm cache", t_warm, "cold targeted build", t_cold, "<= 0.05"
        )

        # 3. move the pin one version: 0.3.20 built with the cache, then 0.3.36
        move = Project(base / "move", base / "move-cache")
        move.run("update", "--git", url, "--ref", "v0.3.20")
        move.run("build")
        move.run("update", "--git", url, "--ref", "v0.3.36")
        t_move = move.run("build")
        add("rebuild after moving the pin 0.3.20 -> 0.3.36", t_move, "cold targeted build", t_cold, "")

        # 4. no-op: nothing changed since the last build (whole command, Python start-up included)
        t_noop = min(warm.run("build") for _ in range(3))
        add("no-op build (whole command)", t_noop, "", None, "<= 2 s")
        noop_manifest = warm.manifest()
        toolchain_time = float(noop_manifest["durations"]["total"])  # type: ignore[index]
        add("no-op build (build stage only)", toolchain_time, "", None, "<= 2 s")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{'measure':55} {'seconds':>9} {'ratio':>7}  goal")
    for m in measures:
        ratio = f"{m.ratio:.3f}" if m.ratio is not None else ""
        print(f"{m.name:55} {m.seconds:9.1f} {ratio:>7}  {m.goal}")
    report = ROOT / ".toolchain" / "reports" / "bench.json"
    write_report(
        report,
        "bench",
        {"upstream_commits": commits, "cpus": os.cpu_count(), "measures": measures, "notes": notes},
    )
    print(f"\nwritten: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
