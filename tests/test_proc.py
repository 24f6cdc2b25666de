"""``toolchain.proc.stop_group``: ending a child ends everything it started, as ninja needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from toolchain.proc import stop_group

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
