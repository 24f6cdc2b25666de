"""Run a child process as an argument list, stream its output to a log file, never leave it behind.

The child gets its own process group: on timeout or Ctrl-C the whole group (compilers under
ninja, say) is terminated, then killed. Output is kept only as a bounded tail in memory, read in
lines of at most :data:`MAX_LINE` bytes (a child that never prints a newline cannot grow one line
without bound); ``max_output`` ends a child that prints more than that many bytes (a flood).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MAX_LINE = 64 << 10  # bytes: a longer line is passed on in pieces of this size


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int  # negative: killed by that signal
    tail: tuple[str, ...]
    seconds: float
    timed_out: bool = False
    flooded: bool = False  # printed more than ``max_output`` bytes and was killed for it

    @property
    def signal_name(self) -> str:
        return signal_name(self.returncode)


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C while native code runs and raise it right after.

    A KeyboardInterrupt raised while a native extension (LIEF, through nanobind) is inside a call
    back into Python becomes a C++ exception there and aborts the whole process (terminate);
    deferring it keeps Ctrl-C an orderly exit 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def signal_name(returncode: int | None) -> str:
    """ "SIGSEGV" for a child killed by that signal (negative return code), else ""."""
    if returncode is None or returncode >= 0:
        return ""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies waiting to be reaped do not count)."""
    proc_fs = Path("/proc")
    if proc_fs.is_dir():  # Linux: zombies stay in the group until reaped (by an init that may never)
        for stat in proc_fs.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(") ", 1)[-1].split()
            except OSError:
                continue
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen[bytes], term_wait: float = 5.0) -> None:
    """End a child started with ``start_new_session=True`` and everything it started:
    SIGTERM to its process group, then SIGKILL if it is still there after ``term_wait`` s.

    Returns when the whole group has ended, not only its leader: ninja (below ``cmake --build``)
    puts every compile in a process group of its own and ends them itself on SIGTERM; killing it
    as soon as the leader exits would leave those compiles running."""
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        while _group_running(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _group_running(proc.pid):
            return


def stream(
    args: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    tail_lines: int = 200,
    max_output: int | None = None,
) -> Completed:
    """Run ``args``; every line goes to ``log_path`` (appended) and ``on_line``. A child that prints
    more than ``max_output`` bytes is ended at once (``Completed.flooded``); the log keeps what came
    before."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=tail_lines)
    start = time.monotonic()
    timed_out = False
    flood = threading.Event()
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(args)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        assert proc.stdout is not None
        pipe = proc.stdout

        def pump() -> None:  # a thread, so a silent hung child cannot block the timeout
            log_ok = True
            total = 0
            for raw in iter(lambda: pipe.readline(MAX_LINE), b""):
                total += len(raw)
                if max_output is not None and total > max_output:
                    flood.set()
                    stop_group(proc)
                    break
                if log_ok:
                    try:
                        log.write(raw)
                    except OSError:  # disk full: keep draining the pipe, keep the tail in memory
                        log_ok = False
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                tail.append(line)
                if on_line:
                    on_line(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_group(proc)
            reader.join(timeout=10)
        except BaseException:
            stop_group(proc)
            raise
        finally:
            if proc.poll() is not None:
                # the group may still hold the pipe (a grandchild): end it, then stop reading
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            reader.join(timeout=5)
            try:
                log.flush()
            except OSError:
                pass
    return Completed(
        tuple(args), proc.wait(), tuple(tail), time.monotonic() - start, timed_out, flood.is_set()
    )
