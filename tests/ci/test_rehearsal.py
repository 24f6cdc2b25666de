"""Rehearse the workflows in ci/github/: their `run:` steps, executed here as a runner would.

The fast tests check the expression evaluator and that every expression and `if:` in every
workflow evaluates with the declared input defaults (a typo in an input name or a new construct
fails here). The slow tests run whole jobs for real on this machine — `nox -s build` and
`nox -s coverage` as the workflows call them — in a copy of this repository (what
actions/checkout gives), with a fresh venv standing for actions/setup-python and the test cache's
sdists, compiler cache, converter venv and oracle probes standing for what actions/cache restores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import conftest
from tests.ci.rehearse import (
    Context,
    Unsupported,
    condition,
    evaluate,
    input_defaults,
    load,
    run_job,
    substitute,
)
from tests.conftest import ROOT, Upstream
from toolchain.convert.results import Conversion
from toolchain.records import CONVERT, read_record

WORKFLOWS = sorted((ROOT / "ci" / "github").glob("*.yml"))


def test_expressions_follow_github_semantics() -> None:
    ctx = Context(inputs={"a": "", "b": "x", "flag": False}, steps={"lock": {"outputs": {"commit": "abc"}}})
    assert evaluate("inputs.a || 'default'", ctx) == "default"
    assert evaluate("inputs.b || 'default'", ctx) == "x"
    assert evaluate("inputs.a != '' && './t' || '.'", ctx) == "."
    assert evaluate("inputs.b != '' && './t' || '.'", ctx) == "./t"
    assert evaluate("steps.lock.outputs.commit", ctx) == "abc"
    assert evaluate('fromJSON(\'["m1", "m2"]\')', ctx) == ["m1", "m2"]
    assert evaluate("inputs.flag != false", ctx) is False
    assert substitute("k-${{ runner.os }}-${{ steps.lock.outputs.commit }}", ctx) == "k-Linux-abc"
    assert condition("always()", Context(inputs={}, failed=True))
    assert not condition("inputs.b != ''", Context(inputs={"b": "x"}, failed=True))
    assert condition("failure() && vars.X == 'true'", Context(inputs={}, failed=True)) is False
    with pytest.raises(Unsupported):
        evaluate("hashFiles('x')", ctx)
    with pytest.raises(Unsupported):
        evaluate("secrets.TOKEN", ctx)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_expression_of_every_workflow_evaluates(path: Path) -> None:
    """With the declared defaults: a misspelt input or context, or syntax the rehearsal does not
    model, fails here rather than on a user's runner."""
    wf = load(path)
    declared = input_defaults(wf)
    text = path.read_text(encoding="utf-8")
    for name in __import__("re").findall(r"inputs\.([A-Za-z0-9_-]+)", text):
        assert name in declared, f"{path.name}: inputs.{name} is not a declared input"
    for job_name, job in wf["jobs"].items():
        ctx = Context(inputs=declared, steps={"lock": {"outputs": {"commit": "0" * 40}}, "head": {}})
        ctx.needs = {"plan": {"outputs": {"shards": "[1]"}}, "coverage": {}, "canary": {}}
        if "if" in job:
            condition(job["if"], ctx)
        for value in (job.get("name", ""), json.dumps(job.get("outputs", {}))):
            substitute(str(value), ctx)
        for key, values in ((job.get("strategy") or {}).get("matrix") or {}).items():
            ctx.matrix[key] = evaluate(values.strip()[3:-2], ctx)[0] if isinstance(values, str) else values[0]
        for value in (job.get("runs-on", ""), json.dumps(job.get("env", {}))):
            substitute(str(value), ctx)
        for step in job.get("steps", []):
            if "if" in step:
                condition(step["if"], ctx)
            for value in (
                step.get("run", ""),
                json.dumps(step.get("env", {})),
                json.dumps(step.get("with", {})),
            ):
                substitute(str(value), ctx)
        assert job_name


