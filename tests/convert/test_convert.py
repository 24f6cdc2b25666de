"""A real conversion of a representative subset with the 0.3.36 tree's own converter.

Cold (no converter venv in the test cache) this adds ~3 min for the venv plus ~1-2 min of work;
warm it takes well under a minute. The full 52 x {f16, q8_0} run is `llama-toolchain convert`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import shared_settings
from tests.models.configs import REAL_CONFIGS
from toolchain.convert.env import ConverterEnv
from toolchain.convert.stage import Conversion, convert_architectures, results_table
from toolchain.convert.validate import validate_gguf
from toolchain.models.shrink import shrink_config
from toolchain.models.spec import load_specs

SPECS = load_specs()
SUBSET = ["llama", "gemma2", "mixtral", "phi3", "jamba", "mamba", "bert", "gpt2"]


@pytest.fixture(scope="module")
def conversion(
    converter_env: ConverterEnv, tree_0336: Path, tmp_path_factory: pytest.TempPathFactory
) -> Conversion:
    settings = shared_settings(tmp_path_factory.mktemp("convert"))
    specs = [SPECS[n] for n in SUBSET]
    shrinks = {}
    for config in REAL_CONFIGS.values():
        spec, items = shrink_config(config, SPECS)
        specs.append(spec)
        shrinks[spec.name] = items
    # an architecture transformers has and this tree's converter does not: a verdict, not the end
    specs.append(
        replace(
            SPECS["gpt2"],
            name="gptj",
            architecture="GPTJForCausalLM",
            model_type="gptj",
            gguf_arch="gptj",
            config={"n_embd": 256, "n_head": 4, "n_layer": 2, "rotary_dim": 16, "n_positions": 512},
            config_json_extra={},
        )
    )
    return convert_architectures(specs, ("f16", "q8_0", "q4_0"), settings, tree=tree_0336, shrinks=shrinks)


def test_subset_converts_and_validates(conversion: Conversion) -> None:
    print(results_table(conversion))
    by = {(r.architecture, r.type): r for r in conversion.results}
    for name in SUBSET:
        for t in ("f16", "q8_0"):
            r = by[(name, t)]
            assert r.status == "pass", (name, t, r.cause, r.error, r.tail)
            assert r.gguf is not None and r.gguf.is_file() and r.tensor_count > 0 and r.matched_tensors > 0
    assert by[("llama", "f16")].types.get("F16") and by[("llama", "q8_0")].types.get("Q8_0")


def test_from_config_models_convert(conversion: Conversion) -> None:
    from_config = [m for m in conversion.models.models if m.name.startswith("from-config-")]
    assert len(from_config) == 3
    for model in from_config:
        assert model.shrinks and all(s.why for s in model.shrinks)
        results = [
            r for r in conversion.results if r.architecture == model.name and r.type in ("f16", "q8_0")
        ]
        assert [r.status for r in results] == ["pass", "pass"], [(r.cause, r.error) for r in results]
    heads = {m.reference: (m.shape.head_dim, m.shape.gqa_ratio) for m in from_config if m.shape}
    assert sorted(heads.values()) == [(128, 4.0), (128, 7.0), (256, 2.0)]


def test_unknown_to_the_converter_is_a_verdict(conversion: Conversion) -> None:
    gptj = [r for r in conversion.results if r.architecture == "gptj" and r.type in ("f16", "q8_0")]
    assert gptj and all(r.status == "error" for r in gptj)
    assert gptj[0].cause == "unknown-architecture", (gptj[0].error, gptj[0].tail)


def test_quantized_types_without_llama_quantize(conversion: Conversion) -> None:
    q4 = [r for r in conversion.results if r.type == "q4_0" and r.architecture in SUBSET]
    assert all(r.status == "not-available" and "llama-quantize" in r.error for r in q4)


def test_report_written(conversion: Conversion, tmp_path: Path) -> None:
    reports = sorted(
        Path(p)
        for p in {str(r.gguf.parents[2] / "reports" / "convert.json") for r in conversion.results if r.gguf}
    )
    data = json.loads(reports[0].read_text())
    assert data["kind"] == "convert" and data["schema_version"] == 1
    row = next(r for r in data["results"] if r["architecture"] == "llama" and r["type"] == "f16")
    assert {"status", "gguf", "tensor_count", "size_bytes", "seconds", "tokenizer", "error"} <= set(row)
    assert any("sentencepiece" in c for c in data["requirement_changes"])
    assert data["installed"]["torch"]


def test_cached_ggufs_are_reused(conversion: Conversion, tree_0336: Path) -> None:
    settings = shared_settings(next(r.gguf for r in conversion.results if r.gguf).parents[2].parent)
    again = convert_architectures([SPECS["llama"]], ("f16",), settings, tree=tree_0336, write=False)
    assert again.results[0].status == "pass" and again.results[0].cached


def test_validation_catches_a_tampered_gguf(conversion: Conversion, tmp_path: Path) -> None:
    import gguf

    good = next(r for r in conversion.results if r.architecture == "llama" and r.type == "f16")
    assert good.gguf is not None
    model = next(m for m in conversion.models.models if m.name == "llama")
    assert validate_gguf(good.gguf, model.path, "llama", "f16").ok

    shape = tmp_path / "shape.gguf"
    shutil.copyfile(good.gguf, shape)
    reader = gguf.GGUFReader(str(shape), "r+")
    target = next(t for t in reader.tensors if t.name == "blk.0.attn_k.weight")
    target.field.parts[3][1] = 2  # a dimension changed in the header
    del reader
    check = validate_gguf(shape, model.path, "llama", "f16")
    assert not check.ok and any("blk.0.attn_k.weight" in p for p in check.problems), check.problems

    kind = tmp_path / "type.gguf"
    shutil.copyfile(good.gguf, kind)
    reader = gguf.GGUFReader(str(kind), "r+")
    norm = next(t for t in reader.tensors if t.name == "blk.0.attn_norm.weight")
    norm.field.parts[4][0] = int(gguf.GGMLQuantizationType.I32)
    del reader
    check = validate_gguf(kind, model.path, "llama", "f16")
    assert not check.ok and any("I32" in p for p in check.problems), check.problems

    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(good.gguf.read_bytes()[: good.gguf.stat().st_size // 2])
    assert not validate_gguf(truncated, model.path, "llama", "f16").ok
    assert not validate_gguf(good.gguf, model.path, "qwen2", "f16").ok  # wrong architecture
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"GGML" + b"\x00" * 64)
    assert not validate_gguf(not_gguf, model.path, "llama", "f16").ok
