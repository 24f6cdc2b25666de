"""Faults across the stages, through the command line, each with the common assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Upstream
from tests.signalled import start, toolchain
from toolchain.config import Settings


def test_fetch_killed_midway_then_rerun(
    cli, fault, settings: Settings, upstream: Upstream, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A fetch is stopped while the server is packing (a pack-objects hook that stalls); the rerun works."""
    hook = tmp_path / "slow-pack-objects"
    hook.write_text('#!/bin/sh\nsleep 30\nexec "$@"\n')
    hook.chmod(0o755)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    env = {
        **os.environ,
        "TOOLCHAIN_CACHE": str(settings.cache_dir),
        "PYTHONPATH": str(ROOT),
        "GIT_CONFIG_GLOBAL": str(gitconfig),
    }
    update = ("update", "--git", upstream.url, "--ref", "v0.3.36")
    proc = start(toolchain(*update), cwd=settings.project_root, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        hooks = subprocess.run(["pgrep", "-f", str(hook)], capture_output=True, text=True).stdout.split()
        if hooks:
            break
        time.sleep(0.1)
    assert hooks, "the fetch never reached the server's pack step"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for pid in subprocess.run(["pgrep", "-f", str(hook)], capture_output=True, text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)  # the stalled server side (it is ours, started by git)
    assert not settings.lock_path.exists(), "a killed update must not leave a lock file"
    rerun_at = time.monotonic()
    done = cli("update", "--git", upstream.url, "--ref", "v0.3.36")
    assert done.returncode == 0, done.stderr
    assert upstream.commits["0.3.36"] in settings.lock_path.read_text()
    assert time.monotonic() - rerun_at < 120
    assert cli("fetch").returncode == 0


def test_ref_that_does_not_exist(cli, fault, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    fault(
        cli("update", "--git", upstream.url, "--ref", "v9.9.9"),
        11,
        "no branch or tag named 'v9.9.9'",
        started=start,
        bound=60,
    )


def test_commit_that_does_not_exist(cli, fault, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    fault(cli("update", "--git", upstream.url, "--ref", "f" * 40), 11, "is not on", started=start, bound=120)


def test_offline_with_a_missing_commit(cli, fault, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    fault(
        cli("update", "--git", upstream.url, "--ref", "v0.3.36", "--offline"),
        13,
        "--offline",
        started=start,
        bound=60,
    )


def test_config_that_is_not_json(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    bad = settings.work_dir / "input" / "config.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ this is not json")
    start = time.monotonic()
    fault(cli("models", "--from-config", str(bad)), 40, "config.json", started=start, bound=60)


def test_config_naming_an_unknown_architecture(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    bad = settings.work_dir / "input" / "config.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"], "model_type": "no_such_model"}))
    start = time.monotonic()
    fault(cli("models", "--from-config", str(bad)), 40, "NoSuchModelForCausalLM", started=start, bound=60)


def test_architecture_name_with_path_traversal(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    fault(cli("models", "--arch", "../../etc/passwd"), 4, "not a safe name", started=start, bound=60)
    assert not (settings.work_dir.parent.parent / "etc").exists()


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"NOPE" + bytes(64), ("not a GGUF",)),
        (b"tjgg" + bytes(64), ("ggjt",)),
        (b"GGUF" + (1).to_bytes(4, "little") + bytes(32), ("v1",)),
        (
            b"GGUF" + (3).to_bytes(4, "little") + (5).to_bytes(8, "little") + (0).to_bytes(8, "little"),
            ("truncated",),
        ),
    ],
    ids=["bad-magic", "ggjt", "gguf-v1", "truncated"],
)
def test_broken_gguf_files(cli, fault, settings: Settings, payload: bytes, words: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    gguf = settings.work_dir / "input" / "model.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(payload)
    start = time.monotonic()
    done = cli("doctor", "--gguf", str(gguf), "--no-system", "--memory", "64GiB")
    fault(done, 60, "gguf-format", started=start, bound=60)
    assert any(w.lower() in done.stderr.lower() for w in words), done.stderr


@pytest.mark.parametrize(
    ("content", "label"),
    [(b"", "empty"), (bytes(range(256)) * 4096, "binary garbage")],
    ids=["empty", "garbage"],
)
def test_doctor_on_empty_or_binary_logs(cli, fault, settings: Settings, content: bytes, label: str) -> None:  # type: ignore[no-untyped-def]
    log = settings.work_dir / "input" / "run.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(content)
    start = time.monotonic()
    # issue #32 M: nothing recognised is its own answer (61), never "no problem found" / 0
    fault(cli("doctor", str(log), "--no-system"), 61, "no llama.cpp log lines found", started=start, bound=60)


def test_doctor_run_of_a_crashing_command(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    done = cli(
        "doctor",
        "run",
        "--no-system",
        "--",
        sys.executable,
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
    )
    fault(done, 60, "crash", "SIGSEGV", started=start, bound=60)


def test_doctor_run_of_a_hanging_command(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    marker = settings.project_root / "hang-marker"
    start = time.monotonic()
    done = cli("doctor", "run", "--no-system", "--timeout", "2", "--", "sh", "-c", f"sleep 300 # {marker}")
    fault(done, 60, "crash", started=start, bound=30)


def test_coverage_without_a_build(cli, fault) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    done = cli("coverage")
    assert done.returncode not in (0, 50), done.stderr
    fault(done, done.returncode, "build", started=start, bound=60)
