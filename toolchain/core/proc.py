"""Run a child process as an argument list and never leave it, or what it started, behind.

:func:`run_group` is the one runner: the child gets its own process group, and on timeout, a
flood, Ctrl-C or cancellation the whole group (compilers under ninja, say) is terminated, then
killed; output is read in lines of at most :data:`MAX_LINE` bytes (a child that never prints a
newline cannot grow one line without bound) or in chunks. On top of it: :func:`stream` (output to
a log file and a bounded tail, for builds and converters), :func:`capture` (output in memory,
for short probes: what ``subprocess.run`` would be), ``coverage.isolate.run_isolated`` (a cell's
policy) and ``doctor.run.run_command`` (a capped log).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .diskfull import raise_named

Child = subprocess.Popen[bytes]  # a child of run_group (for callers that register it for cancellation)
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


def _stop_once(proc: subprocess.Popen[bytes], term_wait: float) -> None:
    """:func:`stop_group` after Ctrl-C: a further Ctrl-C meanwhile is ignored (one is being handled)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        stop_group(proc, term_wait)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class Exit:
    """How a child of :func:`run_group` ended."""

    returncode: int  # negative: killed by that signal
    seconds: float
    timed_out: bool = False
    flooded: bool = False  # printed more than ``max_output`` bytes and was ended for it
    interrupted: bool = False  # Ctrl-C ended it (only with ``stop_on_interrupt``)
    output_bytes: int = 0  # read from its pipes (a flood: including the piece that was not passed on)


def run_group(
    args: Sequence[str],
    on_output: Callable[[bytes, bool], None],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    separate_stderr: bool = False,
    max_output: int | None = None,
    chunks: bool = False,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
    finished: Callable[[subprocess.Popen[bytes]], None] | None = None,
    stop_on_interrupt: bool = False,
    term_wait: float = 5.0,
) -> Exit:
    """The one way a child process is run: ``args`` (a list) in a process group of its own, stdin
    closed, every piece of output passed to ``on_output(data, is_stdout)`` as it comes (lines of at
    most :data:`MAX_LINE` bytes, or with ``chunks`` whatever one read returns; one call at a time).

    On timeout, on a flood (more than ``max_output`` bytes, which are not passed on), when the
    caller is interrupted or ``stop_group`` is called from elsewhere (cancellation), the whole group
    is ended; when the child exits, what it left running in its group is killed. ``separate_stderr``
    reads stderr on its own (``is_stdout`` False) instead of merged into stdout. ``started`` sees the
    child before it is waited for (to register it for cancellation), ``finished`` after it and its
    readers are done. Ctrl-C is re-raised, or with ``stop_on_interrupt`` recorded in
    :attr:`Exit.interrupted`. OSError when the program cannot be started."""
    start = time.monotonic()
    proc = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    lock = threading.Lock()
    flooded = threading.Event()
    total = [0]

    def pump(pipe: IO[bytes], is_stdout: bool) -> None:  # threads: a silent child cannot block the timeout
        fd = pipe.fileno()
        while data := (os.read(fd, 1 << 20) if chunks else pipe.readline(MAX_LINE)):
            with lock:
                total[0] += len(data)
                if max_output is not None and total[0] > max_output:
                    flooded.set()
                else:
                    on_output(data, is_stdout)
            if flooded.is_set():
                stop_group(proc, term_wait)
                return

    pipes = [(proc.stdout, True), (proc.stderr, False)]
    readers: list[threading.Thread] = []
    timed_out = interrupted = False
    try:
        try:  # from here on a Ctrl-C is the child's end, wherever it lands (not only in the wait)
            for p, out in pipes:
                if p is not None:
                    readers.append(threading.Thread(target=pump, args=(p, out), daemon=True))
                    readers[-1].start()
            if started is not None:
                started(proc)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_group(proc, term_wait)
        except KeyboardInterrupt:
            if not stop_on_interrupt:
                raise
            interrupted = True
            _stop_once(proc, term_wait)
    except BaseException:
        _stop_once(proc, term_wait)
        raise
    finally:
        if proc.poll() is not None:
            # the leader is gone; the group may still hold the pipes (a grandchild): end it
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for reader in readers:
            reader.join(timeout=10)
        for pipe, _out in pipes:
            if pipe is not None:
                pipe.close()
        if finished is not None:
            finished(proc)
    return Exit(proc.wait(), time.monotonic() - start, timed_out, flooded.is_set(), interrupted, total[0])


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one): how many worker
    processes the stages start side by side."""
    affinity = getattr(os, "sched_getaffinity", None)
    return max(1, len(affinity(0)) if affinity else (os.cpu_count() or 1))


@dataclass(frozen=True)
class Captured:
    args: tuple[str, ...]
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def capture(
    args: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    max_output: int | None = 64 << 20,
    stdout: IO[bytes] | None = None,
    term_wait: float = 5.0,
) -> Captured:
    """Run ``args`` to its end, stdout and stderr kept apart in memory (at most ``max_output``
    bytes: a flood is ended), like ``subprocess.run(capture_output=True, timeout=...)`` except that
    a timeout or Ctrl-C ends the child's whole process group. ``stdout``: written there instead
    (``Captured.stdout`` is then empty) and not bounded: nothing is kept in memory, and the caller
    chose the file (a `git archive` of a tree is hundreds of MB). OSError when it cannot be started."""
    out: list[bytes] = []
    err: list[bytes] = []

    def keep(data: bytes, is_stdout: bool) -> None:
        if not is_stdout:
            err.append(data)
        elif stdout is not None:
            stdout.write(data)
        else:
            out.append(data)

    done = run_group(
        args,
        keep,
        timeout=timeout,
        env=env,
        cwd=cwd,
        separate_stderr=True,
        max_output=None if stdout is not None else max_output,
        chunks=True,
        term_wait=term_wait,
    )
    return Captured(
        tuple(args),
        done.returncode,
        b"".join(out).decode("utf-8", "replace"),
        b"".join(err).decode("utf-8", "replace"),
        done.seconds,
        done.timed_out,
    )


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
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> Completed:
    """Run ``args``; every line goes to ``log_path`` (appended) and ``on_line``. A child that prints
    more than ``max_output`` bytes is ended at once (``Completed.flooded``); the log keeps what came
    before. ``started`` sees the child once it runs (a caller running several from threads ends
    them with :func:`stop_group` when it is interrupted). A log that cannot be written whole (a
    full disk) is an OSError naming it (ENOSPC): before the command starts, or after its end."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=tail_lines)
    failed: list[OSError] = []  # the first failed write of the log (a full disk)
    with log_path.open("ab") as log:
        try:
            log.write(f"$ {' '.join(args)}\n".encode())
            log.flush()
        except OSError as exc:  # nothing is run when its log cannot even be started
            with suppress(OSError):
                log.close()
            raise_named(exc, log_path)

        def line(raw: bytes, _is_stdout: bool) -> None:
            if not failed:
                try:
                    log.write(raw)
                except OSError as exc:  # disk full: keep draining the pipe, keep the tail in memory
                    failed.append(exc)
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(text)
            if on_line:
                on_line(text)

        try:
            done = run_group(
                args, line, timeout=timeout, env=env, cwd=cwd, max_output=max_output, started=started
            )
        finally:
            try:
                log.close()
            except OSError as exc:
                failed.append(exc)
    if failed:  # the command ran to its end, but its log is not whole: said, with the log's path
        raise_named(failed[0], log_path)
    return Completed(tuple(args), done.returncode, tuple(tail), done.seconds, done.timed_out, done.flooded)


