"""Architecture specs (``fixtures/architectures/<name>.toml``) and the shape record of a tiny model.

A spec names the transformers class and ``model_type``, the config of the tiny model (written
out in full, so a reviewer sees every dimension), the real model whose kernel-relevant shape it
keeps (``reference`` and ``[reference_shape]``), the features it exercises and the tokenizer
recipe with the reason for it. ``config_null`` lists config keys set to null (TOML has none).
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError, UnsafeInputError

SPECS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "architectures"
# Bumped when the generator's output for the same spec changes (init rule, file layout).
GENERATOR_VERSION = 1

# What the shipped specs (fixtures/architectures) must cover between them: the features the project
# was asked to build tiny models for (tests/models/test_specs.py checks the specs do).
REQUIRED_FEATURES = frozenset(
    {
        "gqa",
        "moe",
        "sliding-window",
        "logit-softcap",
        "qk-norm",
        "partial-rotary",
        "alibi",
        "parallel-attention",
        "mla",
        "ssm",
        "hybrid-attention-ssm",
        "tied-embeddings",
        "untied-embeddings",
        "encoder-only",
    }
)
# Every feature a spec may name.
FEATURES = REQUIRED_FEATURES | frozenset(
    {
        "mqa",
        "shared-expert",
        "grouped-expert-routing",
        "ssm-groups",
        "ssm-rms-norm",
        "hybrid-attention-conv",
        "qkv-bias",
        "fused-qkv",
        "layernorm",
        "non-parametric-layernorm",
        "learned-positions",
        "head-dim-80",
        "head-dim-96",
        "head-dim-256",
        "no-rope-layers",
        "scaled-residual",
        "relu2-mlp",
        "xielu",
        "attention-sinks",
        "post-norms",
    }
)
TOKENIZER_KINDS = ("spm", "bpe", "wordpiece", "none")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")


def safe_name(name: str, what: str = "name") -> str:
    """A name that becomes a path component: lower-case letters, digits, ``_ . -``; no ``..``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UnsafeInputError(
            f"{what} {name!r} is not a safe name (it would become a path)",
            "use lower-case letters, digits, '_', '-' and '.', without '..' or '/'",
        )
    return name


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that decide which kernels run, as the tiny model has them."""

    hidden: int | None
    ffn: int | None
    head_dim: int | None
    n_head: int | None
    n_head_kv: int | None
    gqa_ratio: float | None
    layers: int | None
    vocab: int | None
    n_expert: int | None = None
    n_expert_used: int | None = None
    expert_ffn: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    architecture: str  # config.json architectures[0], what the converter dispatches on
    model_type: str  # transformers AutoConfig.for_model key
    gguf_arch: str  # general.architecture the tree's converter writes (checked on every GGUF)
    reference: str
    features: tuple[str, ...]
    tokenizer: str
    tokenizer_why: str
    config: dict[str, Any]
    reference_shape: dict[str, Any]
    config_null: tuple[str, ...] = ()
    hf_class: str = ""  # the transformers class when it differs from `architecture` (MPT)
    config_json_extra: dict[str, Any] = field(default_factory=dict)
    # added_tokens.json beside the tokenizer (token -> id), as the real model ships it: tokens the
    # tree's vocabulary loader looks up by name for this model (phi3: "<|endoftext|>")
    added_tokens: dict[str, int] = field(default_factory=dict)
    path: Path | None = None

    @property
    def content_hash(self) -> str:
        """Hash of everything that decides the checkpoint's bytes (not the file's comments)."""
        data = {k: v for k, v in self.job().items() if k != "name"}  # the name changes no byte
        data["generator"] = GENERATOR_VERSION
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def job(self) -> dict[str, Any]:
        job = {
            "name": self.name,
            "architecture": self.architecture,
            "model_type": self.model_type,
            "hf_class": self.hf_class,
            "tokenizer": self.tokenizer,
            "config": self.config,
            "config_null": list(self.config_null),
            "config_json_extra": self.config_json_extra,
        }
        if self.added_tokens:  # only when set: every other spec's hash (and cached model) stays
            job["added_tokens"] = dict(self.added_tokens)
        return job


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ModelError(
            f"{where}: '{key}' must be a {kind.__name__}",
            "see fixtures/architectures/llama.toml for the format",
        )
    return value


def parse_spec(name: str, data: dict[str, Any], path: Path | None = None) -> ArchSpec:
    where = str(path or name)
    safe_name(name, "architecture spec name")
    known = {
        "architecture",
        "model_type",
        "gguf_arch",
        "reference",
        "features",
        "tokenizer",
        "tokenizer_why",
        "config",
        "reference_shape",
        "config_null",
        "hf_class",
        "config_json_extra",
        "added_tokens",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelError(
            f"{where}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(known))}"
        )
    architecture = _require(data, "architecture", str, where)
    hf_class = data.get("hf_class", "")
    for ident in (architecture, hf_class or architecture):
        if not _IDENT.match(ident):
            raise UnsafeInputError(f"{where}: class name {ident!r} is not an identifier")
    model_type = _require(data, "model_type", str, where)
    if not _IDENT.match(model_type):
        raise UnsafeInputError(f"{where}: model_type {model_type!r} is not an identifier")
    features = tuple(_require(data, "features", list, where))
    bad = sorted(set(features) - FEATURES)
    if bad:
        raise ModelError(
            f"{where}: unknown feature(s) {', '.join(bad)}", f"known: {', '.join(sorted(FEATURES))}"
        )
    tokenizer = _require(data, "tokenizer", str, where)
    kind, _, arg = tokenizer.partition(":")
    if kind not in TOKENIZER_KINDS:
        raise ModelError(
            f"{where}: tokenizer recipe {tokenizer!r} unknown", f"kinds: {', '.join(TOKENIZER_KINDS)}"
        )
    if kind in ("bpe", "wordpiece"):
        safe_name(arg, "tokenizer vocab name")
    elif arg and not arg.isdigit():
        raise ModelError(f"{where}: tokenizer {tokenizer!r}: the argument of {kind} is a vocab size")
    added = data.get("added_tokens", {})
    if not isinstance(added, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in added.items()
    ):
        raise ModelError(f"{where}: 'added_tokens' maps token strings to non-negative ids")
    return ArchSpec(
        name=name,
        architecture=architecture,
        model_type=model_type,
        gguf_arch=_require(data, "gguf_arch", str, where),
        reference=_require(data, "reference", str, where),
        features=features,
        tokenizer=tokenizer,
        tokenizer_why=_require(data, "tokenizer_why", str, where),
        config=dict(_require(data, "config", dict, where)),
        reference_shape=dict(_require(data, "reference_shape", dict, where)),
        config_null=tuple(data.get("config_null", ())),
        hf_class=hf_class,
        config_json_extra=dict(data.get("config_json_extra", {})),
        added_tokens=dict(added),
        path=path,
    )


def load_spec(path: Path) -> ArchSpec:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"{path}: not a readable TOML spec: {exc}") from exc
    return parse_spec(path.stem, data, path)


def load_specs(directory: Path = SPECS_DIR) -> dict[str, ArchSpec]:
    return {p.stem: load_spec(p) for p in sorted(directory.glob("*.toml"))}


def select(specs: dict[str, ArchSpec], names: list[str] | None) -> list[ArchSpec]:
    if not names:
        return list(specs.values())
    out = []
    for name in names:
        safe_name(name, "architecture")
        if name not in specs:
            raise ModelError(
                f"unknown architecture {name!r}", "`llama-toolchain models --list` prints the known ones"
            )
        out.append(specs[name])
    return out


# --- shape of a config.json ----------------------------------------------------------------------
_KEYS: dict[str, tuple[str, ...]] = {
    "hidden": ("hidden_size", "n_embd", "d_model", "dim"),
    "ffn": ("intermediate_size", "n_inner", "ffn_hidden_size", "hidden_dim", "block_ff_dim"),
    "n_head": ("num_attention_heads", "n_head", "n_heads"),
    "n_head_kv": ("num_key_value_heads", "num_kv_heads", "n_head_kv"),
    "layers": ("num_hidden_layers", "n_layer", "n_layers"),
    "vocab": ("vocab_size",),
    "n_expert": ("num_local_experts", "num_experts", "n_routed_experts"),
    "n_expert_used": ("num_experts_per_tok", "moe_topk", "top_k"),
    "expert_ffn": ("moe_intermediate_size",),
}


def first(config: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if isinstance(config.get(key), int) and not isinstance(config.get(key), bool):
            return config[key]
    return None


def shape_of(config: dict[str, Any]) -> ModelShape:
    values = {k: first(config, keys) for k, keys in _KEYS.items()}
    hidden, n_head = values["hidden"], values["n_head"]
    if values["ffn"] is None and hidden and config.get("expansion_ratio"):
        values["ffn"] = int(hidden * config["expansion_ratio"])
    if values["n_head_kv"] is None and n_head:
        values["n_head_kv"] = 1 if config.get("multi_query") else n_head
    head_dim = config.get("head_dim") if isinstance(config.get("head_dim"), int) else None
    if config.get("qk_nope_head_dim") and config.get("qk_rope_head_dim"):
        head_dim = int(config["qk_nope_head_dim"]) + int(config["qk_rope_head_dim"])
    if head_dim is None and hidden and n_head:
        head_dim = hidden // n_head
    ratio = values["n_head"] / values["n_head_kv"] if values["n_head"] and values["n_head_kv"] else None
    extra = {
        k: config[k]
        for k in (
            "sliding_window",
            "kv_lora_rank",
            "q_lora_rank",
            "state_size",
            "mamba_d_state",
            "n_groups",
            "partial_rotary_factor",
            "rotary_pct",
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "tie_word_embeddings",
        )
        if config.get(k) is not None
    }
    return ModelShape(
        hidden=hidden,
        ffn=values["ffn"],
        head_dim=head_dim,
        n_head=values["n_head"],
        n_head_kv=values["n_head_kv"],
        gqa_ratio=ratio,
        layers=values["layers"],
        vocab=values["vocab"],
        n_expert=values["n_expert"],
        n_expert_used=values["n_expert_used"],
        expert_ffn=values["expert_ffn"],
        extra=extra,
    )
