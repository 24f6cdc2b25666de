"""GGUF check on files written with the gguf package, then damaged byte by byte."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

from toolchain.doctor.gguf_check import check_gguf, known_architectures, read_gguf


def _classes(path: Path, **kw: object) -> list[str]:
    return [f.class_id for f in check_gguf(path, **kw).findings]  # type: ignore[arg-type]


def test_valid_file_read_by_the_bounded_parser(write_gguf: Callable[..., Path]) -> None:
    path = write_gguf()
    info = read_gguf(path)
    assert (info.kind, info.version, info.reader) == ("gguf", 3, "header")
    # the same header as the gguf package's reader sees it (trusted here: our own small file)
    from gguf import GGUFReader

    reference = GGUFReader(path)
    assert info.data_offset == reference.data_offset
    assert [(t.name, t.offset, t.n_bytes) for t in info.tensors] == [
        (t.name, int(t.data_offset) - reference.data_offset, int(t.n_bytes)) for t in reference.tensors
    ]
    assert info.metadata["llama.block_count"] == reference.fields["llama.block_count"].contents()
    assert info.architecture == "llama"
    assert info.tensor_count == len(info.tensors) == 1 + 2 * 3
    # token_embd f16 32x64 + per layer q f16 64x64, k f16 32x64, ffn_up f32 128x64
    assert info.tensor_data_bytes == 32 * 64 * 2 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 4)
    assert info.expected_size is not None and info.expected_size <= info.file_size
    assert check_gguf(path).findings == ()


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<htm" + b"l>not a model" * 10)
    check = check_gguf(path)
    assert check.info.kind == "not-gguf"
    assert [f.class_id for f in check.findings] == ["gguf-format"]
    assert "magic '<htm'" in check.findings[0].summary


def test_pre_gguf_ggjt_named(tmp_path: Path) -> None:
    path = tmp_path / "ggml-model-q4_0.bin"
    path.write_bytes(struct.pack("<II", 0x67676A74, 3) + b"\0" * 64)  # 'ggjt' v3, as llama.cpp wrote it
    check = check_gguf(path)
    assert check.info.kind == "pre-gguf" and check.info.magic == "tjgg"
    assert "ggjt" in check.findings[0].summary and "pre-GGUF" in check.findings[0].summary


def test_v1_header(write_gguf: Callable[..., Path]) -> None:
    path = write_gguf()
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 1)
    path.write_bytes(bytes(data))
    check = check_gguf(path)
    assert check.info.version == 1 and check.info.reader == "header"
    assert "v1" in check.findings[0].summary and check.findings[0].class_id == "gguf-format"


def test_version_from_the_future(write_gguf: Callable[..., Path]) -> None:
    path = write_gguf()
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 4)
    path.write_bytes(bytes(data))
    assert "version 4" in check_gguf(path).findings[0].summary


def test_truncated_tensor_data(write_gguf: Callable[..., Path]) -> None:
    path = write_gguf()
    full = path.read_bytes()
    path.write_bytes(full[:-5000])
    check = check_gguf(path)
    assert check.info.reader == "header"
    assert [f.class_id for f in check.findings] == ["gguf-format"]
    assert "truncated" in check.findings[0].summary and "5000 missing" in check.findings[0].summary


def test_truncated_header(write_gguf: Callable[..., Path]) -> None:
    path = write_gguf()
    path.write_bytes(path.read_bytes()[:60])
    check = check_gguf(path)
    assert check.info.parse_error
    assert check.findings[0].class_id == "gguf-format"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert "empty" in check_gguf(path).findings[0].summary


def test_layers_inconsistent_with_block_count(write_gguf: Callable[..., Path]) -> None:
    path = write_gguf(n_layer=3, skip_layer=1)
    findings = check_gguf(path).findings
    assert [f.class_id for f in findings] == ["gguf-format"]
    assert "[1]" in findings[0].summary


def test_architecture_unknown_to_the_tree(write_gguf: Callable[..., Path], tree_0336: Path) -> None:
    archs = known_architectures(tree_0336)
    assert {"llama", "qwen2", "gemma3"} <= archs
    assert _classes(write_gguf(), known_archs=archs) == []
    assert _classes(write_gguf("new.gguf", arch="llama9000"), known_archs=archs) == ["architecture-too-new"]
