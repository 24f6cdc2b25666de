"""The classifier on fixture logs (current and older formats), healthy logs, and hostile input."""

from __future__ import annotations

import io
import os
import random
import tracemalloc
from pathlib import Path

import pytest

from toolchain.doctor.classify import RunParams, classify_log, classify_stream, classify_text
from toolchain.doctor.findings import Finding, sort_findings

from .conftest import LOGS

# fixture -> the class doctor must name first (the most likely cause)
EXPECTED = {
    "memory.log": "memory",
    "memory.legacy.log": "memory",
    "gguf-format.log": "gguf-format",
    "gguf-format.v1.log": "gguf-format",
    "gguf-format.truncated.log": "gguf-format",
    "gguf-format.version-too-new.log": "gguf-format",
    "gguf-format.legacy.log": "gguf-format",
    "no-metal-build.log": "no-metal-build",
    "no-metal-build.legacy.log": "no-metal-build",
    "unsupported-op.log": "unsupported-op",
    "unsupported-op.slow.log": "unsupported-op",
    "unsupported-op.legacy.log": "unsupported-op",
    "unsupported-op.fa-legacy.log": "unsupported-op",
    "other-gpu-users.log": "memory",  # the OOM comes first in the order; other users are named too
    "metal-library.log": "metal-library",
    "metal-library.legacy.log": "metal-library",
    "metal-library.compile.log": "metal-library",
    "no-usable-device.log": "no-usable-device",
    "no-usable-device.legacy.log": "no-usable-device",
    "architecture-too-new.log": "architecture-too-new",
    "architecture-too-new.tensors.log": "architecture-too-new",
    "architecture-too-new.legacy.log": "architecture-too-new",
    "bf16-unsupported.log": "bf16-unsupported",
    "bf16-unsupported.legacy.log": "bf16-unsupported",
    "gpu-command-buffer.log": "gpu-command-buffer",
    "gpu-command-buffer.legacy.log": "gpu-command-buffer",
    "build-toolchain.log": "build-toolchain",
    "build-toolchain.deployment.log": "build-toolchain",
    "build-toolchain.legacy.log": "build-toolchain",
    "build-toolchain.metal-toolchain.log": "build-toolchain",
    "build-toolchain.tensor-m5.log": "build-toolchain",
    "metal-library.tensor-m5.log": "metal-library",
    "crash.log": "crash",
    "crash.legacy.log": "crash",
    "kernel-missing.log": "kernel-missing",
    "kernel-missing.legacy.log": "kernel-missing",
    "encoder-limit.log": "encoder-limit",
    "encoder-limit.legacy.log": "encoder-limit",
    # 0.2.76's ggml.h wording ("GGML_ASSERT: %s:%d: %s") around its ggml-metal.m smem assert
    "encoder-limit.legacy-smem.log": "encoder-limit",
    # 0.3.20's ggml-metal-ops.cpp:3612 im2col assert (0.3.17-0.3.23)
    "encoder-limit.threads.log": "encoder-limit",
}
HEALTHY = ("healthy-metal.log", "healthy-metal.legacy.log", "healthy-cpu-ngl0.log", "healthy-metal-m4.log")


def _primary(findings: list[Finding]) -> str:
    problems = [f for f in sort_findings(findings) if f.is_problem]
    errors = [f for f in problems if f.severity == "error"]
    return (errors or problems)[0].class_id


