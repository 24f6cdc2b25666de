"""Ctrl-C stops doctor while it waits for more log on stdin, whichever thread the signal lands on.

CI once saw `doctor -` ignore SIGINT for a minute on a loaded machine: a blocking read() of the pipe
is not interrupted when the signal arrives just before the system call, or lands on another thread.
The second case is made certain here: the reader's thread blocks SIGINT, so the kernel hands it to
another thread of the process, and only the reader's own return to the interpreter can run the
handler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import signal, sys, threading
    from toolchain.doctor.files import read_chunks

    threading.Thread(target=threading.Event().wait, daemon=True).start()  # takes the signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print("reading", flush=True)
    try:
        for chunk in read_chunks(sys.stdin.buffer, 1 << 16):
            print(len(chunk), flush=True)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
    """
)


def _child() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,  # held open by the test: the child waits for more
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(stream: IO[str], timeout: float = 60.0) -> str:
    """The next line, or "" when none came within ``timeout`` (the test fails instead of hanging)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0] if got else ""


def test_a_signal_taken_by_another_thread_still_stops_the_read() -> None:
    proc = _child()
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert _line(proc.stdout) == "reading\n"
        proc.stdin.write("a line of log\n")
        proc.stdin.flush()
        # what arrived is handed over at once (not held back for a full block): the reader is now
        # waiting for more
        assert _line(proc.stdout) == "14\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_end_of_the_pipe_ends_the_read() -> None:
    proc = _child()
    assert proc.stdin is not None and proc.stdout is not None
    assert _line(proc.stdout) == "reading\n"
    proc.stdin.write("x" * 100)
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stdout.read() == "100\n"
