"""Hostile input to ``doctor``, through the command line (issue #14): each probe ends with its own
exit code and a clear message, within its memory and time bounds, never with a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.doctor import ggufbytes as g
from tests.signalled import sigint_ignored, start, toolchain
from toolchain.config import Settings

PEAK_LIMIT_MB = 200
# A safety net for the probes' wrapper: a run that would eat the machine fails fast instead.
ADDRESS_SPACE_LIMIT = 1536 << 20

# Runs the CLI as its only child and reports that child's peak RSS (``RUSAGE_CHILDREN`` of a fresh
# process, so no other child of the test session counts).
_WRAPPER = """
import json, resource, subprocess, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
done = subprocess.run([sys.executable, "-m", "toolchain", *sys.argv[2:]], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": done.returncode, "peak_kb": peak, "stdout": done.stdout, "stderr": done.stderr}))
"""

Cli = Callable[..., subprocess.CompletedProcess[str]]
Fault = Callable[..., None]


@pytest.fixture
def measured(settings: Settings) -> Callable[..., tuple[subprocess.CompletedProcess[str], float]]:
    """``llama-toolchain ARGS`` in the test project; (result, its peak RSS in MB)."""

    def run(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], float]:
        env = {**os.environ, "TOOLCHAIN_CACHE": str(settings.cache_dir), "NO_COLOR": "1"}
        env.pop("GITHUB_ACTIONS", None)
        env["PYTHONPATH"] = str(ROOT)
        out = subprocess.run(
            [sys.executable, "-c", _WRAPPER, str(ADDRESS_SPACE_LIMIT), *args],
            cwd=settings.project_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        data = json.loads(out.stdout.splitlines()[-1])
        result = subprocess.CompletedProcess(args, data["rc"], data["stdout"], data["stderr"])
        return result, data["peak_kb"] / 1024

    return run


def _report(settings: Settings) -> Any:
    return json.loads((settings.work_dir / "reports" / "doctor.json").read_text())


def _gguf_findings(settings: Settings) -> list[str]:
    return [f["summary"] for f in _report(settings)["findings"] if f["class_id"] == "gguf-format"]


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


# --- GGUF headers: bounded memory, time and recursion ------------------------------------------------
def test_nested_empty_arrays_are_refused_in_bounded_memory(
    measured: Callable[..., tuple[subprocess.CompletedProcess[str], float]],
    fault: Fault,
    settings: Settings,
    tmp_path: Path,
) -> None:
    n = 50_000_000 // 12  # 50 MB of empty arrays inside one array
    nested = g.string("x.nested") + g.struct.pack("<IIQ", g.ARR, g.ARR, n) + g.struct.pack("<IQ", g.U8, 0) * n
    path = tmp_path / "nested.gguf"
    path.write_bytes(g.gguf([g.kv("general.architecture", g.STR, "llama"), nested]))
    start = time.monotonic()
    result, peak = measured("doctor", "--no-system", "--gguf", str(path), "--memory", "8GiB")
    fault(result, 60, "array of arrays", started=start, bound=60)
    _no_traceback(result)
    assert peak <= PEAK_LIMIT_MB, f"peak {peak:.0f} MB"
    assert any("x.nested" in s for s in _gguf_findings(settings))


def test_deeply_nested_arrays_are_a_finding_not_a_recursion_error(
    cli: Cli, fault: Fault, settings: Settings, tmp_path: Path
) -> None:
    depth = 200_000
    deep = g.string("x.deep") + g.struct.pack("<I", g.ARR) + g.struct.pack("<IQ", g.ARR, 1) * depth
    path = tmp_path / "deep.gguf"
    path.write_bytes(
        g.gguf([g.kv("general.architecture", g.STR, "llama"), deep + g.struct.pack("<IQ", 0, 0)])
    )
    start = time.monotonic()
    result = cli("doctor", "--no-system", "--gguf", str(path), "--memory", "8GiB")
    fault(result, 60, "array of arrays", started=start, bound=60)
    _no_traceback(result)


@pytest.mark.parametrize("block_count", [2**40, 2**22])
def test_huge_block_count_is_refused_at_once(
    measured: Callable[..., tuple[subprocess.CompletedProcess[str], float]],
    fault: Fault,
    settings: Settings,
    tmp_path: Path,
    block_count: int,
) -> None:
    path = tmp_path / "layers.gguf"
    path.write_bytes(g.model(block_count, block_count_type=g.U64, n_embd=16))
    assert path.stat().st_size < 32 << 10
    start = time.monotonic()
    result, peak = measured("doctor", "--no-system", "--gguf", str(path), "--memory", "8GiB")
    fault(result, 60, "block_count", started=start, bound=20)
    _no_traceback(result)
    assert peak <= PEAK_LIMIT_MB, f"peak {peak:.0f} MB"
    assert any(f"block_count = {block_count}" in s for s in _gguf_findings(settings))
    assert _report(settings)["memory"] is None


def test_per_layer_array_shorter_than_the_layer_count(
    cli: Cli, fault: Fault, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "short.gguf"
    path.write_bytes(g.model(3, [g.kv_array("llama.attention.head_count_kv", g.U32, [2, 2])]))
    start = time.monotonic()
    result = cli("doctor", "--no-system", "--gguf", str(path), "--memory", "8GiB", "-c", "1024")
    fault(result, 60, "head_count_kv", started=start, bound=30)
    _no_traceback(result)
    assert any("wrong array length; expected 3, got 2" in s for s in _gguf_findings(settings))


@pytest.mark.parametrize(
    ("alignment", "words"),
    [
        (g.kv("general.alignment", g.F32, float("inf")), "general.alignment is FLOAT32"),
        (g.kv_array("general.alignment", g.U32, [32]), "general.alignment is an array"),
        (g.kv("general.alignment", g.U32, 48), "general.alignment 48 is not a power of 2"),
        (g.kv("general.alignment", g.U32, 0), "general.alignment 0 is not a power of 2"),
    ],
    ids=["inf", "array", "48", "0"],
)
def test_bad_alignment_is_a_finding(
    cli: Cli, fault: Fault, settings: Settings, tmp_path: Path, alignment: bytes, words: str
) -> None:
    path = tmp_path / "align.gguf"
    path.write_bytes(g.model(1, [alignment]))
    start = time.monotonic()
    result = cli("doctor", "--no-system", "--gguf", str(path), "--memory", "8GiB")
    fault(result, 60, words, started=start, bound=30)
    _no_traceback(result)


# --- files that are not regular files: refused at once ---------------------------------------------
@pytest.mark.parametrize("as_gguf", [False, True], ids=["log", "gguf"])
def test_fifo_is_refused_at_once(cli: Cli, fault: Fault, tmp_path: Path, as_gguf: bool) -> None:
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading would block forever
    args = ("--gguf", str(fifo), "--memory", "8GiB") if as_gguf else (str(fifo),)
    start = time.monotonic()
    result = cli("doctor", "--no-system", *args, timeout=120)
    fault(result, 42 if as_gguf else 2, "is a FIFO (named pipe), not a regular file", started=start, bound=30)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("/dev/zero",), 2, "is a character device"),
        (("--gguf", "/dev/zero", "--memory", "8GiB"), 42, "is a character device"),
        (("--gguf", "{tmp}", "--memory", "8GiB"), 42, "is a directory"),
        (("{tmp}",), 2, "is a directory"),
    ],
    ids=["log-device", "gguf-device", "gguf-directory", "log-directory"],
)
def test_other_non_regular_files_are_refused(
    cli: Cli, fault: Fault, tmp_path: Path, args: tuple[str, ...], code: int, words: str
) -> None:
    start = time.monotonic()
    result = cli("doctor", "--no-system", *(a.format(tmp=tmp_path) for a in args), timeout=120)
    fault(result, code, words, started=start, bound=30)


def test_stdin_stays_allowed(settings: Settings) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    line = "ggml_metal_graph_compute: command buffer 0 failed with status 5\n"
    result = subprocess.run(
        [sys.executable, "-m", "toolchain", "doctor", "--no-system", "-"],
        input=line,
        cwd=settings.project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 60, result.stderr
    assert _report(settings)["log"]["source"] == "-"


# --- bad arguments: UsageError (exit 2) naming the option, never a traceback ----------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("-c", "9" * 400), "-c"),
        (("-c", "-5"), "-c"),
        (("-ub", "0"), "-ub"),
        (("-ngl", "-7"), "-ngl"),
        (("--memory", "9" * 400), "--memory"),
        (("--memory", "0"), "--memory"),
        (("-ctk", "bogus"), "-ctk"),
        (("-ctv", "q9_9"), "-ctv"),
    ],
    ids=[
        "ctx-400-digits",
        "ctx-negative",
        "ubatch-zero",
        "ngl-negative",
        "memory-400-digits",
        "memory-zero",
        "ctk",
        "ctv",
    ],
)
def test_bad_run_parameters_are_usage_errors(
    cli: Cli, fault: Fault, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(g.model(2))
    start = time.monotonic()
    result = cli("doctor", "--no-system", "--gguf", str(model), *args)
    fault(result, 2, words, started=start, bound=30)
    _no_traceback(result)
    if words in ("-ctk", "-ctv"):
        assert "q8_0" in result.stderr  # the accepted values are named


def test_bad_cache_type_refused_without_gguf_or_ctx(cli: Cli, fault: Fault, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("load_tensors: offloaded 33/33 layers to GPU\n")
    start = time.monotonic()
    fault(cli("doctor", "--no-system", str(log), "-ctk", "bogus"), 2, "-ctk", started=start, bound=30)


def test_negative_ctx_in_the_run_command_is_refused(cli: Cli, fault: Fault) -> None:
    start = time.monotonic()
    result = cli("doctor", "--no-system", "run", "--", sys.executable, "-c", "pass", "-c", "-5")
    fault(result, 2, "-c", started=start, bound=30)


@pytest.mark.parametrize("value", ["1.2.3", "9" * 400])
def test_unreadable_working_set_size_in_a_log(
    cli: Cli, fault: Fault, settings: Settings, tmp_path: Path, value: str
) -> None:
    log = tmp_path / "metal.log"
    log.write_text(f"ggml_metal_device_init: recommendedMaxWorkingSetSize = {value} MB\n")
    model = tmp_path / "m.gguf"
    model.write_bytes(g.model(2))
    start = time.monotonic()
    result = cli("doctor", "--no-system", str(log), "--gguf", str(model), "--memory", "8GiB")
    fault(result, 0, started=start, bound=30)
    _no_traceback(result)
    data = _report(settings)
    assert data["memory"]["working_set_bytes"] is None
    assert any("recommendedMaxWorkingSetSize" in n for n in data["notes"])


# --- log text: verbatim everywhere, escapes neutralised on the console -------------------------------
HOSTILE_LINE = (
    "ggml_metal_graph_compute: command buffer 0 failed with status 5 [/Users/me/q.gguf] [bold]x[/] "
    "at ggml-metal.m:1234: \x1b[2J\x1b]52;c;SGVsbG8=\x07 done"
)


def test_log_text_is_verbatim_in_every_output(cli: Cli, settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "hostile.log"
    log.write_text(f"start\n{HOSTILE_LINE}\n")
    result = cli("doctor", "--no-system", str(log), "--json")
    assert result.returncode == 60, result.stderr
    _no_traceback(result)
    # console: brackets and colons as they are, escape sequences shown, never sent raw
    assert "[/Users/me/q.gguf] [bold]x[/]" in result.stderr
    assert "ggml-metal.m:1234:" in result.stderr
    assert "\\x1b[2J\\x1b]52;c;SGVsbG8=\\x07" in result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    # JSON (stdout and doctor.json): the exact text
    for data in (json.loads(result.stdout), _report(settings)):
        memory = next(f for f in data["findings"] if f["class_id"] == "gpu-command-buffer")
        assert [e["text"] for e in memory["evidence"]] == [HOSTILE_LINE]
        assert memory["evidence"][0]["line"] == 2
        assert HOSTILE_LINE in memory["summary"]  # the example line, exact


# --- Ctrl-C: the partial report replaces the previous one, marked incomplete ------------------------
@pytest.mark.parametrize(
    "parent_ignores_sigint", [False, True], ids=["sigint-default", "parent-ignores-sigint"]
)
def test_ctrl_c_writes_a_partial_report(settings: Settings, parent_ignores_sigint: bool) -> None:
    import signal
    import threading

    reports = settings.work_dir / "reports"
    reports.mkdir(parents=True)
    (reports / "doctor.json").write_text('{"kind": "doctor", "previous": true}\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    # stdin held open by the test: doctor waits for more log
    with sigint_ignored(parent_ignores_sigint):
        proc = start(
            toolchain("doctor", "--no-system", "-"), cwd=settings.project_root, env=env, stdin=subprocess.PIPE
        )
    assert proc.stdin is not None and proc.stderr is not None
    reading = threading.Event()
    lines: list[str] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "reading the log from stdin" in line:
                reading.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc.stdin.write("ggml_metal_graph_compute: command buffer 0 failed with status 5\n")
        proc.stdin.flush()
        assert reading.wait(timeout=120), "".join(lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, "".join(lines)
    finally:
        proc.kill()
        proc.stdin.close()
        proc.wait()
    watcher.join(timeout=10)
    data = _report(settings)
    assert "previous" not in data
    assert data["complete"] is False and data["interrupted_during"] == "log"
    assert "Traceback" not in "".join(lines)
    assert any("incomplete" in line for line in lines)


# --- doctor run: a flooding command's log is capped, and still classified ------------------------
FLOOD = """
import sys
out = sys.stdout.buffer
out.write(b"ggml_metal_graph_compute: command buffer 0 failed with status 5\\n")
line = b"x" * 1023 + b"\\n"
for _ in range(300 * 1024):  # 300 MiB
    out.write(line)
out.write(b"GGML_ASSERT(ne00 % 32 == 0) failed\\n")
"""


def test_run_log_of_a_flooding_command_is_capped(cli: Cli, fault: Fault, settings: Settings) -> None:
    start = time.monotonic()
    result = cli("doctor", "--no-system", "run", "--timeout", "300", "--", sys.executable, "-c", FLOOD)
    fault(result, 60, started=start, bound=240)
    log = settings.work_dir / "reports" / "doctor-run.log"
    assert log.stat().st_size <= 17 << 20
    data = _report(settings)
    assert data["run"]["output_bytes"] > 300 << 20
    cut = data["run"]["cut_bytes"]
    assert cut > 280 << 20
    with log.open("rb") as fh:
        assert fh.read(64).startswith(b"ggml_metal_graph_compute: command buffer 0 failed")
        fh.seek(-200, os.SEEK_END)
        assert fh.read().endswith(b"GGML_ASSERT(ne00 % 32 == 0) failed\n")
    assert f"[doctor: {cut} bytes of output cut here".encode() in log.read_bytes()
    classes = {f["class_id"] for f in data["findings"]}
    assert {"gpu-command-buffer", "crash"} <= classes  # from the head and from the tail


def test_ctrl_c_during_doctor_run_stops_the_command_and_writes_a_partial_report(
    settings: Settings, tmp_path: Path
) -> None:
    import signal
    import threading

    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    # the command says hello, then blocks reading the FIFO until the test writes (it never does)
    child = f"print('load_tensors: offloaded 1/2 layers to GPU', flush=True); open({str(fifo)!r}).read()"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    doctor_run = ("doctor", "--no-system", "run", "--", sys.executable, "-c", child)
    proc = start(toolchain(*doctor_run), cwd=settings.project_root, env=env)
    opened: list[int] = []
    # opening the FIFO for writing returns once the command has opened it for reading
    rendezvous = threading.Thread(target=lambda: opened.append(os.open(fifo, os.O_WRONLY)), daemon=True)
    rendezvous.start()
    try:
        rendezvous.join(timeout=120)
        assert opened, "the command never started"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
    finally:
        proc.kill()
        proc.wait()
        for fd in opened:
            os.close(fd)
    assert "Traceback" not in stderr
    data = _report(settings)
    assert data["complete"] is False and data["interrupted_during"] == "run"
    assert data["run"]["interrupted"] is True
    log = (settings.work_dir / "reports" / "doctor-run.log").read_text()
    assert log.startswith("load_tensors: offloaded 1/2 layers to GPU")
    left = subprocess.run(["pgrep", "-f", str(fifo)], capture_output=True, text=True).stdout.split()
    assert not left, f"the command was left behind: {left}"
