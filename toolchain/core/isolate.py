"""Run one tool of one cell in isolation: own process group, timeout, bounded log, flood guard.

The child runs through :func:`toolchain.core.proc.run_group` (argument lists only, the whole group
ended on timeout or Ctrl-C); this module is the policy a matrix of possibly broken kernels needs:

- stdout and stderr are read separately (test-backend-ops writes its CSV on stdout and its log on
  stderr); both go to the log file, which is capped (``max_log_bytes``) so a flood cannot fill the
  disk; only a bounded tail and, when asked, a bounded stdout are kept in memory;
- a child that prints more than ``flood_bytes`` is killed at once: verdict ``flood``;
- every live child is registered, so :func:`stop_all` (Ctrl-C) ends them all, never by name.

The outcome says what happened: ``ok`` / ``exit`` (non-zero status) / ``crash`` (signal, or an
abort message such as ``GGML_ASSERT``) / ``hang`` (timeout) / ``flood`` / ``missing`` (no program).
"""

from __future__ import annotations

import os
import re
import shlex
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .proc import Child, run_group, signal_name, stop_group

Kind = Literal["ok", "exit", "crash", "hang", "flood", "missing", "cancelled"]

# Lines that name why a process died (ggml.c ggml_abort, libc abort, sanitizers, C++ runtime).
ABORT_LINE = re.compile(
    r"GGML_ASSERT|GGML_ABORT|ggml_abort|fatal error|terminate called|Assertion .* failed|"
    r"Segmentation fault|AddressSanitizer|std::bad_alloc"
)

_LIVE: set[Child] = set()
_LIVE_LOCK = threading.Lock()
_CANCELLED = threading.Event()


@dataclass(frozen=True)
class Outcome:
    args: tuple[str, ...]
    kind: Kind
    returncode: int | None
    seconds: float
    tail: tuple[str, ...]  # last lines of stdout+stderr, interleaved as read
    stdout: tuple[str, ...]  # stdout lines (bounded by max_stdout_lines)
    log: str
    output_bytes: int
    abort_lines: tuple[str, ...] = ()
    timeout: float | None = None  # the limit it ran under (None: not recorded)

    @property
    def signal_name(self) -> str:
        return signal_name(self.returncode)

    def describe(self, timeout: float | None = None) -> str:
        """One line; a hang names the limit the run had (recorded, else ``timeout``, else unknown)."""
        if self.kind == "hang":
            limit = self.timeout if self.timeout is not None else timeout
            if limit is None:
                return f"hang: no exit (timeout not recorded; killed after {self.seconds:.0f} s)"
            return f"hang: no exit after {limit:g} s (process group killed)"
        if self.kind == "flood":
            return f"flood: {self.output_bytes // (1 << 20)} MiB of output (killed)"
        if self.kind == "missing":
            return "program not found"
        if self.kind == "cancelled":
            return "cancelled (Ctrl-C)"
        if self.kind == "crash":
            why = self.signal_name or f"exit {self.returncode}"
            first = f": {self.abort_lines[0]}" if self.abort_lines else ""
            return f"crash ({why}){first}"
        if self.kind == "exit":
            return f"exit status {self.returncode}"
        return f"exit 0 in {self.seconds:.1f} s"


class _Counters:
    def __init__(self) -> None:
        self.logged = 0


def stop_all() -> int:
    """End every live child's process group (Ctrl-C). Returns how many were running."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        stop_group(proc, term_wait=2.0)
    return len(live)


def cancel_all() -> int:
    """Ctrl-C: start no new child, end every live one. Returns how many were running."""
    _CANCELLED.set()
    return stop_all()


def reset_cancel() -> None:
    _CANCELLED.clear()


def _register(proc: Child) -> None:
    with _LIVE_LOCK:
        _LIVE.add(proc)
        if _CANCELLED.is_set():  # raced with cancel_all(): end it ourselves
            stop_group(proc, term_wait=2.0)


def _unregister(proc: Child) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def live_count() -> int:
    with _LIVE_LOCK:
        return sum(1 for p in _LIVE if p.poll() is None)


def command_line(args: Sequence[str], env: Mapping[str, str] | None) -> str:
    """The command as a log's first line: the variables the harness set or changed (relative to
    this process's environment) before the program, so the line reruns what ran."""
    added = {k: v for k, v in (env or {}).items() if os.environ.get(k) != v}
    return " ".join([*(shlex.quote(f"{k}={v}") for k, v in sorted(added.items())), *map(shlex.quote, args)])


