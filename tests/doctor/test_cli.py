"""``llama-toolchain doctor`` end to end: exit codes, doctor.json, --json, stdin, run, bad input."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from toolchain.doctor.run import params_from_command, run_command
from toolchain.errors import DoctorFindingsError

from .conftest import LOGS


def _report(tmp_path: Path) -> Any:
    return json.loads((tmp_path / ".toolchain" / "reports" / "doctor.json").read_text())


def test_log_with_a_problem(doctor_cli: Callable[..., int], tmp_path: Path) -> None:
    assert doctor_cli(str(LOGS / "memory.log")) == DoctorFindingsError.exit_code == 60
    data = _report(tmp_path)
    assert data["kind"] == "doctor" and data["schema_version"] == 1
    assert data["findings"][0]["class_id"] == "memory"
    assert data["findings"][0]["observed_by"] == "log"
    assert data["findings"][0]["evidence"][0]["line"] == 12


def test_healthy_log_exits_zero(doctor_cli: Callable[..., int], tmp_path: Path) -> None:
    assert doctor_cli(str(LOGS / "healthy-metal.log")) == 0
    assert [f for f in _report(tmp_path)["findings"] if f["severity"] != "info"] == []


def test_json_on_stdout(doctor_cli: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor_cli(str(LOGS / "unsupported-op.log"), "--json") == 60
    data = json.loads(capsys.readouterr().out)
    assert [f["class_id"] for f in data["findings"]] == ["unsupported-op", "crash"]


def test_stdin(doctor_cli: Callable[..., int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stdin = io.TextIOWrapper(io.BytesIO((LOGS / "gguf-format.v1.log").read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert doctor_cli("-") == 60
    assert _report(tmp_path)["findings"][0]["class_id"] == "gguf-format"


def test_empty_log_is_not_a_pass_but_its_own_answer(doctor_cli: Callable[..., int], tmp_path: Path) -> None:
    """Issue #32 M: nothing recognised is "no llama.cpp log lines found" (61), never ✓ / 0."""
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert doctor_cli(str(empty)) == 61
    notes = _report(tmp_path)["notes"]
    assert any("empty" in n for n in notes) and any("no llama.cpp log lines found" in n for n in notes)


def test_gguf_and_memory_plan(
    doctor_cli: Callable[..., int], write_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    model = write_gguf()
    assert doctor_cli("--gguf", str(model), "--memory", "8GiB", "-c", "2048") == 0
    data = _report(tmp_path)
    assert data["gguf"]["architecture"] == "llama"
    assert data["memory"]["memory_source"] == "--memory" and data["memory"]["max_context"][0]["n_ctx"] == 2048
    assert data["findings"][0]["observed_by"] == "gguf"


def test_damaged_gguf_is_a_finding(doctor_cli: Callable[..., int], write_gguf: Callable[..., Path]) -> None:
    model = write_gguf()
    model.write_bytes(model.read_bytes()[:-100])
    assert doctor_cli("--gguf", str(model), "--memory", "8GiB") == 60


def test_bad_input_gets_typed_errors(doctor_cli: Callable[..., int], tmp_path: Path) -> None:
    assert doctor_cli(str(tmp_path / "missing.log")) == 2  # UsageError
    assert doctor_cli(str(tmp_path)) == 2  # a directory
    assert doctor_cli("--gguf", str(tmp_path / "missing.gguf")) == 42  # GGUFError
    assert doctor_cli() == 2  # nothing to diagnose
    # arguments are checked before any file is read: a bad --memory is a usage error (2) even
    # with a missing GGUF
    assert doctor_cli(str(LOGS / "healthy-metal.log"), "--memory", "lots", "--gguf", str(tmp_path / "x")) == 2
    assert doctor_cli(str(LOGS / "healthy-metal.log"), "--bogus") == 2


def test_run_form_captures_signal(doctor_cli: Callable[..., int], tmp_path: Path) -> None:
    script = "echo 'ggml_metal_op_encode_impl: error: unsupported op SSM_SCAN'; kill -SEGV $$"
    assert doctor_cli("run", "--timeout", "30", "--", "sh", "-c", script) == 60
    data = _report(tmp_path)
    assert data["run"]["signal"] == "SIGSEGV"
    assert "crash" in {f["class_id"] for f in data["findings"]}
    assert (tmp_path / ".toolchain" / "reports" / "doctor-run.log").read_text().startswith("ggml_metal_op")


def test_run_form_healthy_command(doctor_cli: Callable[..., int], tmp_path: Path) -> None:
    assert (
        doctor_cli("run", "--", sys.executable, "-c", "print('load_tensors: offloaded 33/33 layers to GPU')")
        == 0
    )


def test_run_timeout_stops_the_group(tmp_path: Path) -> None:
    result = run_command(["sh", "-c", "sleep 30 & sleep 30"], tmp_path / "run.log", timeout=0.5)
    assert result.timed_out and result.seconds < 15


def test_params_from_command() -> None:
    params, model = params_from_command(
        [
            "llama-cli",
            "-m",
            "m.gguf",
            "-c",
            "8192",
            "-ngl",
            "99",
            "-ctk",
            "q8_0",
            "--cache-type-v=q8_0",
            "-fa",
            "on",
        ]
    )
    assert model == Path("m.gguf")
    assert (params.n_ctx, params.n_gpu_layers, params.cache_type_k, params.cache_type_v) == (
        8192,
        99,
        "q8_0",
        "q8_0",
    )
    assert params.flash_attn is True
