"""Build-stage faults: missing or old tools, configure and compile failures, disk full, killed builds.

Cases that need a configured tree use the session's real build (``built_blas``); they change one
thing, check the exit code, message and that no manifest claims success, then restore it.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, RealBuild
from tests.signalled import start, toolchain

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

# A compiler launcher that holds every compile while $HOLD_BUILD names a dir: it writes
# held-<pid> there, then blocks opening the FIFO <dir>/fifo (nobody writes it) until it is killed.
# Without $HOLD_BUILD it runs the compile through ccache (when installed), so the resumed build
# is fast. The launcher's path is part of the options, so every run of the test gets a fresh
# build dir that cannot be finished from an earlier one.
HOLD_LAUNCHER = """#!/bin/sh
if [ -n "$HOLD_BUILD" ]; then
    echo "$$" > "$HOLD_BUILD/held-$$"
    read _ < "$HOLD_BUILD/fifo"
    exit 1
fi
exec {ccache} "$@"
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (this machine's init does not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killed_build_resumes_and_never_leaves_a_stale_manifest(
    built_blas: RealBuild, tmp_path: Path
) -> None:
    """Kill a build midway (SIGINT, as Ctrl-C), then rerun: it resumes, and no manifest claims success.

    The compiles are held open by the launcher until the signal has been sent, so the build cannot
    finish first however warm the compiler cache or fast the machine.
    """
    hold = tmp_path / "hold"
    hold.mkdir()
    os.mkfifo(hold / "fifo")
    ccache = shutil.which("ccache") or ""
    launcher = _fake_tool(tmp_path / "hold-launcher", HOLD_LAUNCHER.format(ccache=ccache))
    options = (
        *OTHER_DIR,
        f"-DCMAKE_C_COMPILER_LAUNCHER={launcher}",
        f"-DCMAKE_CXX_COMPILER_LAUNCHER={launcher}",
    )
    env = {
        **os.environ,
        "TOOLCHAIN_CACHE": str(built_blas.cache),
        "PYTHONPATH": str(ROOT),
        "HOLD_BUILD": str(hold),
    }
    build_root = built_blas.project / ".toolchain" / "build"
    before = {p.name for p in build_root.iterdir()}
    build = ("build", "--profile", "blas", "--no-verify", "--", *options)
    proc = start(toolchain(*build), cwd=built_blas.project, env=env, start_new_session=True)
    held: list[Path] = []
    try:
        # configure first, then ninja starts compiles: wait (bounded) until one is held open
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            held = sorted(hold.glob("held-*"))
            if held:
                break
            time.sleep(0.1)
        assert held and proc.poll() is None, "the build was not compiling when it should be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert not (built_blas.project / MANIFEST).exists(), "a killed build must not leave a manifest"
        new_dir = next(build_root / n for n in {p.name for p in build_root.iterdir()} - before)
        leftovers = subprocess.run(["pgrep", "-f", str(new_dir)], capture_output=True, text=True)
        assert leftovers.stdout.strip() == "", "no compiler or ninja may outlive the run"
        alive = [f.name for f in hold.glob("held-*") if _running(int(f.name[5:]))]
        assert alive == [], "no held compile may outlive the run"
    finally:
        for f in hold.glob("held-*"):  # only if the run failed to end them: our own launchers
            pid = int(f.name[5:])
            cmdline = Path(f"/proc/{pid}/cmdline")
            if _running(pid) and cmdline.is_file() and str(launcher).encode() in cmdline.read_bytes():
                os.kill(pid, signal.SIGKILL)
    # the same options again, compiles no longer held: the killed build dir is resumed
    again = built_blas.run("build", "--profile", "blas", "--no-verify", "--json", "--", *options)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["status"] == "built"
    assert Path(result["build_dir"]).resolve() == new_dir.resolve()
    assert result["durations"]["configure"] == 0.0, "the killed build dir's configuration is reused"
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
