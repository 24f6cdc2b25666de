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
