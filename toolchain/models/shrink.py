"""``--from-config``: a shape-faithful tiny spec from a user's own config.json.

Kept (they change which kernels run): head_dim, the GQA ratio, MoE top-k, MLA ranks, SSM state
and conv sizes, sliding window, soft-capping, rotary fraction, norm types, activation. Shrunk:
layers, heads (in the same ratio), hidden and FFN sizes (multiples of 256), expert count,
vocabulary (the tokenizer recipe's). Every shrink is returned with its reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import ModelError, UnsafeInputError
from .config_input import MAX_KEPT, validate_config
from .spec import _IDENT, ArchSpec, first, parse_spec

HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
BLOCK = 256  # k-quant super-block; also a multiple of Q8_0/Q4_0's 32
MAX_LAYERS = 2
DROP = ("quantization_config", "auto_map", "_name_or_path", "transformers_version", "torch_dtype", "dtype")


@dataclass(frozen=True)
class Shrink:
    key: str
    before: Any
    after: Any
    why: str


def _round_up(value: float, block: int = BLOCK) -> int:
    return max(block, int(-(-int(value) // block) * block))


# Architectures whose llama.cpp loader and graph builder branch on the layer count itself, so the
# count is a property to keep, not a size to cut (src/models/<arch>.cpp of the 0.3.36 tree):
# deepseek2.cpp: is_lite = n_layer in (26, 27) (or 48 with a 128256-token vocabulary) -> no
# q_lora_rank key is read and the query projection is one matrix (wq) instead of wq_a/wq_b.
_DEEPSEEK = ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM")


def layer_count_marker(architecture: str, config: dict[str, Any]) -> tuple[int, str] | None:
    """(layers to keep, why) when the tree recognises a variant of ``architecture`` by its layer count."""
    if architecture in _DEEPSEEK and "q_lora_rank" in config and config["q_lora_rank"] is None:
        layers = first(config, ("num_hidden_layers",))
        if layers in (26, 27):
            return layers, (
                f"{layers} layers kept: llama.cpp recognises this no-q_lora_rank (Lite) variant by its "
                "layer count (26 or 27) and only then loads it without q_lora_rank"
            )
        return 27, (
            f"27 layers instead of {layers}: llama.cpp recognises a no-q_lora_rank (Lite) variant by "
            "26/27 layers (or 48 with a 128256-token vocabulary, which the tiny tokenizer cannot keep); "
            "27 selects the same Lite path"
        )
    return None


def _keep_mamba_heads(cfg: dict[str, Any], shrinks: list[Shrink], architecture: str, hidden_key: str) -> None:
    """Hybrid Mamba-2 configs (Granite 4, Bamba): mamba_n_heads x mamba_d_head = mamba_expand x hidden
    (transformers checks it). head size and state stay real; the head count follows the hidden cut."""
    heads, d_head, expand = cfg.get("mamba_n_heads"), cfg.get("mamba_d_head"), cfg.get("mamba_expand")
    if "mamba_d_ssm" in cfg:  # Falcon-H1 sizes the SSM explicitly (mamba_d_ssm), not by expand x hidden
        return
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (heads, d_head, expand)):
        return
    assert isinstance(d_head, int) and isinstance(expand, int)
    inner = expand * int(cfg[hidden_key])
    if inner % d_head:
        raise ModelError(
            f"config.json of {architecture}: mamba_expand x hidden ({inner}) is not a multiple of "
            f"mamba_d_head ({d_head}) after the hidden cut: the rule keeping mamba_d_head cannot hold",
            "report this config: toolchain/models/shrink.py needs a rule for it",
        )
    _set(
        cfg,
        shrinks,
        "mamba_n_heads",
        inner // d_head,
        f"mamba heads x d_head {d_head} = expand x hidden ({inner})",
    )


def _cut_per_layer_lists(cfg: dict[str, Any], shrinks: list[Shrink], before: Any, after: Any) -> None:
    """Lists with one entry per layer (SmolLM3's no_rope_layers, …) follow the layer cut: the first
    layer of each kind, in the real order, then the following layers."""
    if not isinstance(before, int) or not isinstance(after, int) or after >= before:
        return
    for key, value in list(cfg.items()):
        if key == "layer_types" or not isinstance(value, list) or len(value) != before:
            continue
        firsts = sorted(
            {json.dumps(v, sort_keys=True): i for i, v in reversed(list(enumerate(value)))}.values()
        )
        picked = (firsts + [i for i in range(before) if i not in firsts])[:after]
        lost = len(firsts) - len([i for i in firsts if i in picked])
        why = f"one entry per layer: layers {picked} of the real {before} (each kind it has, in order)"
        if lost:
            why = f"one entry per layer: {after} layers cannot hold its {len(firsts)} kinds; layers {picked} kept"
        _set(cfg, shrinks, key, [value[i] for i in sorted(picked)], why)


def _set(cfg: dict[str, Any], shrinks: list[Shrink], key: str, value: Any, why: str) -> None:
    if cfg.get(key) != value:
        shrinks.append(Shrink(key, cfg.get(key), value, why))
    cfg[key] = value


def _lower(cfg: dict[str, Any], shrinks: list[Shrink], key: str, value: int, why: str) -> None:
    """:func:`_set` when ``value`` is below the config's (a shrink never grows a field)."""
    if value < cfg[key]:
        _set(cfg, shrinks, key, value, why)


def shrink_config(config: dict[str, Any], known: dict[str, ArchSpec]) -> tuple[ArchSpec, tuple[Shrink, ...]]:
    """The tiny spec for ``config`` and the list of shrinks (each with its reason)."""
    if "auto_map" in config:
        raise UnsafeInputError(
            "config.json has auto_map: the model needs its own Python code (trust_remote_code)",
            "nothing from a model directory is executed; use a model whose architecture transformers ships",
        )
    archs = config.get("architectures")
    model_type = config.get("model_type")
    if (
        not isinstance(archs, list)
        or not archs
        or not isinstance(archs[0], str)
        or not isinstance(model_type, str)
    ):
        raise ModelError("config.json needs 'architectures' (a list) and 'model_type' (a string)")
    architecture = archs[0]
    if not _IDENT.match(architecture) or not _IDENT.match(model_type):
        raise UnsafeInputError(
            f"architecture {architecture!r} / model_type {model_type!r} are not identifiers"
        )
    template = next((s for s in known.values() if s.architecture == architecture), None)
    if template is None:
        raise ModelError(
            f"unknown architecture {architecture!r}: no spec in fixtures/architectures uses it",
            "add a spec for it (the tokenizer recipe and the converter's name are per architecture)",
        )
    validate_config(config)  # input checks (config_input.py) before any shrink rule runs
    cfg = {k: v for k, v in config.items() if k not in DROP and k != "architectures"}
    shrinks: list[Shrink] = [
        Shrink(k, "(set)", "(dropped)", "not a shape: real-checkpoint metadata")
        for k in DROP
        if k in config and k != "auto_map"
    ]

    hidden = first(cfg, HIDDEN_KEYS)
    hidden_key = next((k for k in HIDDEN_KEYS if k in cfg), "hidden_size")
    n_head = first(cfg, ("num_attention_heads", "n_head", "n_heads"))
    head_key = next(
        (k for k in ("num_attention_heads", "n_head", "n_heads") if k in cfg), "num_attention_heads"
    )
    kv_key = next((k for k in ("num_key_value_heads", "num_kv_heads") if k in cfg), None)
    n_kv = cfg.get(kv_key) if kv_key else n_head
    if not hidden or not n_head:
        raise ModelError(
            f"config.json of {architecture} has no hidden size or head count: the shrink rules scale "
            f"heads, hidden and FFN from them (looked for {', '.join(HIDDEN_KEYS)} and "
            "num_attention_heads, n_head, n_heads)",
            "add the key names this architecture uses to toolchain/models/shrink.py",
        )
    head_dim: int = cfg["head_dim"] if isinstance(cfg.get("head_dim"), int) else hidden // n_head
    if not 0 < head_dim <= MAX_KEPT:
        # the head width is kept as it is (it decides the kernels): a stated head_dim is bounded by
        # config_input; one derived from hidden / heads must be too, or the tiny model is not tiny
        raise ModelError(
            f"config.json of {architecture}: a head of {head_dim} values ({hidden_key} {hidden} / "
            f"{n_head} heads); the shrink keeps the head width, and no model has a head over {MAX_KEPT}",
            "check hidden_size and num_attention_heads (or give head_dim)",
        )
    ratio = max(1, n_head // (n_kv or n_head))
    # smallest number of KV heads whose query width (ratio * kv * head_dim) is a multiple of 256
    kv = 1
    while (ratio * kv * head_dim) % BLOCK and kv < 64:
        kv += 1
    kv = min(kv, n_kv or kv)
    new_heads = ratio * kv
    if new_heads < n_head:
        _set(
            cfg,
            shrinks,
            head_key,
            new_heads,
            f"fewer heads, same GQA ratio {ratio}:1 and head_dim {head_dim}; query width {new_heads * head_dim} is a multiple of {BLOCK}",
        )
        if kv_key:
            _set(cfg, shrinks, kv_key, kv, f"GQA ratio {ratio}:1 kept")
    if hidden == n_head * head_dim:
        new_hidden = new_heads * head_dim
        why = f"hidden = heads x head_dim as in the real model; {new_hidden} is a multiple of {BLOCK}"
    else:
        new_hidden = _round_up(hidden * new_heads / n_head)
        why = f"scaled with the heads, rounded up to a multiple of {BLOCK} (the real model's hidden != heads x head_dim)"
        if "head_dim" not in cfg:
            cfg["head_dim"] = head_dim
    if new_hidden < hidden:
        _set(cfg, shrinks, hidden_key, new_hidden, why)
        if cfg.get("head_dim") is None and new_hidden != new_heads * head_dim:
            _set(cfg, shrinks, "head_dim", head_dim, "head_dim kept explicitly")
    scale = cfg[hidden_key] / hidden
    _keep_mamba_heads(cfg, shrinks, architecture, hidden_key)
    for key in ("intermediate_size", "n_inner", "ffn_hidden_size", "hidden_dim"):
        if isinstance(cfg.get(key), int) and cfg[key] > 0:
            new = min(_round_up(cfg[key] * scale), 4 * _round_up(cfg[hidden_key]))
            why = f"FFN scaled with hidden ({cfg[key]}/{hidden}), rounded up to a multiple of {BLOCK}"
            _lower(cfg, shrinks, key, new, why)
    if isinstance(cfg.get("moe_intermediate_size"), int):
        new = _round_up(cfg["moe_intermediate_size"] * scale)
        _lower(
            cfg, shrinks, "moe_intermediate_size", new, f"expert FFN scaled with hidden, multiple of {BLOCK}"
        )
    top_k = first(cfg, ("num_experts_per_tok", "moe_topk"))
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if isinstance(cfg.get(key), int) and top_k:
            new = min(cfg[key], max(2 * top_k, 4))
            _lower(
                cfg, shrinks, key, new, f"few experts: top-{top_k} routing kept, {new} experts to route among"
            )
    layers_key = next(
        (k for k in ("num_hidden_layers", "n_layer", "n_layers") if k in cfg), "num_hidden_layers"
    )
    layers = cfg.get(layers_key)
    if isinstance(cfg.get("layer_types"), list) and cfg["layer_types"]:
        kinds = list(dict.fromkeys(cfg["layer_types"]))  # one layer of each kind, in the real order
        picked = [t for t in cfg["layer_types"] if t in kinds][: max(MAX_LAYERS, len(kinds))]
        picked = sorted(set(picked), key=cfg["layer_types"].index)
        picked = picked + [picked[-1]] * (MAX_LAYERS - len(picked))
        _set(cfg, shrinks, "layer_types", picked, "one layer of each kind the real model has")
        _set(cfg, shrinks, layers_key, len(picked), "layers cut to one per layer kind")
    elif isinstance(layers, int) and (marker := layer_count_marker(architecture, config)) is not None:
        count, why = marker
        _set(cfg, shrinks, layers_key, count, why)
        if count == layers:
            shrinks.append(Shrink(layers_key, layers, layers, why))
    elif isinstance(layers, int) and layers > MAX_LAYERS:
        _set(cfg, shrinks, layers_key, MAX_LAYERS, f"{MAX_LAYERS} layers run every kernel a layer has")
    _cut_per_layer_lists(cfg, shrinks, layers, cfg.get(layers_key))
    if isinstance(cfg.get("first_k_dense_replace"), int) and cfg["first_k_dense_replace"] >= cfg[layers_key]:
        _set(cfg, shrinks, "first_k_dense_replace", 1, "one dense layer, then MoE layers")
    if isinstance(cfg.get("vocab_size"), int):
        shrinks.append(
            Shrink(
                "vocab_size",
                cfg["vocab_size"],
                f"from tokenizer {template.tokenizer}",
                template.tokenizer_why,
            )
        )
        cfg.pop("vocab_size")
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if isinstance(cfg.get(key), int):
            shrinks.append(
                Shrink(key, cfg.pop(key), "(tokenizer's)", "special ids follow the tiny tokenizer")
            )
    for key in ("max_position_embeddings", "n_positions"):
        if isinstance(cfg.get(key), int) and cfg[key] > 8192 and "rope_scaling" not in cfg:
            _set(
                cfg,
                shrinks,
                key,
                8192,
                "context length is metadata for the kernels; 8192 keeps the file small",
            )
    nulls = tuple(sorted(k for k, v in cfg.items() if v is None))
    cfg = {k: v for k, v in cfg.items() if v is not None and k != "model_type"}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    data: dict[str, Any] = {
        "architecture": architecture,
        "model_type": model_type,
        "gguf_arch": template.gguf_arch,
        "reference": f"config.json ({architecture}, {digest})",
        "features": list(template.features),
        "tokenizer": template.tokenizer,
        "tokenizer_why": template.tokenizer_why,
        "config": cfg,
        "config_null": list(nulls),
        "reference_shape": {"head_dim": head_dim, "n_head": n_head, "n_head_kv": n_kv, "hidden": hidden},
        "config_json_extra": dict(template.config_json_extra),
    }
    if template.hf_class:
        data["hf_class"] = template.hf_class
    if template.added_tokens:
        data["added_tokens"] = dict(template.added_tokens)  # the tiny tokenizer's, like vocab_size
    return parse_spec(f"from-config-{digest}", data), tuple(shrinks)
