"""Property tests (Hypothesis) for what a stranger feeds doctor: GGUF headers and logs.

Invariant: a result, or a ToolchainError with its exit code (usage 2, GGUF 42); never another
exception; bounded time per example (the settings' deadline). The whole file runs in seconds."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.core.jsonio import to_jsonable
from toolchain.doctor.classify import MAX_LINE, classify_text
from toolchain.doctor.cli import print_report
from toolchain.doctor.diagnose import DoctorInputs, diagnose
from toolchain.errors import ToolchainError

from . import ggufbytes as g

FAST = settings(max_examples=80, deadline=3000, suppress_health_check=[HealthCheck.too_slow])


def _diagnose_file(data: bytes, **params: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        path.write_bytes(data)
        try:
            report = diagnose(DoctorInputs(gguf=path, memory="8GiB", system=False))
        except ToolchainError as exc:
            assert exc.exit_code in (2, 42), exc
            return
        json.dumps(to_jsonable(report))  # the JSON output path
        print_report(report)  # the console output path
        if report.gguf and report.gguf["parse_error"]:
            assert any(f.class_id == "gguf-format" for f in report.findings)


# --- GGUF headers --------------------------------------------------------------------------------
@FAST
@given(version=st.sampled_from([1, 2, 3, 4, 0x03000000]), rest=st.binary(max_size=4000))
def test_random_bytes_after_the_magic(version: int, rest: bytes) -> None:
    _diagnose_file(b"GGUF" + struct.pack("<I", version) + rest)


KEYS = st.sampled_from(
    [
        "general.architecture",
        "general.alignment",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.embedding_length",
        "llama.context_length",
        "llama.feed_forward_length",
        "llama.attention.sliding_window",
        "llama.attention.sliding_window_pattern",
        "llama.vocab_size",
        "tokenizer.ggml.tokens",
    ]
)
BIG = st.one_of(st.integers(0, 8), st.integers(0, 2**64 - 1))


@st.composite
def kv_pair(draw: st.DrawFn) -> bytes:
    key = draw(KEYS)
    vtype = draw(st.integers(0, 14))
    head = g.string(key) + struct.pack("<I", vtype)
    if vtype in g.FMT:
        fmt = g.FMT[vtype]
        size = struct.calcsize(fmt)
        return head + draw(st.binary(min_size=size, max_size=size))
    if vtype == g.STR:
        return head + g.string(draw(st.sampled_from(["llama", "", "x" * 300, "\x1b[2J[/x]:1234:"])))
    if vtype == g.ARR:
        item = draw(st.integers(0, 14))
        n = draw(BIG)
        return head + struct.pack("<IQ", item, n) + draw(st.binary(max_size=64))
    return head + draw(st.binary(max_size=16))


@st.composite
def tensor(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(["token_embd.weight", "blk.0.attn_q.weight", "blk.7.x", "blk.99999999999.x"]))
    dims = draw(st.lists(st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1)), max_size=6))
    return g.tensor_info(name, dims, draw(st.integers(0, 40)), draw(st.integers(0, 2**64 - 1)))


@FAST
@given(
    kvs=st.lists(kv_pair(), max_size=10),
    tensors=st.lists(tensor(), max_size=6),
    n_kv=st.one_of(st.none(), BIG),
    n_tensors=st.one_of(st.none(), BIG),
    data=st.binary(max_size=256),
)
def test_random_key_values_and_tensors(
    kvs: list[bytes], tensors: list[bytes], n_kv: int | None, n_tensors: int | None, data: bytes
) -> None:
    _diagnose_file(g.gguf(kvs, tensors, n_kv=n_kv, n_tensors=n_tensors, data=data))


def test_truncation_at_every_point() -> None:
    whole = g.model(2, [g.kv_array("llama.attention.head_count_kv", g.U32, [2, 2])])
    header_end = whole.index(b"\0" * 64)  # the data section (zeros) follows the header
    for cut in range(header_end + 40):
        _diagnose_file(whole[:cut])


# --- logs ------------------------------------------------------------------------------------------
LOG_PIECES = st.sampled_from(
    [
        "[/Users/me/q.gguf]",
        "[bold]",
        ":1234:",
        "\x1b[2J",
        "\x1b]52;c;SGVsbG8=\x07",
        "\x00",
        "\r",
        "\n",
        "command buffer 0 failed with status 5",
        "recommendedMaxWorkingSetSize = 1.2.3 MB",
        "recommendedMaxWorkingSetSize = " + "9" * 400 + " MB",
        "graph splits = 99999999999999999999",
        "ggml_metal_init: GPU name: ",
        "GGML_ASSERT(",
        "unsupported op '",
        "ggml_backend_metal_buffer_type_alloc_buffer: error: failed to allocate buffer, size = ",
        "load_tensors: offloaded 1/2 layers to GPU",
        "Flash Attention was auto, set to disabled",
        "=",
        "ü",
    ]
)


@FAST
@given(
    pieces=st.lists(st.one_of(LOG_PIECES, st.text(max_size=40)), max_size=40),
    long_line=st.integers(0, 3 * MAX_LINE),
)
def test_random_logs(pieces: list[str], long_line: int) -> None:
    text = "".join(pieces) + "\n" + "[:" * long_line + "GGML_ASSERT(x) failed\n"
    scan, findings = classify_text(text)
    assert scan.lines >= 1
    plain = text.replace("\x00", "")
    for finding in findings:
        for ev in finding.evidence:
            assert ev.text in plain  # evidence is the log's own text (NUL bytes dropped)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.log"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        model = Path(tmp) / "m.gguf"
        model.write_bytes(g.model(2))
        try:
            report = diagnose(DoctorInputs(log=path, gguf=model, memory="8GiB", system=False))
        except ToolchainError as exc:
            assert exc.exit_code in (2, 42), exc
            return
        json.dumps(to_jsonable(report))
        print_report(report)
