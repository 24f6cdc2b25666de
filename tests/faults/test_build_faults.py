"""Build-stage faults: missing or old tools, configure and compile failures, disk full, killed builds.

Cases that need a configured tree use the session's real build (``built_blas``); they change one
thing, check the exit code, message and that no manifest claims success, then restore it.
"""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, RealBuild

pytestmark = pytest.mark.slow

MANIFEST = Path(".toolchain") / "reports" / "build-manifest.json"


def _fake_tool(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_missing_compiler(built_blas: RealBuild) -> None:
    done = built_blas.run_env({"CC": "/nonexistent/cc"}, "build", "--profile", "blas")
    assert done.returncode == 20, done.stderr
    assert "CC=/nonexistent/cc" in done.stderr and "unset it" in done.stderr
    assert not (built_blas.project / MANIFEST).exists()
    assert built_blas.run("build", "--profile", "blas").returncode == 0


def test_cmake_too_old(built_blas: RealBuild, tmp_path: Path) -> None:
    old = _fake_tool(tmp_path / "cmake", "#!/bin/sh\necho 'cmake version 3.10.2'\n")
    done = built_blas.run_env({"CMAKE_EXECUTABLE": str(old)}, "build", "--profile", "blas")
    assert done.returncode == 20, done.stderr
    assert "no CMake >=3.14" in done.stderr and "CMAKE_EXECUTABLE" in done.stderr


def test_configure_failure_shows_cmake_errors(built_blas: RealBuild) -> None:
    done = built_blas.run(
        "build", "--profile", "blas", "--", "-DCMAKE_TOOLCHAIN_FILE=/nonexistent/toolchain.cmake"
    )
    assert done.returncode == 21, done.stderr
    assert "CMake Error" in done.stderr and "toolchain-configure.log" in done.stderr
    assert not (built_blas.project / MANIFEST).exists()


def test_compile_failure_shows_the_failing_lines_and_the_log(built_blas: RealBuild) -> None:
    source = built_blas.project / ".toolchain" / "src" / "tools" / "completion" / "completion.cpp"
    original = source.read_bytes()
    try:
        source.write_bytes(original + b"\n#error deliberate failure from the fault suite\n")
        done = built_blas.run("build", "--profile", "blas", "--allow-dirty")
        assert done.returncode == 22, done.stderr
        assert "FAILED:" in done.stderr and "deliberate failure from the fault suite" in done.stderr
        assert "toolchain-build.log" in done.stderr
        assert not (built_blas.project / MANIFEST).exists()
        # without --allow-dirty the changed tree is refused, and the change is kept
        refused = built_blas.run("build", "--profile", "blas")
        assert refused.returncode == 14 and "completion.cpp" in refused.stderr
        assert source.read_bytes().endswith(b"fault suite\n")
    finally:
        source.write_bytes(original)
    assert built_blas.run("build", "--profile", "blas").returncode == 0


# A known option with no effect: its own build dir, so a build there has ~140 steps to run.
OTHER_DIR = ("-DLLAMA_FATAL_WARNINGS=OFF",)


def test_killed_build_resumes_and_never_leaves_a_stale_manifest(built_blas: RealBuild) -> None:
    """Kill a build midway (SIGINT, as Ctrl-C), then rerun: it resumes, and no manifest claims success."""
    env = {**os.environ, "TOOLCHAIN_CACHE": str(built_blas.cache), "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "toolchain", "build", "--profile", "blas", "--no-verify", "--", *OTHER_DIR]
    build_root = built_blas.project / ".toolchain" / "build"
    before = {p.name for p in build_root.iterdir()}
    proc = subprocess.Popen(
        args,
        cwd=built_blas.project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    steps = 0
    while time.monotonic() < deadline and proc.poll() is None:
        logs = [
            build_root / n / "toolchain-build.log" for n in {p.name for p in build_root.iterdir()} - before
        ]
        text = logs[0].read_text(errors="replace") if logs and logs[0].is_file() else ""
        steps = len(re.findall(r"^\[\d+/\d+\]", text, re.M))
        if steps >= 3:
            break
        time.sleep(0.1)
    assert steps >= 3 and proc.poll() is None, "the build was not running when it should be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (built_blas.project / MANIFEST).exists(), "a killed build must not leave a manifest"
    new_dir = next(build_root / n for n in {p.name for p in build_root.iterdir()} - before)
    leftovers = subprocess.run(["pgrep", "-f", str(new_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "no compiler or ninja may outlive the run"
    again = built_blas.run("build", "--profile", "blas", "--no-verify", "--json", "--", *OTHER_DIR)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "built"
    # back to the session's build for the tests that follow
    assert built_blas.run("build", "--profile", "blas").returncode == 0


def test_disk_full_while_building(built_blas: RealBuild, tmp_path: Path) -> None:
    """The build dirs on a 6 MB tmpfs: the build fails as 'disk full', then resumes on real disk."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root (CI runs as root)")
    build_root = built_blas.project / ".toolchain" / "build"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(build_root)], check=True)
    try:
        start = time.monotonic()
        done = built_blas.run("build", "--profile", "blas", timeout=900)
        assert done.returncode == 23, done.stderr[-3000:]
        assert "disk filled up" in done.stderr or "no space left" in done.stderr.lower()
        assert "free space" in done.stderr
        assert not (built_blas.project / MANIFEST).exists()
        assert time.monotonic() - start < 900
    finally:
        subprocess.run(["umount", str(build_root)], check=True)
    again = built_blas.run("build", "--profile", "blas", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "up-to-date"
