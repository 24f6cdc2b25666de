"""The converter environment's requirement resolution (no install)."""

from __future__ import annotations

from pathlib import Path

from toolchain.convert.env import ConverterEnv, resolve_requirements


def test_tree_pins_resolved_deliberately(tree_0336: Path) -> None:
    reqs = {r.original or r.line: r for r in resolve_requirements(tree_0336, system="Linux")}
    torch = next(r for r in reqs.values() if r.original.startswith("torch"))
    assert torch.line.startswith("torch==") and torch.why
    spm = next(r for r in reqs.values() if r.original.startswith("sentencepiece"))
    assert spm.line.endswith("<0.2.3") and "protobuf" in spm.why
    proto = next(r for r in reqs.values() if r.original.startswith("protobuf"))
    assert proto.line == proto.original and "<5" in proto.line
    assert all(not r.line.startswith("--") for r in reqs.values())
    gguf = next(r for r in reqs.values() if r.original.startswith("gguf"))
    assert gguf.line == "" and "gguf-py" in gguf.why
    mac_torch = next(
        r for r in resolve_requirements(tree_0336, system="Darwin") if r.original.startswith("torch")
    )
    assert mac_torch.line == mac_torch.original


def test_env_records_what_was_installed(converter_env: ConverterEnv) -> None:
    assert converter_env.python.is_file()
    assert converter_env.installed["protobuf"].split(".")[0] == "4"
    assert tuple(int(x) for x in converter_env.installed["sentencepiece"].split(".")[:3]) < (0, 2, 3)
    assert "transformers" in converter_env.installed and "torch" in converter_env.installed
    assert (converter_env.venv / "env.json").is_file()
