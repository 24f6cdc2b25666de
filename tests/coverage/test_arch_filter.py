"""`-a` names a model by its spec or by its GGUF architecture.

`nox -s build coverage -- -a llama,modernbert,qwen3_moe` converted qwen3_moe (the spec's name) and then
left it out of the matrix: coverage kept only models whose GGUF architecture (`qwen3moe`) was named.
"""

from __future__ import annotations

from pathlib import Path

from toolchain.convert.results import Conversion, ConvertResult
from toolchain.coverage.engine.inputs import from_convert_report
from toolchain.coverage.engine.run import asked_for
from toolchain.models.build import ModelSet
from toolchain.records import CONVERT, write_report


def _report(tmp_path: Path) -> Path:
    results = []
    for spec, arch in (("llama", "llama"), ("qwen3_moe", "qwen3moe"), ("modernbert", "modern-bert")):
        gguf = tmp_path / f"{spec}-f16.gguf"
        gguf.write_bytes(b"GGUF")
        results.append(ConvertResult(spec, "X", "f16", "pass", gguf=gguf, gguf_architecture=arch))
    conversion = Conversion(
        tree=tmp_path,
        converter_env="",
        installed={},
        requirement_changes=(),
        quantize_tool="",
        models=ModelSet(tmp_path, (), 0.0),
        results=tuple(results),
        seconds=0.0,
        converter_startup_seconds=0.0,
    )
    return write_report(tmp_path / CONVERT.name, CONVERT.kind, conversion)


def test_a_spec_name_selects_its_converted_model(tmp_path: Path) -> None:
    models = from_convert_report(_report(tmp_path))
    picked = sorted(m.architecture for m in models if asked_for(m, ("llama", "modernbert", "qwen3_moe")))
    assert picked == ["llama", "modern-bert", "qwen3moe"]


def test_a_gguf_architecture_name_still_selects_it(tmp_path: Path) -> None:
    models = from_convert_report(_report(tmp_path))
    assert [m.architecture for m in models if asked_for(m, ("qwen3moe",))] == ["qwen3moe"]
    assert [m.architecture for m in models if asked_for(m, ("qwen3",))] == []
