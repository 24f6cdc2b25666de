"""Start a process that a test will signal (Ctrl-C as SIGINT, or a kill), with SIGINT at its default.

A process inherits an ignored SIGINT across exec, and Python leaves SIGINT alone when it starts
ignored (no KeyboardInterrupt, ever). A pytest started without job control in the background
(``nohup pytest … &``, ``cmd &`` in a script) has SIGINT ignored, so every child it starts would
ignore the test's Ctrl-C and the test would fail. The reset happens here, in the child before it
execs, not in the toolchain: a user who starts the toolchain with SIGINT ignored means it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def _default_sigint() -> None:
    """In the child, between fork and exec: one sigaction, nothing that could wait on a lock."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: Sequence[str], **popen: Any) -> subprocess.Popen[str]:
    """``subprocess.Popen(args, **popen)`` in text mode, the child's SIGINT at its default
    disposition; stdout discarded and stderr piped unless ``popen`` says otherwise."""
    popen = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(list(args), text=True, preexec_fn=_default_sigint, **popen)


def toolchain(*args: str) -> list[str]:
    """The command line of ``python -m toolchain ARGS`` (run in a test project, PYTHONPATH set)."""
    return [sys.executable, "-m", "toolchain", *args]


@contextmanager
def sigint_ignored(ignored: bool = True) -> Iterator[None]:
    """This process with SIGINT ignored meanwhile (when ``ignored``), as under ``nohup pytest … &``:
    what a test starts inside must still take the test's Ctrl-C."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignored else None
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, previous)
