"""SIGTERM and SIGHUP handled like Ctrl-C (issue #32 H).

``kill PID`` (SIGTERM: CI cancelling a job, a supervisor) and a closed terminal (SIGHUP) used to end
the toolchain at once, leaving the child's process group running (``doctor run -- sleep 120``:
``sleep`` lived on under pid 1). :func:`install` makes both raise :class:`Terminated`, a
``KeyboardInterrupt``: every path that handles Ctrl-C (the child's whole group stopped, partial
reports written with ``complete: false``) handles them too; the exit status is 128 + the signal
(143, 129), as a shell reports it. A second such signal while the first is handled is ignored,
as a second Ctrl-C is."""

from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handler(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    for sig in HANDLED:  # one is being handled: a second must not interrupt the clean-up
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def install() -> None:
    """From the main thread, before a stage runs. A signal the user's shell set to ignored
    (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _handler)


def interrupted_exit_code(default: int = 130) -> int:
    """128 + the signal when SIGTERM/SIGHUP ended the run, else ``default`` (Ctrl-C: 130)."""
    return 128 + _received[0] if _received else default


def received_name() -> str:
    return signal.Signals(_received[0]).name if _received else "SIGINT"
