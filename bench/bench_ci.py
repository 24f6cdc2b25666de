"""CI benchmark: the main job (`nox -s build coverage` on the default pin) cold, warm and unchanged.

    python bench/bench_ci.py [--keep DIR] [--only cold,warm,nochange] [--analyse DIR]

Runs the job the way a user and the workflows do: a fresh `git clone` of this repository (its
committed HEAD), a fresh work dir, `nox -s build coverage` in it, three ways:

- ``cold``: empty ``TOOLCHAIN_CACHE`` (its own, in the scratch dir) and compiler cache;
- ``warm``: another fresh clone and work dir, with the cache dirs restored the way
  ``actions/cache`` restores the workflows' cache paths (read from ``ci/github/*.yml``: only those
  folders of the cold run's cache are copied, nothing else);
- ``nochange``: the warm clone again, nothing changed.

Each phase's seconds come from the stages' own records (build manifest durations, convert.json,
oracle-validation.json, coverage.json) and from the command lines nox prints (each line of the
job's output is stamped as it arrives). Goals: cold <= 600 s, warm <= 180 s, no change <= 30 s for
the whole command. The pip cache (``~/.cache/pip``) is the machine's own and is not cleared: a
runner's setup-python leaves it empty, so the cold venv and converter env take longer there.
Writes ``.toolchain/reports/bench-ci.json``; the scratch dir is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ci_phases import GOALS, PASSES, Phases, analyse, table  # noqa: E402
from toolchain.records import write_report  # noqa: E402

CACHE_PREFIX = "~/.cache/llama-toolchain/"


def workflow_cache_paths(workflows: Path) -> list[str]:
    """The paths the workflows' `actions/cache` steps restore: ``cache:<dir>`` for a folder of the
    toolchain cache, ``repo:<dir>`` for one in the workspace (the nox venvs)."""
    import yaml

    found: set[str] = set()
    for path in sorted(workflows.glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        for job in data.get("jobs", {}).values():
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/cache"):
                    for line in str(step.get("with", {}).get("path", "")).splitlines():
                        line = line.strip()
                        if line.startswith(CACHE_PREFIX):
                            found.add("cache:" + line.removeprefix(CACHE_PREFIX).rstrip("/"))
                        elif line and not line.startswith(("~", "/")):
                            found.add("repo:" + line.rstrip("/"))
    return sorted(found)


def restore(saved: Path, cache: Path, repo: Path, paths: list[str]) -> list[str]:
    """Copy only the workflow's cache paths from the cold run's (``saved``: its cache/ and repo/), as
    actions/cache would restore them."""
    restored = []
    cache.mkdir(parents=True, exist_ok=True)
    for item in paths:
        where, _, rel = item.partition(":")
        src = saved / where / rel
        if src.exists():
            dst = (cache if where == "cache" else repo) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dst, symlinks=True)
            restored.append(item)
    return restored


def clone(dest: Path, commit: str) -> None:
    """A fresh clone of this repository at ``commit`` (every pass runs the same one)."""
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", commit], check=True)


def run_job(repo: Path, cache: Path, log: Path) -> tuple[float, int]:
    """`nox -s build coverage` in ``repo``; every output line stamped (seconds since start) into ``log``."""
    nox = shutil.which("nox")
    if nox is None:
        raise SystemExit("nox is not on PATH (pip install nox)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TOOLCHAIN_CACHE")}
    env |= {
        "TOOLCHAIN_CACHE": str(cache),
        "CCACHE_DIR": str(cache / "ccache"),
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
    }
    start = time.monotonic()
    done = threading.Event()
    samples: list[float] = []

    def sample_load() -> None:  # the machine is shared: its load during the run goes in the report
        while not done.wait(10.0):
            samples.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    with log.open("w") as out:
        proc = subprocess.Popen(
            # the venvs where the workflows' action keeps them (ci/github/action: <cache>/nox, cached)
            [nox, "--envdir", str(cache / "nox"), "-s", "build", "coverage"],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            stamp = time.monotonic() - start
            out.write(f"{stamp:.2f}\t{line}")
            out.flush()
            if line.startswith("nox >"):
                print(f"    {stamp:7.1f} s  {line.rstrip()[:150]}", flush=True)
        rc = proc.wait()
    done.set()
    sampler.join()
    (log.parent / "load.json").write_text(json.dumps(samples))
    return time.monotonic() - start, rc


def one_pass(name: str, repo: Path, cache: Path, out: Path) -> Phases:
    out.mkdir(parents=True, exist_ok=True)
    print(f"{name}: nox -s build coverage in {repo} (cache {cache})", flush=True)
    seconds, rc = run_job(repo, cache, out / "log.txt")
    reports = repo / ".toolchain" / "reports"
    shutil.rmtree(out / "reports", ignore_errors=True)
    if reports.is_dir():
        shutil.copytree(reports, out / "reports")
    (out / "result.json").write_text(json.dumps({"seconds": seconds, "returncode": rc}))
    phases = analyse(out)
    print(f"{name}: {seconds:.1f} s, exit {rc}", flush=True)
    return phases


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="scratch dir to use and keep (default: a temporary one)")
    ap.add_argument("--only", default=",".join(PASSES), help="passes to run (cold,warm,nochange)")
    ap.add_argument("--analyse", type=Path, help="only print the table of an earlier --keep dir")
    args = ap.parse_args(argv)
    base = (args.analyse or args.keep or Path(tempfile.mkdtemp(prefix="bench-ci-"))).resolve()
    chosen = [p for p in args.only.split(",") if p]
    results: dict[str, Phases] = {}
    loads: dict[str, tuple[float, float, float]] = {}
    try:
        if args.analyse:
            results = {p: analyse(base / p) for p in PASSES if (base / p / "result.json").is_file()}
        else:
            paths = workflow_cache_paths(ROOT / "ci" / "github")
            commit = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            print(f"commit {commit}; workflow cache paths: {', '.join(paths)}", flush=True)
            # the workspace is the same path in every pass, as on a runner: the build's rpaths and the
            # nox venvs' scripts name it
            repo = base / "repo"
            if "cold" in chosen:
                shutil.rmtree(repo, ignore_errors=True)
                shutil.rmtree(base / "cold", ignore_errors=True)
                clone(repo, commit)
                results["cold"] = one_pass("cold", repo, base / "cold" / "cache", base / "cold")
                loads["cold"] = load_average()
                repo.rename(base / "cold" / "repo")
                if results["cold"].returncode != 0:  # a warm pass needs what a finished cold one caches
                    print(
                        f"cold: exit {results['cold'].returncode}; see {base / 'cold' / 'log.txt'}: warm and no change not run"
                    )
                    chosen = []
            if "warm" in chosen:
                shutil.rmtree(repo, ignore_errors=True)
                shutil.rmtree(base / "warm", ignore_errors=True)
                clone(repo, commit)
                restored = restore(base / "cold", base / "warm" / "cache", repo, paths)
                print(f"warm: restored {', '.join(restored) or 'nothing'} from the cold run", flush=True)
                results["warm"] = one_pass("warm", repo, base / "warm" / "cache", base / "warm")
                loads["warm"] = load_average()
            if "nochange" in chosen:
                results["nochange"] = one_pass("nochange", repo, base / "warm" / "cache", base / "nochange")
                loads["nochange"] = load_average()
        print()
        print(table(results))
        print(f"load average (1, 5, 15 min) after each pass: {loads}", flush=True)
        write_report(
            ROOT / ".toolchain" / "reports" / "bench-ci.json",
            "bench-ci",
            {
                "cpus": os.cpu_count(),
                "goals_seconds": GOALS,
                "load_average": loads,
                "passes": {k: v.as_json() for k, v in results.items()},
            },
        )
    finally:
        if not args.keep and not args.analyse:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
