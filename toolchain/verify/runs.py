"""Running the build's own program: which one (``RUNNERS``), the options its ``--help`` offers,
one bounded run with a timeout and its outcome (exit, crash, hang, flood, not startable)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core import tree
from ..core.diskfull import is_disk_full
from ..core.proc import Completed, stream
from .records import RuntimeRun

# Programs that run a prompt, newest name first; llama-simple where the tree has no runner of the same age.
RUNNERS = (*tree.RUNNERS[:2], tree.SIMPLE_RUNNER, *tree.RUNNERS[2:])
TAIL = 25
# A run printing more than this is ended as a flood (a real one-token run with the scheduler's
# debug output prints a few MiB); only this much of its text is kept in memory for parsing.
MAX_OUTPUT = 64 << 20
MAX_KEPT = 8 << 20
PROMPT = " ".join(["hello world the a"] * 12)
# Options of the one-token run added when the runner's --help has them: (flag given, option looked for)
HELP_FLAGS = (("-no-cnv", "-no-cnv"), ("--no-warmup", "--no-warmup"), ("-v", "--verbose"))


@dataclass(frozen=True)
class _Unstartable(Completed):
    """A probe whose program could not even be started (exec failed)."""


def is_broken(done: Completed) -> bool:
    """Killed by a signal, hung, flooding or not startable: broken whatever the device."""
    return isinstance(done, _Unstartable) or done.flooded or done.timed_out or done.returncode < 0


def broken_hint(done: Completed) -> str:
    if isinstance(done, _Unstartable):
        return "not a program this machine can run (a truncated copy, or built for another platform)"
    if done.flooded:
        return "the runner prints without end: see the start of its log"
    if done.timed_out:
        return "the runner never exits: see the log lines (raise --timeout if the machine is only slow)"
    if done.signal_name == "SIGILL":
        return (
            "illegal instruction: the build uses CPU instructions this machine lacks (a -march=native / "
            "GGML_NATIVE=ON build made on another machine): rebuild with -DGGML_NATIVE=OFF, or on this machine"
        )
    return "the runner crashes: see the log lines (`llama-toolchain doctor` classifies them)"


class _Kept(list[str]):
    """The lines of a run, up to :data:`MAX_KEPT` bytes (with a per-line allowance for overhead)."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = MAX_KEPT

    def add(self, line: str) -> None:
        self.budget -= len(line) + 64
        if self.budget >= 0:
            self.append(line)


def run_probe(
    args: Sequence[str], log_dir: Path, name: str, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[Completed, list[str]]:
    """Run one probe under ``timeout``; a program that cannot be started at all (not executable,
    not a binary of this machine) is returned as exit status 127 with the reason as its tail."""
    lines = _Kept()
    log = log_dir / f"{name}.log"
    log.unlink(missing_ok=True)
    try:
        done = stream(
            list(args),
            log_path=log,
            on_line=lines.add,
            timeout=timeout,
            tail_lines=TAIL,
            env=env,
            max_output=MAX_OUTPUT,
        )
    except OSError as exc:
        if is_disk_full(exc):  # our log could not be written: the disk's problem, not the build's
            raise
        why = f"cannot be started: {exc.strerror or exc}"
        return _Unstartable(tuple(args), 127, (why,), 0.0), [why]
    return done, lines


def record_run(done: Completed) -> RuntimeRun:
    return RuntimeRun(done.args, done.returncode, round(done.seconds, 3), done.timed_out, done.tail)


def find_runner(programs: Iterable[Path]) -> Path | None:
    by_name = {p.name: p for p in programs}
    return next((by_name[n] for n in RUNNERS if n in by_name), None)


def outcome(done: Completed, timeout: float) -> tuple[bool, str]:
    if isinstance(done, _Unstartable):
        return False, done.tail[0]
    if done.flooded:
        return False, f"flood: more than {MAX_OUTPUT >> 20} MiB of output (killed)"
    if done.timed_out:
        return False, f"hang: no exit after {timeout:.0f} s (killed)"
    if done.returncode < 0:
        return False, f"crash: killed by {done.signal_name}"
    if done.returncode != 0:
        return False, f"exit status {done.returncode}"
    return True, f"exit 0 in {done.seconds:.1f} s"


def one_token_args(runner: Path, model: Path, help_text: str) -> list[str]:
    """The one-token run with full offload; >= 32 prompt tokens, as backends such as BLAS take
    MUL_MAT only from that batch size on."""
    args = [str(runner), "-m", str(model), "-p", PROMPT, "-n", "1", "-ngl", "99", "-c", "256"]
    args += ["--temp", "0", "-s", "1"]
    for flag, option in HELP_FLAGS:
        if tree.has_option(help_text, option):
            args.append(flag)
    return args
