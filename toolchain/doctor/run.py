"""``doctor run -- CMD …``: run a llama.cpp command under a timeout, capture its output, then diagnose.

The command is an argument list (never a shell string), run by :func:`toolchain.core.proc.run_group`
in its own process group so that a timeout or Ctrl-C ends it and its children. stdout and stderr go to a log file, capped: the first and the
last ``LOG_*_BYTES`` are kept, the middle cut with a line saying so (bounded disk and memory
whatever it prints); the exit status and signal are kept. The run's own
parameters (-m, -c, -ngl, -ctk, -ctv, -ub, -fa) are read from the command line for the planner.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.proc import run_group, signal_name
from ..errors import UsageError
from .catalog import BY_ID
from .classify import RunParams
from .findings import Evidence, Finding, ObservedBy
from .params import looks_numeric, run_params

# The log `doctor run` keeps: the first and the last output of the command (a flooding command
# prints gigabytes in seconds); the middle is cut, and the log says how much.
LOG_HEAD_BYTES = 8 << 20
LOG_TAIL_BYTES = 8 << 20


@dataclass(frozen=True)
class RunResult:
    command: tuple[str, ...]
    returncode: int | None  # negative: killed by that signal (POSIX)
    signal: str  # e.g. "SIGSEGV"; "" when it exited
    timed_out: bool
    seconds: float
    log_path: Path
    interrupted: bool = False  # Ctrl-C: the command was stopped; the log holds its output so far
    output_bytes: int = 0  # what the command printed
    cut_bytes: int = 0  # left out of the log (its middle), said so in the log


class _CappedLog:
    """The command's output into the log file: the first ``head`` bytes as they come, the last
    ``tail`` bytes in memory (written at the end, after a line saying how much was cut)."""

    def __init__(self, log: BinaryIO, head: int, tail: int) -> None:
        self.log, self.head, self.tail = log, head, tail
        self.total = 0
        self._ring: deque[bytes] = deque()
        self._ring_bytes = 0

    def write(self, chunk: bytes) -> None:
        room = max(0, self.head - self.total)
        self.total += len(chunk)
        if room:
            self.log.write(chunk[:room])
            self.log.flush()
            chunk = chunk[room:]
        if chunk:
            self._ring.append(chunk)
            self._ring_bytes += len(chunk)
            while self._ring_bytes - len(self._ring[0]) >= self.tail:
                self._ring_bytes -= len(self._ring.popleft())

    @property
    def cut(self) -> int:
        return max(0, self.total - self.head - min(self._ring_bytes, self.tail))

    def close(self) -> None:
        tail = b"".join(self._ring)[-self.tail :] if self._ring else b""
        if self.cut:
            self.log.write(
                f"\n[doctor: {self.cut} bytes of output cut here; the log keeps the first "
                f"{self.head} and the last {len(tail)} of {self.total}]\n".encode()
            )
        self.log.write(tail)
        self.log.flush()


def run_command(
    command: Sequence[str],
    log_path: Path,
    timeout: float | None = None,
    *,
    head_bytes: int = LOG_HEAD_BYTES,
    tail_bytes: int = LOG_TAIL_BYTES,
) -> RunResult:
    if not command:
        raise UsageError(
            "doctor run needs a command", "llama-toolchain doctor run -- llama-cli -m MODEL -p hi"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        capped = _CappedLog(log, head_bytes, tail_bytes)
        try:
            done = run_group(
                command,
                lambda chunk, _out: capped.write(chunk),
                timeout=timeout,
                chunks=True,
                stop_on_interrupt=True,
            )
        except OSError as exc:
            raise UsageError(
                f"cannot run {command[0]!r}: {exc.strerror or exc}", "check the command's path"
            ) from exc
        capped.close()
    return RunResult(
        tuple(command),
        done.returncode,
        signal_name(done.returncode),
        done.timed_out,
        done.seconds,
        log_path,
        done.interrupted,
        capped.total,
        capped.cut,
    )


def run_findings(result: RunResult, observed_by: ObservedBy = "log") -> list[Finding]:
    """The exit itself as evidence: a signal is a crash, a timeout a hang (both class ``crash``)."""
    cls = BY_ID["crash"]
    if result.timed_out:
        summary = f"no exit within {result.seconds:.0f} s: stopped (a hang or a very slow run)"
        conf = 0.5
    elif result.signal:
        summary = f"killed by {result.signal}"
        conf = 0.95
    else:
        return []
    return [
        cls.finding(
            severity="error",
            confidence=conf,
            summary=summary,
            observed_by=observed_by,
            evidence=(
                Evidence(text=f"exit status {result.returncode} ({summary}) of: {' '.join(result.command)}"),
            ),
            matches=1,
        )
    ]


_FLAGS: dict[str, str] = {
    "-m": "model",
    "--model": "model",
    "-c": "n_ctx",
    "--ctx-size": "n_ctx",
    "-ngl": "n_gpu_layers",
    "--gpu-layers": "n_gpu_layers",
    "--n-gpu-layers": "n_gpu_layers",
    "-ctk": "cache_type_k",
    "--cache-type-k": "cache_type_k",
    "-ctv": "cache_type_v",
    "--cache-type-v": "cache_type_v",
    "-ub": "n_ubatch",
    "--ubatch-size": "n_ubatch",
}


def params_from_command(command: Sequence[str]) -> tuple[RunParams, Path | None]:
    """llama.cpp's own flags in the command -> (RunParams, model path). Unknown flags are ignored;
    a value of a known one that llama.cpp would not take is a UsageError (see params.py)."""
    found: dict[str, str] = {}
    flash: bool | None = None
    args = list(command)
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        key = _FLAGS.get(name)
        if key:
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
            found[key] = value
        elif name in ("-fa", "--flash-attn"):
            nxt = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
            flash = (
                nxt.lower() not in ("off", "0", "false")
                if nxt.lower() in ("on", "off", "auto", "1", "0")
                else True
            )

    def number(key: str) -> str | None:
        # not a number: another program's flag (`sh -c SCRIPT`), not llama.cpp's; ignored
        value = found.get(key, "")
        return value if looks_numeric(key, value) else None

    params = run_params(
        ctx=number("n_ctx"),
        ngl=number("n_gpu_layers"),
        ub=number("n_ubatch"),
        ctk=found.get("cache_type_k") or None,
        ctv=found.get("cache_type_v") or None,
        flash_attn=flash,
        where=" (in the command)",
    )
    model = Path(found["model"]) if found.get("model") else None
    return params, model
