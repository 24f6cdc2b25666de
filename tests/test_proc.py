"""``toolchain.core.proc.stop_group``: ending a child ends everything it started, as ninja needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.signalled import start
from toolchain.core.proc import stop_group

# ninja's shape: it puts each compile in a process group of its own and, on SIGTERM, ends them
# and waits for them before it exits. The "compile" here, once told to stop, waits for the test.
COMPILE = """
import os, signal, sys
hold = sys.argv[1]
def on_term(_s, _f):
    open(os.path.join(hold, "terminating"), "w").close()
    with open(os.path.join(hold, "fifo")) as f:  # blocks until the test writes
        f.read()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(os.path.join(hold, "compile-%d" % os.getpid()), "w").close()
while True:
    signal.pause()
"""
NINJA = """
import os, signal, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], process_group=0)
def on_term(_s, _f):
    os.killpg(child.pid, signal.SIGTERM)
    child.wait()
    sys.exit(1)
signal.signal(signal.SIGTERM, on_term)
while True:
    signal.pause()
"""
# cmake --build: in the same group as ninja, and gone at once on SIGTERM
WRAPPER = "import subprocess, sys; subprocess.run([sys.executable, '-c', *sys.argv[1:]])"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_stop_group_returns_only_when_what_ninja_started_has_ended(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    os.mkfifo(hold / "fifo")
    wrapper = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, NINJA, COMPILE, str(hold)], start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(hold.glob("compile-*")) and time.monotonic() < deadline:
        assert wrapper.poll() is None
        time.sleep(0.05)
    compiles = list(hold.glob("compile-*"))
    assert compiles, "the compile never started"
    compile_pid = int(compiles[0].name.split("-")[1])

    stopper = threading.Thread(target=stop_group, args=(wrapper,), kwargs={"term_wait": 600.0})
    stopper.start()
    try:
        while not (hold / "terminating").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (hold / "terminating").exists(), "ninja did not pass SIGTERM on to its compile"
        # the compile is still ending (held by the test): stop_group must still be waiting
        assert stopper.is_alive(), "stop_group returned while a compile ninja started was still running"
    finally:
        if (hold / "terminating").exists():
            with open(hold / "fifo", "w") as fifo:  # let the compile end (it is opening the FIFO)
                fifo.write("go")
        elif _running(compile_pid):
            os.kill(compile_pid, signal.SIGKILL)  # the test failed: end the compile we started
        stopper.join(timeout=120)
    assert not stopper.is_alive()
    assert not _running(compile_pid)


# A tool that leaves a grandchild behind (a compiler driver, a pager, a helper daemon): the
# grandchild holds no pipe of ours, only blocks on a FIFO nobody writes. It writes its pid to
# ``pid`` (a regular file) or ``ready`` (a FIFO the test reads) as soon as it runs.
GRANDCHILD = """
import os, sys
pid_file, ready, hold = sys.argv[1:]
if ready:
    with open(ready, "w") as f:
        f.write(str(os.getpid()))
else:
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
open(hold).read()
"""


def _fake_tool(tmp_path: Path, *, ready: bool) -> tuple[Path, Path, Path]:
    """A program that starts GRANDCHILD, prints nothing and never exits (``--help`` hangs)."""
    hold = tmp_path / "hold"
    os.mkfifo(hold)
    fifo = tmp_path / "ready"
    if ready:
        os.mkfifo(fifo)
    pid_file = tmp_path / "grandchild.pid"
    tool = tmp_path / "llama-hangs"
    tool.write_text(
        f"#!{sys.executable}\n"
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}, {str(pid_file)!r}, "
        f"{str(fifo) if ready else ''!r}, {str(hold)!r}], stdin=subprocess.DEVNULL, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"open({str(hold)!r}).read()\n"
    )
    tool.chmod(0o755)
    return tool, pid_file, fifo


def test_a_timeout_of_a_formerly_bare_call_ends_what_its_child_started(tmp_path: Path) -> None:
    """``coverage.tools.help_text`` (once a bare ``subprocess.run``): on timeout the grandchild goes too."""
    from toolchain.coverage.engine.tools import help_text

    tool, pid_file, _ = _fake_tool(tmp_path, ready=False)
    for limit in (5.0, 30.0, 120.0):  # long enough for the grandchild to start on a loaded machine
        assert help_text(tool, timeout=limit) == ""
        if pid_file.exists():
            break
    grandchild = int(pid_file.read_text())
    try:
        assert not _running(grandchild), "the timeout left the tool's grandchild running"
    finally:
        if _running(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_ctrl_c_during_a_formerly_bare_call_ends_what_its_child_started(tmp_path: Path) -> None:
    """Ctrl-C while ``help_text`` waits: the whole group of the tool ends before the exit."""
    tool, _, ready = _fake_tool(tmp_path, ready=True)
    script = f"from pathlib import Path; from toolchain.coverage.engine.tools import help_text; help_text(Path({str(tool)!r}), 600)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    caller = start([sys.executable, "-c", script], env=env, stdout=None, start_new_session=True)
    grandchild = 0
    try:
        with open(ready) as f:  # blocks until the grandchild runs
            grandchild = int(f.read())
        caller.send_signal(signal.SIGINT)
        _, err = caller.communicate(timeout=120)
        assert caller.returncode != 0 and "KeyboardInterrupt" in err
        assert not _running(grandchild), "Ctrl-C left the tool's grandchild running"
    finally:
        if caller.poll() is None:
            os.killpg(caller.pid, signal.SIGKILL)
        if grandchild and _running(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_capture_into_a_file_is_not_cut_at_the_memory_bound(tmp_path: Path) -> None:
    """`oracle validate --older-pypi` writes `git archive` of the older tree (> 64 MiB) to a file
    through capture: the in-memory flood bound ended it with SIGTERM on every cold cache."""
    from toolchain.core.proc import capture

    target = tmp_path / "big.bin"
    size = (64 << 20) + 4096
    with target.open("wb") as fh:
        done = capture(
            [sys.executable, "-c", f"import sys; sys.stdout.buffer.write(b'x' * {size})"],
            timeout=120,
            stdout=fh,
        )
    assert done.ok, (done.returncode, done.stderr)
    assert target.stat().st_size == size
    flooded = capture([sys.executable, "-c", "print('y' * 5000)"], timeout=60, max_output=1000)
    assert not flooded.ok  # in memory the bound still holds


def test_ctrl_c_before_the_wait_is_the_childs_end_too(tmp_path: Path) -> None:
    """A Ctrl-C that lands after the child started but before ``run_group`` waits on it (here in
    ``started``, the cancellation hook; also while the reader threads start) was re-raised with
    the child left running, and ``stop_on_interrupt`` callers (``doctor run``) saw no
    ``interrupted``: the doctor Ctrl-C test failed once so in a loaded full run. Now it is
    recorded like one in the wait, and the child's group has ended on return."""
    from toolchain.core.proc import run_group

    seen: list[int] = []

    def interrupt(proc: subprocess.Popen[bytes]) -> None:
        seen.append(proc.pid)
        raise KeyboardInterrupt

    done = run_group(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        lambda data, out: None,
        started=interrupt,
        stop_on_interrupt=True,
        term_wait=5.0,
    )
    assert done.interrupted and done.returncode != 0
    assert not _running(seen[0])