def test_every_fixture_is_expected() -> None:
    names = {p.name for p in LOGS.glob("*.log")}
    assert names == set(EXPECTED) | set(HEALTHY)
    # every catalog class has a fixture in the tree's format and one in an older format
    classes = {n.split(".")[0] for n in EXPECTED}
    assert len(classes) == 14
    assert {n.split(".")[0] for n in EXPECTED if ".legacy" in n} >= classes - {"other-gpu-users"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_names_its_class_with_fix_and_evidence(name: str) -> None:
    scan, findings = classify_log(LOGS / name, observed_by="fixture")
    assert _primary(findings) == EXPECTED[name]
    top = next(f for f in findings if f.class_id == EXPECTED[name])
    assert top.fix and top.evidence and top.confidence >= 0.5
    assert all(f.observed_by == "fixture" for f in findings)
    lines = (LOGS / name).read_text().splitlines()
    for ev in top.evidence:  # evidence lines carry their real line numbers
        assert ev.line is not None and lines[ev.line - 1].strip() == ev.text


def test_other_gpu_users_is_named_from_the_device_list() -> None:
    _, findings = classify_log(LOGS / "other-gpu-users.log")
    assert {"memory", "other-gpu-users"} <= {f.class_id for f in findings}


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_logs_have_no_problem(name: str) -> None:
    scan, findings = classify_log(LOGS / name)
    assert not [f for f in findings if f.is_problem], findings
    assert not scan.empty and not scan.binary


def test_facts_are_recorded() -> None:
    scan, _ = classify_log(LOGS / "healthy-metal.log")
    assert scan.fact("memory.recommended-working-set") == "77309.41"
    assert scan.fact("unsupported-op.graph-splits") == "2"


def test_offloaded_zero_is_fine_when_asked_for() -> None:
    text = "load_tensors: offloaded 0/33 layers to GPU\n"
    assert [f.class_id for f in classify_text(text)[1]] == ["no-metal-build"]
    assert classify_text(text, params=RunParams(n_gpu_layers=0))[1] == []


def test_generic_line_explained_by_specific_one() -> None:
    oom = "x: error: command buffer 0 failed with status 5\nerror: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)\n"
    assert [f.class_id for f in classify_text(oom)[1]] == ["memory"]
    bare = "x: error: command buffer 0 failed with status 5\n"
    assert [f.class_id for f in classify_text(bare)[1]] == ["gpu-command-buffer"]


def test_empty_log() -> None:
    scan, findings = classify_stream(io.BytesIO(b""))
    assert scan.empty and scan.lines == 0 and findings == []
    scan, findings = classify_stream(io.BytesIO(b"\n\n  \n"))
    assert scan.empty and findings == []


def test_binary_garbage(tmp_path: Path) -> None:
    rng = random.Random(7)
    garbage = bytes(rng.getrandbits(8) for _ in range(3 << 20))
    path = tmp_path / "garbage.bin"
    path.write_bytes(garbage + b"\nggml_metal_init: error: unsupported op 'ROPE'\n" + garbage[:1000])
    scan, findings = classify_log(path)
    assert scan.binary
    assert [f.class_id for f in findings if f.is_problem] == ["unsupported-op"]


def test_newline_free_data_is_scanned_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "one-line.log"
    with path.open("wb") as fh:
        fh.write(b"x" * (9 << 20))
        fh.write(b" GGUFv1 is no longer supported, please use a more up-to-date version ")
        fh.write(b"y" * (1 << 20))
    scan, findings = classify_log(path)
    assert scan.lines == 1
    assert [f.class_id for f in findings] == ["gguf-format"]
    assert findings[0].evidence[0].line == 1


def test_line_numbers_across_blocks() -> None:
    text = "".join(f"token {i}\n" for i in range(300_000)) + "ggml_metal_init: error: unsupported op 'X'\n"
    scan, findings = classify_stream(io.BytesIO(text.encode()), block=64 << 10)
    assert scan.lines == 300_001
    assert findings[0].evidence[0].line == 300_001


@pytest.mark.skipif(os.environ.get("DOCTOR_SKIP_1GB") == "1", reason="DOCTOR_SKIP_1GB=1")
def test_one_gigabyte_log_streams_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    filler = (
        b"llama_perf_context_print:        eval time =     812.33 ms /    63 runs   "
        b"(   12.89 ms per token,    77.56 tokens per second)\n"
        b"The capital of France is Paris, it is known for the Eiffel Tower and the Louvre museum.\n"
    )
    chunk = filler * ((8 << 20) // len(filler))
    target = 1 << 30
    middle_line = 0
    with path.open("wb") as fh:
        written = 0
        while written < target:
            fh.write(chunk)
            written += len(chunk)
            if not middle_line and written >= target // 2:
                middle_line = written // len(filler) * 2 + 1
                fh.write(b"ggml_metal_synchronize: error: command buffer 0 failed with status 5\n")
                written += 1
        fh.write(b"llama_kv_cache: failed to allocate buffer for kv cache\n")
    assert path.stat().st_size >= target
    tracemalloc.start()
    scan, findings = classify_log(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    path.unlink()
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB"  # blocks of 4 MiB, never the file
    assert {f.class_id for f in findings} == {"memory", "gpu-command-buffer"}
    gcb = next(f for f in findings if f.class_id == "gpu-command-buffer")
    assert gcb.evidence[0].line == middle_line
    assert scan.lines == next(f for f in findings if f.class_id == "memory").evidence[0].line


def test_missing_metal_toolchain_names_the_component_download() -> None:
    """Xcode 26's separate Metal Toolchain: the class with the download as the first fix."""
    _, findings = classify_log(LOGS / "build-toolchain.metal-toolchain.log")
    (top,) = [f for f in findings if f.is_problem]
    assert top.class_id == "build-toolchain" and top.severity == "error"
    assert top.evidence[0].pattern == "build-toolchain.missing-metal-toolchain"
    assert "xcodebuild -downloadComponent MetalToolchain" in top.fix
    assert "GGML_METAL_EMBED_LIBRARY=ON" in top.fix


@pytest.mark.parametrize(
    ("name", "class_id", "says"),
    [
        ("metal-library.tensor-m5.log", "metal-library", "ggml-tensor.metallib was not found"),
        ("build-toolchain.tensor-m5.log", "build-toolchain", "test kernel did not compile"),
    ],
)
def test_tensor_api_off_on_an_m5_is_a_finding(name: str, class_id: str, says: str) -> None:
    _, findings = classify_log(LOGS / name)
    (top,) = [f for f in findings if f.is_problem]
    assert (top.class_id, top.severity) == (class_id, "warning")
    assert says in top.summary and "macOS 26 SDK" in top.fix
    assert any("tensor API" in e.text for e in top.evidence)


def test_tensor_api_off_before_m5_is_only_a_fact() -> None:
    scan, findings = classify_log(LOGS / "healthy-metal-m4.log")
    assert not [f for f in findings if f.is_problem]
    assert scan.matches["metal-library.tensor-pre-m5"] == 1


def test_has_tensor_false_on_an_m5_without_a_reason() -> None:
    """No disabling line (an SDK without Metal 4): the device line and has tensor = false say it."""
    log = (
        "ggml_metal_device_init: GPU name:   MTL0 (Apple M5 Pro)\n"
        "ggml_metal_device_init: has tensor            = false\n"
    )
    (f,) = classify_text(log)[1]
    assert (f.class_id, f.severity) == ("build-toolchain", "warning") and "SDK without Metal 4" in f.summary
    m4 = log.replace("M5 Pro", "M4 Pro")
    assert classify_text(m4)[1] == []