def stream_many(
    commands: Sequence[Sequence[str]],
    *,
    log_paths: Sequence[Path],
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    cwds: Sequence[Path | None] | None = None,
) -> list[Completed]:
    """Run every command of ``commands`` at once, each through :func:`stream` into its own log:
    the worker processes of a stage (one per core). ``on_line`` sees every line of every worker,
    one line at a time (the calls are serialised). Ctrl-C (or any error) ends every worker before
    it propagates; the result is each command's :class:`Completed`, in order."""
    guard = threading.Lock()
    procs: list[Child] = []
    known = threading.Lock()  # procs and stopping change together
    stopping = threading.Event()

    def one_line(line: str) -> None:
        if on_line is not None:
            with guard:
                on_line(line)

    def started(proc: Child) -> None:
        # a worker whose thread hands it over after Ctrl-C (it was started, but not yet known,
        # when the main thread ended the others) is ended here: otherwise it runs on, and the
        # pool's exit waits for it forever
        with known:
            procs.append(proc)
            late = stopping.is_set()
        if late:
            stop_group(proc)

    def one(i: int) -> Completed:
        return stream(
            commands[i],
            log_path=log_paths[i],
            cwd=cwds[i] if cwds is not None else None,
            on_line=one_line,
            timeout=timeout,
            started=started,
        )

    with ThreadPoolExecutor(max_workers=max(1, len(commands))) as pool:
        futures = [pool.submit(one, i) for i in range(len(commands))]
        try:
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C reaches this thread only: end every worker, then go
            with known:
                stopping.set()
                running = list(procs)
            for proc in running:
                stop_group(proc)
            raise