def run_isolated(
    args: Sequence[str],
    *,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    tail_lines: int = 40,
    max_stdout_lines: int = 200_000,
    max_log_bytes: int = 8 << 20,
    flood_bytes: int = 256 << 20,
) -> Outcome:
    """Run ``args`` (a list, never a shell string); see the module docstring."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=tail_lines)
    out_lines: list[str] = []
    aborts: list[str] = []
    state = _Counters()
    with log_path.open("wb") as log:
        log.write(f"$ {command_line(args, env)}\n".encode())
        if _CANCELLED.is_set():
            return Outcome(tuple(args), "cancelled", None, 0.0, ("cancelled (Ctrl-C)",), (), str(log_path), 0)

        def keep(raw: bytes, is_stdout: bool) -> None:  # run_group calls it one piece at a time
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if state.logged < max_log_bytes:
                try:
                    log.write(raw)
                except OSError:
                    state.logged = max_log_bytes
                state.logged += len(raw)
                if state.logged >= max_log_bytes:
                    try:
                        log.write(b"\n[... log capped by llama-toolchain ...]\n")
                    except OSError:
                        pass
            tail.append(line)
            if is_stdout and len(out_lines) < max_stdout_lines:
                out_lines.append(line)
            if len(aborts) < 5 and ABORT_LINE.search(line):
                aborts.append(line.strip()[:400])

        try:
            # the policy: stdout apart (the CSV), a flood limit, every child registered for cancel_all
            done = run_group(
                args,
                keep,
                separate_stderr=True,
                max_output=flood_bytes,
                started=_register,
                finished=_unregister,
                term_wait=2.0,
                timeout=timeout,
                env=env,
                cwd=cwd,
            )
        except OSError as exc:
            log.write(f"cannot start: {exc}\n".encode())
            return Outcome(tuple(args), "missing", None, 0.0, (str(exc),), (), str(log_path), 0)
        returncode = done.returncode
    seconds = time.monotonic() - start
    kind: Kind
    if _CANCELLED.is_set() and returncode != 0:
        kind = "cancelled"
    elif done.flooded:
        kind = "flood"
    elif done.timed_out:
        kind = "hang"
    elif returncode < 0 or (returncode != 0 and aborts):
        kind = "crash"
    elif returncode != 0:
        kind = "exit"
    else:
        kind = "ok"
    return Outcome(
        tuple(args),
        kind,
        returncode,
        seconds,
        tuple(tail),
        tuple(out_lines),
        str(log_path),
        done.output_bytes,
        tuple(aborts),
        timeout,
    )


# llama.cpp's common logger writes from a thread of its own and is never flushed at exit
# (common/log.cpp: "this design may cause logs to be lost if not flushed before the program
# exits", ggml-org/llama.cpp#22142), so a tool that fails fast (a model it refuses) can exit with
# its error lines still queued. Measured with the 0.3.36 tree's test-export-graph-ops refusing a
# modern-bert GGUF: 0 of 40 runs lost them one at a time, 4 of 20 with 20 at once (the convert
# stage checks files in parallel). A failure with no output says nothing about the input, so it
# is run again, up to SILENT_ATTEMPTS runs in all.
SILENT_ATTEMPTS = 4


def run_until_heard(
    args: Sequence[str],
    *,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    attempts: int = SILENT_ATTEMPTS,
) -> tuple[Outcome, int]:
    """:func:`run_isolated`, again while the program exits non-zero having printed nothing.
    (outcome of the last run, runs made)."""
    runs = 0
    while True:
        runs += 1
        out = run_isolated(args, log_path=log_path, timeout=timeout, env=env, cwd=cwd)
        if out.kind != "exit" or out.output_bytes > 0 or runs >= attempts:
            return out, runs
