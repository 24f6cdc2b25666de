"""Real tiny checkpoints: determinism, cache reuse, rebuild on change, the record's shape."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from toolchain.config import Settings
from toolchain.convert.env import ConverterEnv
from toolchain.core.hashing import sha256_file
from toolchain.models.build import make_models, read_safetensors_index
from toolchain.models.spec import load_specs

SPECS = load_specs()


def _settings(tmp: Path, name: str) -> Settings:
    return Settings(
        project_root=tmp,
        work_dir=tmp / name / ".toolchain",
        cache_dir=tmp / name / "cache",
        lock_path=tmp / "llama.lock",
    )


def test_same_spec_and_seed_give_identical_bytes(
    tmp_path: Path, converter_env: ConverterEnv, tree_0336: Path
) -> None:
    specs = [SPECS["llama"], SPECS["mixtral"]]
    a = make_models(specs, _settings(tmp_path, "a"), converter_env.python, tree_0336, seed=0)
    b = make_models(specs, _settings(tmp_path, "b"), converter_env.python, tree_0336, seed=0)
    c = make_models(specs[:1], _settings(tmp_path, "c"), converter_env.python, tree_0336, seed=1)
    # one worker process per core, each with its share and its log: the same bytes either way
    workers = min(2, len(os.sched_getaffinity(0)))
    logs = sorted(p.name for p in (tmp_path / "a" / "cache" / "models").glob("toolchain-models-*.log"))
    assert logs == [f"toolchain-models-{i}.log" for i in range(1, workers + 1)]
    for ma, mb in zip(a.models, b.models, strict=True):
        assert ma.status == mb.status == "ok", (ma.error, mb.error)
        assert sha256_file(ma.path / "model.safetensors") == sha256_file(mb.path / "model.safetensors")
        assert (ma.path / "config.json").read_bytes() == (mb.path / "config.json").read_bytes()
    assert c.models[0].safetensors_sha256 != a.models[0].safetensors_sha256
    # the checkpoint is what the spec says: real head_dim and GQA ratio, files present, no pickles
    llama = a.models[0]
    assert llama.shape is not None and llama.shape.head_dim == 128 and llama.shape.gqa_ratio == 4.0
    assert llama.shape.vocab == 512
    assert sorted(p.name for p in llama.path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.model",
        "toolchain-model.json",
    ]
    index = read_safetensors_index(llama.path / "model.safetensors")
    assert index["model.layers.0.self_attn.k_proj.weight"] == ("BF16", (128, 512))
    assert a.models[1].shape is not None and a.models[1].shape.n_expert == 4


def test_cache_reused_and_changed_spec_rebuilt(
    tmp_path: Path, converter_env: ConverterEnv, tree_0336: Path
) -> None:
    settings = _settings(tmp_path, "x")
    first = make_models([SPECS["gemma"]], settings, converter_env.python, tree_0336)
    assert first.models[0].status == "ok" and not first.models[0].cached
    again = make_models([SPECS["gemma"]], settings, converter_env.python, tree_0336)
    assert again.models[0].cached and again.models[0].path == first.models[0].path
    assert again.seconds < 2.0
    changed = replace(SPECS["gemma"], config={**SPECS["gemma"].config, "intermediate_size": 1024})
    rebuilt = make_models([changed], settings, converter_env.python, tree_0336)
    assert not rebuilt.models[0].cached and rebuilt.models[0].path != first.models[0].path
    # a damaged cached checkpoint is not trusted: rebuilt, byte-identical to the first
    target = first.models[0].path / "model.safetensors"
    target.write_bytes(target.read_bytes()[:-4] + b"\xff\xff\xff\xff")
    repaired = make_models([SPECS["gemma"]], settings, converter_env.python, tree_0336)
    assert not repaired.models[0].cached
    assert repaired.models[0].safetensors_sha256 == first.models[0].safetensors_sha256


def test_a_broken_spec_is_a_verdict_not_the_end(
    tmp_path: Path, converter_env: ConverterEnv, tree_0336: Path
) -> None:
    broken = replace(SPECS["llama"], name="broken", model_type="no_such_model_type")
    made = make_models([broken, SPECS["phi3"]], _settings(tmp_path, "y"), converter_env.python, tree_0336)
    assert made.models[0].status == "error" and made.models[0].error
    assert made.models[1].status == "ok"
