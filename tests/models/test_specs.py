"""Specs: coverage of the issue's features, shape faithfulness, safety, --from-config shrinking."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.models.configs import REAL_CONFIGS
from toolchain.errors import ModelError, UnsafeInputError
from toolchain.models.build import read_safetensors_index
from toolchain.models.config_input import read_config
from toolchain.models.shrink import shrink_config
from toolchain.models.spec import REQUIRED_FEATURES, ArchSpec, load_specs, parse_spec, select, shape_of

SPECS = load_specs()


def test_at_least_forty_architectures_cover_every_feature() -> None:
    assert len(SPECS) >= 40
    covered = {f for s in SPECS.values() for f in s.features}
    assert REQUIRED_FEATURES <= covered, REQUIRED_FEATURES - covered


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
def test_shape_faithful(spec: ArchSpec) -> None:
    ref = spec.reference_shape
    shape = shape_of(spec.config)
    if "head_dim" in ref and shape.head_dim is not None:
        assert shape.head_dim == ref["head_dim"], "head_dim must be the real one"
    if ref.get("n_head") and ref.get("n_head_kv") and shape.n_head and shape.n_head_kv:
        if ref["n_head_kv"] == 1:
            assert shape.n_head_kv == 1, "MQA stays MQA"
        else:
            assert shape.n_head / shape.n_head_kv == ref["n_head"] / ref["n_head_kv"], (
                "GQA ratio must be the real one"
            )
    assert shape.hidden is not None and shape.hidden % 256 == 0
    if shape.ffn is not None:
        assert shape.ffn % 256 == 0
    if shape.expert_ffn is not None:
        assert shape.expert_ffn % 256 == 0
    assert shape.layers is not None and 2 <= shape.layers <= 4
    if "n_expert_used" in ref:
        assert shape.n_expert_used == ref["n_expert_used"], "MoE top-k must be the real one"
        assert shape.n_expert is not None and shape.n_expert_used is not None
        assert shape.n_expert_used < shape.n_expert <= 16
    assert spec.tokenizer_why


def test_content_hash_follows_the_config_only() -> None:
    spec = SPECS["llama"]
    data = json.loads(
        json.dumps({k: v for k, v in vars(spec).items() if k not in ("name", "path")}, default=list)
    )
    data["features"], data["config_null"] = list(spec.features), list(spec.config_null)
    data = {k: v for k, v in data.items() if v not in ("", {}, []) or k in ("config", "features")}
    same = parse_spec("llama", data)
    assert same.content_hash == spec.content_hash
    changed = parse_spec("llama", {**data, "config": {**data["config"], "intermediate_size": 2048}})
    assert changed.content_hash != spec.content_hash


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "/abs", "Upper"])
def test_path_traversal_in_names_is_refused(name: str) -> None:
    with pytest.raises(UnsafeInputError):
        select(SPECS, [name])
    data = {
        "architecture": "LlamaForCausalLM",
        "model_type": "llama",
        "gguf_arch": "llama",
        "reference": "x",
        "features": [],
        "tokenizer": "spm:512",
        "tokenizer_why": "x",
        "config": {},
        "reference_shape": {},
    }
    with pytest.raises(UnsafeInputError):
        parse_spec(name, data)


def test_tokenizer_vocab_name_cannot_escape_the_tree() -> None:
    data = {
        "architecture": "GPT2LMHeadModel",
        "model_type": "gpt2",
        "gguf_arch": "gpt2",
        "reference": "x",
        "features": [],
        "tokenizer": "bpe:../../etc/passwd",
        "tokenizer_why": "x",
        "config": {},
        "reference_shape": {},
    }
    with pytest.raises(UnsafeInputError):
        parse_spec("gpt2x", data)


def test_unknown_architecture_is_a_model_error() -> None:
    with pytest.raises(ModelError) as err:
        select(SPECS, ["not_an_arch"])
    assert err.value.exit_code == 40
    with pytest.raises(ModelError):
        shrink_config(
            {
                "architectures": ["NoSuchForCausalLM"],
                "model_type": "nosuch",
                "hidden_size": 64,
                "num_attention_heads": 1,
            },
            SPECS,
        )


def test_non_json_config_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ModelError, match="not JSON"):
        read_config(path)
    path.write_text("[1, 2]")
    with pytest.raises(ModelError):
        read_config(path)


def test_remote_code_config_is_refused() -> None:
    config = {**REAL_CONFIGS["llama-3-8b"], "auto_map": {"AutoModel": "modeling_x.X"}}
    with pytest.raises(UnsafeInputError):
        shrink_config(config, SPECS)


def test_corrupt_safetensors_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError):
        read_safetensors_index(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    assert read_safetensors_index(path) == {"w": ("F32", (4,))}
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 8)  # truncated
    with pytest.raises(ModelError, match="truncated"):
        read_safetensors_index(path)
    path.write_bytes(struct.pack("<Q", 1 << 40) + header)
    with pytest.raises(ModelError):
        read_safetensors_index(path)


@pytest.mark.parametrize("name", list(REAL_CONFIGS))
def test_from_config_keeps_what_changes_kernels(name: str) -> None:
    real = REAL_CONFIGS[name]
    spec, shrinks = shrink_config(real, SPECS)
    tiny = shape_of(spec.config)
    real_shape = shape_of(real)
    assert tiny.head_dim == real_shape.head_dim
    assert tiny.gqa_ratio == real_shape.gqa_ratio
    assert tiny.hidden is not None and tiny.hidden % 256 == 0 and tiny.hidden < (real_shape.hidden or 0)
    assert tiny.ffn is not None and tiny.ffn % 256 == 0
    assert tiny.layers == 2
    for key in ("attn_logit_softcapping", "final_logit_softcapping", "sliding_window", "rope_theta"):
        if key in real:
            assert spec.config[key] == real[key], f"{key} changes kernels and is kept"
    explained = {s.key for s in shrinks}
    assert {"num_hidden_layers", "vocab_size"} <= explained
    assert all(s.why for s in shrinks)
    assert spec.name.startswith("from-config-")