def test_a_broken_step_fails_and_outputs_flow(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yml"
    wf.write_text(
        "on:\n  workflow_dispatch:\n    inputs:\n      who:\n        type: string\n        default: world\n"
        "jobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        '      - id: a\n        run: echo "greeting=hello ${{ inputs.who }}" >> "$GITHUB_OUTPUT"\n'
        "      - env:\n          G: ${{ steps.a.outputs.greeting }}\n"
        '        run: |\n          echo "$G" >> "$GITHUB_STEP_SUMMARY"\n          false\n          echo unreachable\n'
        "      - name: after\n        run: echo no\n"
        '      - name: always\n        if: always()\n        run: echo "GITHUB_ACTIONS=$GITHUB_ACTIONS"\n'
    )
    done = run_job(wf, "j", workspace=tmp_path, scratch=tmp_path / "s")
    assert done.skipped_uses == ["actions/checkout@v4"]
    assert [s.kind for s in done.steps] == ["skipped-uses", "run", "run", "skipped-if", "run"]
    assert done.summary == "hello world\n"
    assert len(done.failed) == 1 and "unreachable" not in done.failed[0].log
    assert done.steps[-1].log.strip() == "GITHUB_ACTIONS=true"


# --- real jobs -------------------------------------------------------------------------------------
def _checkout(dest: Path, upstream: Upstream) -> Path:
    """What actions/checkout gives: this repository's tracked and untracked (not ignored) files,
    as a user's repository pinned to the local upstream's v0.3.36 (the tree the suite's own build
    compiled, so the compiler cache is warm and nothing is fetched from PyPI)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        src = ROOT / raw.decode()
        if src.is_file():
            target = dest / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    done = subprocess.run(
        [sys.executable, "-m", "toolchain", "update", "--git", upstream.url, "--ref", "v0.3.36"],
        cwd=dest,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOOLCHAIN_CACHE": str(dest.parent / "cache")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return dest


def _runner_env(tmp: Path) -> dict[str, str]:
    """actions/setup-python (a fresh venv first on PATH) and actions/cache (the test cache's
    sdists, compiler cache, converter venvs and oracle probes in TOOLCHAIN_CACHE)."""
    venv = tmp / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    if os.geteuid() == 0 and not shutil.which("sudo"):
        # hosted runners have passwordless sudo; as root here it only runs the command
        (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (bin_dir / "sudo").chmod(0o755)
    cache = tmp / "cache"  # the mirror from _checkout's `update` is already there
    cache.mkdir(exist_ok=True)
    shared = conftest.test_cache_dir()
    for name, src in (
        ("sdists", shared / "sdists"),
        ("ccache", shared / "ccache"),
        ("converter-envs", shared / "convert-cache" / "converter-envs"),
        ("oracle", shared / "oracle-cache" / "oracle"),
    ):
        src.mkdir(parents=True, exist_ok=True)
        if not (cache / name).exists():
            (cache / name).symlink_to(src)
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "NOX_CURRENT_SESSION")
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(bin_dir), env.get("PATH", "")])
    env["TOOLCHAIN_CACHE"] = str(cache)
    env["NO_COLOR"] = "1"
    # This VM reports AMX, and the CPU backend's AMX path dies with SIGILL on q8_0 models: a real
    # finding that the coverage tests report as a crash cell of the CPU column. The rehearsal checks
    # the workflows' mechanics, so its jobs run as on a runner without AMX (llama.cpp reads this
    # variable for --repack/--no-repack; tests/coverage/test_harness_traps.py checks that).
    env["LLAMA_ARG_REPACK"] = "false"
    return env


def _explain(result: Any) -> str:
    return "\n\n".join(
        f"--- {s.name} (exit {s.returncode})\n{s.log[-6000:]}" for s in result.steps if s.kind == "run"
    )


@pytest.mark.slow
def test_rehearse_build_and_verify_linux_job(tmp_path: Path, upstream: Upstream, built_blas: object) -> None:
    """`nox -s build -- --profile blas` as the workflow's Linux job runs it (the real build; the
    compiler cache is warm from the suite's own build of the same tree)."""
    workspace = _checkout(tmp_path / "ws", upstream)
    result = run_job(
        ROOT / "ci" / "github" / "build-and-verify.yml",
        "linux",
        workspace=workspace,
        env=_runner_env(tmp_path),
        scratch=tmp_path / "scratch",
    )
    assert not result.failed, _explain(result)
    ran = [s.name for s in result.steps if s.kind == "run"]
    assert ran == ["Install system packages", "Install nox", "Read the pinned commit", "Build and verify"]
    assert "actions/cache@v4" in " ".join(result.skipped_uses) or any(
        "Cache" in n for n in result.skipped_uses
    )
    commit = next(s for s in result.steps if s.name == "Read the pinned commit").outputs["commit"]
    assert len(commit) == 40
    manifest = json.loads((workspace / ".toolchain" / "reports" / "build-manifest.json").read_text())
    assert manifest["profile"] == "blas" and manifest["source"]["commit"] == commit
    verify = json.loads((workspace / ".toolchain" / "reports" / "verify.json").read_text())
    assert verify["profile"] == "blas"
    assert "::group::" in next(s for s in result.steps if s.name == "Build and verify").log


@pytest.mark.slow
def test_rehearse_coverage_job_in_two_shards_and_the_merge(
    tmp_path: Path, upstream: Upstream, built_blas: object, converter_env: object
) -> None:
    """The coverage workflow as a user dispatches it for one architecture in two shards on Linux
    runners: the plan job lists the shards, each shard job runs `nox -s coverage -- --profile blas
    --architectures llama --shard K/2`, and the merge job runs `nox -s merge` on their reports
    (placed where actions/download-artifact puts them)."""
    workspace = _checkout(tmp_path / "ws", upstream)
    env = _runner_env(tmp_path)
    wf = ROOT / "ci" / "github" / "coverage.yml"
    inputs = {"profile": "blas", "architectures": "llama", "shards": 2}
    planned = run_job(wf, "plan", workspace=workspace, inputs=inputs, env=env, scratch=tmp_path / "p")
    assert not planned.failed and json.loads(planned.outputs["shards"]) == [1, 2]
    reports = workspace / ".toolchain" / "reports"
    for k in (1, 2):
        result = run_job(
            wf,
            "coverage",
            workspace=workspace,
            inputs=inputs,
            env=env,
            scratch=tmp_path / f"s{k}",
            needs={"plan": planned},
            matrix={"shard": k},
        )
        assert not result.failed, _explain(result)
        assert {"Publish JUnit results", "Upload the reports"} <= set(result.skipped_uses)
        shard = json.loads((reports / "coverage.json").read_text())
        assert shard["shard"] == f"{k}/2" and {c["architecture"] for c in shard["cells"]} == {"llama"}
        convert = read_record(reports / CONVERT.name, CONVERT, Conversion)
        assert {r.architecture for r in convert.results} == {"llama"}, "only the covered architecture"
        artifact = workspace / "shards" / f"coverage-reports-{k}"
        artifact.mkdir(parents=True)
        shutil.copy2(reports / "coverage.json", artifact / "coverage.json")
    merged = run_job(
        wf,
        "merge",
        workspace=workspace,
        inputs=inputs,
        env=env,
        scratch=tmp_path / "m",
        needs={"plan": planned},
    )
    assert merged.ran and not merged.failed, _explain(merged)
    data = json.loads((reports / "coverage.json").read_text())
    assert (
        data["complete"]
        and data["shard"] == ""
        and {c["weight_type"] for c in data["cells"]} == {"f16", "q8_0"}
    )
    assert "## Findings" in merged.summary or "No findings" in merged.summary
    single = run_job(
        wf, "merge", workspace=workspace, inputs={**inputs, "shards": 1}, env=env, scratch=tmp_path / "x"
    )
    assert not single.ran, "one shard: no merge job"


@pytest.mark.slow
def test_rehearse_canary_against_a_local_upstream(
    tmp_path: Path, upstream: Upstream, built_blas: object, converter_env: object
) -> None:
    """The canary's two coverage runs (the pin, then upstream HEAD with the pin as baseline), with
    the local upstream standing for GitHub and one architecture."""
    workspace = _checkout(tmp_path / "ws", upstream)
    result = run_job(
        ROOT / "ci" / "github" / "canary.yml",
        "canary",
        workspace=workspace,
        inputs={"upstream": upstream.url, "architectures": "llama", "profile": "blas"},
        env=_runner_env(tmp_path),
        scratch=tmp_path / "scratch",
    )
    assert not result.failed, _explain(result)
    assert (workspace / "baseline" / "coverage.json").is_file()
    head = json.loads((workspace / ".toolchain" / "reports" / "coverage.json").read_text())
    assert head["baseline"] is not None
