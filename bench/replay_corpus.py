"""Replay the real-crash corpus (fixtures/real_crashes/corpus.toml) with the Metal dry run.

    python bench/replay_corpus.py [--cache DIR] [--build-lock FILE] [--only ID,ID] [--markdown FILE]

For each replayable case: the dry run of its test-backend-ops case (toolchain.dryrun.replay) on its
pre-fix sdist tree (``prefix_version``) must name the crash (``missing-kernel`` with that kernel,
``encoder-abort``, ``over-limit``) on at least one of apple7/apple9/apple10, and on its post-fix
tree (``fixed_version``) must be silent on all three. A case without a pre-fix tree among the
sdists, or not replayable, is a miss with its reason. Prints "caught N of M" and a Markdown table;
writes ``.toolchain/reports/replay-corpus.json``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_dryrun_trees import sdist_tree  # noqa: E402
from toolchain.config import load_settings  # noqa: E402
from toolchain.dryrun.build import DryRunUnavailable, ensure_program  # noqa: E402
from toolchain.dryrun.replay import NotReplayable, case_line, named, outcomes, silent  # noqa: E402
from toolchain.dryrun.run import dry_run  # noqa: E402
from toolchain.errors import ToolchainError  # noqa: E402
from toolchain.records import write_report  # noqa: E402

CORPUS = ROOT / "fixtures" / "real_crashes" / "corpus.toml"
PROFILES = ("apple7", "apple9", "apple10")
FAILURE = {"missing-kernel": "missing-kernel", "abort": "encoder-abort", "limit": "over-limit"}


def ggml_tree(repo: Path, commit: str, trees: Path) -> Path:
    """A tree in llama.cpp's layout from a ggml-org/ggml commit: the repository as ``ggml/`` and
    its own ``tests/test-backend-ops.cpp`` as ``tests/`` (the file llama.cpp vendors)."""
    dest = trees / f"ggml-{commit}"
    if not (dest / "tests" / "test-backend-ops.cpp").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        (dest / "ggml").mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest / "ggml")], input=archive, check=True)
        (dest / "tests").mkdir()
        shutil.copy(dest / "ggml" / "tests" / "test-backend-ops.cpp", dest / "tests" / "test-backend-ops.cpp")
    return dest


def replay_on(
    case: dict[str, Any],
    version: str,
    cache: Path,
    trees: Path,
    build_lock: Path | None,
    repo: Path | None = None,
) -> dict[str, Any]:
    if version.startswith("ggml@"):
        if repo is None:
            return {"version": version, "error": "no ggml-org/ggml repository given (--ggml-repo)"}
        tree = ggml_tree(repo, version.removeprefix("ggml@"), trees)
    else:
        tree = sdist_tree(version, trees)
    try:
        ensure_program(tree, cache, compiler_cache_dir=cache / "ccache", build_lock=build_lock)
        line = case_line(tree, case["replay"], f"corpus-{case['id']}")
    except (DryRunUnavailable, NotReplayable) as exc:
        return {"version": version, "error": str(exc)}
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        ops = Path(tmp) / "case.ops"
        ops.write_text(line + "\n", encoding="utf-8")
        try:
            run = dry_run(tree, cache, Path(tmp) / "w", batches=[("ops", ops)], profiles=list(PROFILES))
        except ToolchainError as exc:
            return {"version": version, "error": exc.message}
    res = outcomes(run)
    return {
        "version": version,
        "line": line,
        "case": run.runs[0].results[0].findings[0].case if run.runs[0].results[0].findings else "",
        "profiles": {p: {"verdict": o.verdict, "detail": o.detail} for p, o in res.items()},
        "_outcomes": res,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--build-lock", type=Path, default=None)
    parser.add_argument("--only", default="")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--ggml-repo",
        type=Path,
        default=None,
        help="a clone of ggml-org/ggml: a case with no pre-fix sdist is replayed on its git pair "
        "(git_prefix_commit / git_fixed_commit) there",
    )
    args = parser.parse_args()
    settings = load_settings(None)
    cache = (args.cache or settings.cache_dir).resolve()
    trees = cache / "bench-trees"
    trees.mkdir(parents=True, exist_ok=True)
    corpus = tomllib.loads(CORPUS.read_text(encoding="utf-8"))
    only = {x for x in args.only.split(",") if x}
    rows: list[dict[str, Any]] = []
    for case in corpus["case"]:
        if only and case["id"] not in only:
            continue
        t0 = time.monotonic()
        row: dict[str, Any] = {
            "id": case["id"],
            "class": case["class"],
            "failure": case["failure"],
            "kernel": case.get("kernel", ""),
            "prefix_version": case.get("prefix_version", ""),
            "fixed_version": case.get("fixed_version", ""),
        }
        want = FAILURE.get(case["failure"])
        if not case.get("replayable"):
            row.update(caught=False, why=f"not replayable: {case.get('replay_reason', '')}")
        elif want is None:
            row.update(caught=False, why=f"failure class {case['failure']}: not something the dry run models")
        elif not case.get("prefix_version") and not (args.ggml_repo and case.get("git_prefix_commit")):
            row.update(
                caught=False,
                why="no pre-fix tree among the sdists: " + (case.get("prefix_reason") or "(no reason given)"),
            )
        else:
            # the assert (its text is the case's "kernel" field for an abort) or the limit
            text = "" if want == "missing-kernel" else str(case.get("kernel", ""))
            on_git = not case.get("prefix_version")
            pre_tree = f"ggml@{case['git_prefix_commit']}" if on_git else case["prefix_version"]
            post_tree = (
                f"ggml@{case['git_fixed_commit']}"
                if on_git and case.get("git_fixed_commit")
                else case.get("fixed_version")
            )
            row.update(prefix_tree=pre_tree, fixed_tree=post_tree or "")
            pre = replay_on(case, pre_tree, cache, trees, args.build_lock, args.ggml_repo)
            pre_ok = "error" not in pre and any(
                named(o, want, case.get("kernel", "") if want == "missing-kernel" else "", text)
                for o in pre["_outcomes"].values()
            )
            post: dict[str, Any] | None = None
            post_ok = True
            if post_tree:
                post = replay_on(case, post_tree, cache, trees, args.build_lock, args.ggml_repo)
                post_ok = "error" not in post and all(silent(o) for o in post["_outcomes"].values())
            row.update(
                caught=pre_ok and post_ok,
                pre={k: v for k, v in pre.items() if k != "_outcomes"},
                post={k: v for k, v in post.items() if k != "_outcomes"} if post else None,
                pre_named=pre_ok,
                post_silent=post_ok if post else None,
                why=""
                if pre_ok and post_ok
                else ("pre-fix: " + str(pre.get("error") or pre.get("profiles")) if not pre_ok else "")
                + (
                    "; post-fix: " + str((post or {}).get("error") or (post or {}).get("profiles"))
                    if not post_ok
                    else ""
                ),
            )
        row["seconds"] = round(time.monotonic() - t0, 1)
        rows.append(row)
        print(
            f"{row['id']}: {'caught' if row['caught'] else 'MISSED'} {row.get('why', '')[:300]}", flush=True
        )
        write_report(settings.reports_dir / "replay-corpus.json", "replay-corpus", {"rows": rows})
    caught = sum(r["caught"] for r in rows)
    table = [
        f"caught {caught} of {len(rows)}",
        "",
        "| case | class | expected | pre-fix tree: apple7 / apple9 / apple10 | post-fix tree | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        pre = r.get("pre") or {}
        post = r.get("post") or {}

        def cell(side: dict[str, Any]) -> str:
            if not side:
                return "—"
            if "error" in side:
                return f"{side['version']}: {side['error'][:80]}"
            return f"{side['version']}: " + " / ".join(v["verdict"] for v in side["profiles"].values())

        expected = f"{r['failure']} {r['kernel']}".strip()
        result = "caught" if r["caught"] else f"missed: {r['why'][:160]}"
        table.append(f"| {r['id']} | {r['class']} | {expected} | {cell(pre)} | {cell(post)} | {result} |")
    print("\n".join(table))
    if args.markdown:
        args.markdown.write_text("\n".join(table) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
