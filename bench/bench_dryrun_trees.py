"""The Metal dry run on every llama.cpp tree since the C++ Metal backend: each llama-cpp-python
sdist 0.3.16 … 0.3.36 and a git tree (HEAD of the tests' local upstream), one row each.

    python bench/bench_dryrun_trees.py [--versions 0.3.17,0.3.30] [--no-git] [--cache DIR]
                                       [--build-lock /work/locks/build.lock] [--markdown FILE]
                                       [--ggml-repo CLONE --ggml-commits bce8a97c,c72a006f]

``--ggml-commits``: rows for ggml-org/ggml commits of a local clone (``ggml@<commit>``, the
repository as ``ggml/`` with its own test-backend-ops, as bench/replay_corpus.py makes the trees),
e.g. the single-device era between the C++ split (2025-09-20) and virtual devices (2026-02-02)
that no sdist carries.

Per tree: is the dry run available (and why not: no ``ggml-metal-device.h``, or the refusal naming
the function), what the stand-in modelled by default, the build (cached per tree content: the
program key) and ``dryrun validate`` of all test-backend-ops built-in cases on the four default
profiles (apple7, apple9, apple10, paravirtual): encoded cases, findings confirmed in the tree,
unexplained findings, and the wall/CPU seconds of build and validation (goal: <= 180 s together).
A tree whose dry-run program has the same content key as an earlier row's (the key covers
everything the dry run reads: ggml, the Metal backend and its kernel sources, test-backend-ops,
the generated stand-in) gets that row's validation, said so in the row ("same content as …").

Writes ``.toolchain/reports/bench-dryrun-trees.json`` and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain.config import load_settings  # noqa: E402
from toolchain.dryrun.build import DryRunUnavailable, ensure_program  # noqa: E402
from toolchain.dryrun.validate import validate  # noqa: E402
from toolchain.records import write_report  # noqa: E402
from toolchain.source.sdist import extract_vendor_tree  # noqa: E402

GOAL_S = 180.0
VERSIONS = tuple(f"0.3.{n}" for n in range(16, 37))


def _cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system + t.user + t.system


def test_cache() -> Path:
    env = os.environ.get("TOOLCHAIN_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "llama-toolchain-tests"


def sdist_tree(version: str, trees: Path) -> Path:
    dest = trees / version
    done = dest / ".unpacked"
    if not done.is_file():
        sdist = test_cache() / "sdists" / f"llama_cpp_python-{version}.tar.gz"
        dest.mkdir(parents=True, exist_ok=True)
        tree, _ = extract_vendor_tree(sdist, dest)
        done.write_text(str(tree))
    return Path(done.read_text())


def git_tree(trees: Path) -> tuple[Path, str]:
    """A clone of the tests' local upstream at HEAD (tests/conftest.py ``upstream``)."""
    upstream = test_cache() / "upstream.git"
    if not (upstream / "HEAD").is_file():
        from fixtures.upstream.build_upstream import DEFAULT_VERSIONS, build_upstream, fetch_sdists

        build_upstream(upstream, fetch_sdists(DEFAULT_VERSIONS, test_cache()))
    head = subprocess.run(
        ["git", "-C", str(upstream), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = trees / f"git-{head[:12]}"
    if not (dest / ".git").is_dir():
        subprocess.run(["git", "clone", "-q", f"file://{upstream}", str(dest)], check=True)
    return dest, head


_DONE: dict[str, dict[str, Any]] = {}  # program key -> the first row validated with it


def is_built(tree: Path, cache: Path) -> bool:
    """Is the tree's dry-run program already in the cache (nothing would be compiled)?"""
    from toolchain.builder.native import DRYRUN
    from toolchain.dryrun.build import program_key
    from toolchain.dryrun.standin import generate
    from toolchain.oracle.extract import extract

    try:
        extraction = extract(tree)
        key = program_key(tree, extraction, generate(tree, [f.name for f in extraction.props_fields]))
    except Exception:  # unavailable: `one` says why, without compiling anything
        return True
    return (cache / DRYRUN.stage / f"{DRYRUN.prefix}-{key}" / "ok").is_file()


def one(label: str, tree: Path, cache: Path, build_lock: Path | None) -> dict[str, Any]:
    row: dict[str, Any] = {"tree": label, "path": str(tree)}
    c0, t0 = _cpu(), time.monotonic()
    if not (tree / "ggml/src/ggml-metal/ggml-metal-device.h").is_file():
        row.update(
            available=False, why="no C++ Metal backend (ggml/src/ggml-metal/ggml-metal-device.h absent)"
        )
        return row
    try:
        prog = ensure_program(tree, cache, compiler_cache_dir=cache / "ccache", build_lock=build_lock)
    except DryRunUnavailable as exc:
        row.update(available=False, why="; ".join(exc.problems), build_s=round(time.monotonic() - t0, 1))
        return row
    build_s, build_cpu = time.monotonic() - t0, _cpu() - c0
    standin = prog.standin
    row.update(
        available=True,
        program=prog.key,
        built_now=prog.built_now,
        build_s=round(build_s, 1),
        build_cpu_s=round(build_cpu, 1),
        metal_sources=[p.name for p in standin.metal_sources] if standin else [],
        adapted=list(standin.adapted) if standin else [],
        modelled_by_default=list(standin.defaults) if standin else [],
    )
    same = _DONE.get(prog.key)
    if same is not None:
        keep = ("validated", "reason", "cases_per_profile", "restarts", "counts", "confirmed", "unexplained")
        row.update(
            {k: same[k] for k in keep}, same_as=same["tree"], validate_s=0.0, total_s=round(build_s, 1)
        )
        row["goal_met"] = build_s <= GOAL_S
        return row
    c0, t0 = _cpu(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-trees-") as tmp:
        report = validate(tree, cache, Path(tmp))
    val_s, val_cpu = time.monotonic() - t0, _cpu() - c0
    batch = report.run.runs[0]
    row.update(
        validated=report.ok,
        reason=report.reason,
        cases_per_profile=batch.cases,
        restarts=batch.restarts,
        counts={p.profile: p.counts for p in batch.results},
        confirmed=sum(e.kind == "confirmed-in-tree" for e in report.explained),
        unexplained=sum(e.kind == "unexplained" for e in report.explained),
        unexplained_examples=[
            f"{e.profile} {e.case.op} {e.case.case[:100]} -> {e.reason[:200]}"
            for e in report.explained
            if e.kind == "unexplained"
        ][:10],
        validate_s=round(val_s, 1),
        validate_cpu_s=round(val_cpu, 1),
        total_s=round(build_s + val_s, 1),
        goal_met=build_s + val_s <= GOAL_S,
    )
    _DONE[prog.key] = row
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| tree | dry run | built-in cases / profile | encoded (apple9) | findings confirmed in tree | unexplained | modelled by default | build s | validate s | total s |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]

    def order(r: dict[str, Any]) -> tuple[int, ...]:
        t = str(r["tree"])
        return tuple(int(x) for x in t.split(".")) if t[0].isdigit() else (999,)

    for r in sorted(rows, key=order):
        if not r.get("available"):
            out.append(f"| {r['tree']} | unavailable: {r['why'][:160]} | | | | | | | | |")
            continue
        enc = sum(v for k, v in r["counts"].get("apple9", {}).items() if k != "unsupported")
        build = (
            f"{r['build_s']}"
            if r["built_now"]
            else (f"{r['compile_s']}" if "compile_s" in r else f"{r['build_s']} (cached)")
        )
        defaults = "; ".join(d.split(":")[0] for d in r["modelled_by_default"]) or "none"
        status = "validated" if r["validated"] else f"NOT validated: {r['reason']}"
        if r.get("same_as"):
            status += f" (same content as {r['same_as']}: its run)"
        out.append(
            f"| {r['tree']} | {status} | {r['cases_per_profile']:,} | {enc:,} | {r['confirmed']} | "
            f"{r['unexplained']} | {defaults} | {build} | {r['validate_s']} | {r['total_s']} |"
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--no-git", action="store_true")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--build-lock", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--cached-only", action="store_true", help="skip (and say so) a tree whose program is not built yet"
    )
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="only build (or find cached) each tree's dry-run program: run it under the machine's build lock, "
        "then the table without it (the build times are then those of this step)",
    )
    parser.add_argument("--ggml-repo", type=Path, default=None, help="a clone of ggml-org/ggml")
    parser.add_argument("--ggml-commits", default="", help="commits of --ggml-repo to add as rows")
    args = parser.parse_args()
    settings = load_settings(None)
    cache = (args.cache or settings.cache_dir).resolve()
    trees = cache / "bench-trees"
    trees.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[str, Path]] = [(v, sdist_tree(v, trees)) for v in args.versions.split(",") if v]
    if not args.no_git:
        path, head = git_tree(trees)
        todo.append((f"git HEAD {head[:9]} (tests' upstream)", path))
    commits = [c for c in args.ggml_commits.split(",") if c]
    if commits:
        if args.ggml_repo is None:
            parser.error("--ggml-commits needs --ggml-repo")
        from bench.replay_corpus import ggml_tree  # it imports this module

        todo += [(f"ggml@{c}", ggml_tree(args.ggml_repo, c, trees)) for c in commits]
    rows: list[dict[str, Any]] = []
    report_path = settings.reports_dir / (
        "bench-dryrun-trees.json"
        if args.markdown is None
        else f"bench-dryrun-trees-{args.markdown.stem}.json"
    )
    times_file = trees / "build-times.json"
    times: dict[str, float] = json.loads(times_file.read_text()) if times_file.is_file() else {}
    if args.build_only:
        for label, tree in todo:
            t0 = time.monotonic()
            try:
                prog = ensure_program(
                    tree, cache, compiler_cache_dir=cache / "ccache", build_lock=args.build_lock
                )
                took = time.monotonic() - t0
                if prog.built_now:  # what the compile of this content took (read by the table run)
                    times[prog.key] = round(took, 1)
                    times_file.write_text(json.dumps(times, indent=1))
                print(f"{label}: program {prog.key} built_now={prog.built_now} {took:.1f} s", flush=True)
            except DryRunUnavailable as exc:
                print(f"{label}: unavailable: {'; '.join(exc.problems)}", flush=True)
        return 0
    for label, tree in todo:
        if args.cached_only and not is_built(tree, cache):
            print(f"{label}: skipped, its dry-run program is not built yet", flush=True)
            continue
        row = one(label, tree, cache, args.build_lock)
        if row.get("available") and not row.get("built_now") and row.get("program") in times:
            # built earlier by --build-only: count that compile, not the cache lookup
            row["compile_s"] = times[row["program"]]
            row["total_s"] = round(row["compile_s"] + row.get("validate_s", 0.0), 1)
            row["goal_met"] = row["total_s"] <= GOAL_S
        rows.append(row)
        print(
            f"{label}: "
            + (
                f"{row.get('reason')} build {row.get('build_s')} s validate {row.get('validate_s')} s"
                if row.get("available")
                else f"unavailable: {row['why']}"
            ),
            flush=True,
        )
        write_report(report_path, "bench-dryrun-trees", {"rows": rows, "goal_s": GOAL_S})
    table = markdown(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    bad = [r for r in rows if r.get("available") and not r.get("validated")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
