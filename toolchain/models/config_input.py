"""``--from-config`` input: read a stranger's ``config.json`` and check it before any shrink runs.

:func:`read_config` refuses what is not a config (a FIFO or other non-regular file, a file larger
than any real config, non-UTF-8, non-JSON, too deeply nested, not an object);
:func:`validate_config` refuses what is not a model: every shape field (dimensions, head, layer
and expert counts, ranks) a whole number in range, the heads dividing as attention needs,
``layer_types`` a list of names. Each refusal is a :class:`~toolchain.errors.ModelError` (exit 40)
naming the field and its value as the file has it. Numbers JSON allows and Python would choke on
later (a 5000-digit integer, ``NaN``, ``1e999``) are refused here too, with their field.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ModelError

MAX_CONFIG_BYTES = 2 << 20  # a real config.json is well under 1 MB
MAX_DIGITS = 30  # an integer longer than this is no dimension (and Python refuses > 4300 digits)
HINT = "pass the model's own config.json (as on its model card), unedited"

MAX_KEPT = 8192
MAX_SHRUNK = 1 << 24  # hidden sizes, vocabularies, counts: cut anyway, but bounded for arithmetic
MAX_POSITIONS = (1 << 31) - 1  # context lengths (GGUF stores them as 32-bit)
# Shape fields, checked in this order: (lowest, highest) whole value; null means "the default" and
# is accepted. MAX_KEPT: kept as it is in the tiny model (it decides the kernels): beyond that the
# model is not tiny and no real model has such a value. MAX_SHRUNK: cut by the shrink anyway.
# MAX_POSITIONS: context lengths.
_BOUNDS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, MAX_SHRUNK),
    "n_embd": (1, MAX_SHRUNK),
    "d_model": (1, MAX_SHRUNK),
    "num_attention_heads": (1, MAX_SHRUNK),
    "n_head": (1, MAX_SHRUNK),
    "n_heads": (1, MAX_SHRUNK),
    "num_key_value_heads": (1, MAX_SHRUNK),
    "num_kv_heads": (1, MAX_SHRUNK),
    "n_head_kv": (1, MAX_SHRUNK),
    "num_hidden_layers": (1, MAX_SHRUNK),
    "n_layer": (1, MAX_SHRUNK),
    "n_layers": (1, MAX_SHRUNK),
    "intermediate_size": (1, MAX_SHRUNK),
    "n_inner": (1, MAX_SHRUNK),
    "ffn_hidden_size": (1, MAX_SHRUNK),
    "moe_intermediate_size": (1, MAX_SHRUNK),
    "shared_expert_intermediate_size": (1, MAX_SHRUNK),
    "head_dim": (1, MAX_KEPT),
    "vocab_size": (1, MAX_SHRUNK),
    "num_experts_per_tok": (1, MAX_KEPT),
    "moe_topk": (1, MAX_KEPT),
    "num_local_experts": (1, MAX_SHRUNK),
    "num_experts": (1, MAX_SHRUNK),
    "n_routed_experts": (1, MAX_SHRUNK),
    "kv_lora_rank": (1, MAX_KEPT),
    "q_lora_rank": (1, MAX_KEPT),
    "qk_rope_head_dim": (1, MAX_KEPT),
    "v_head_dim": (1, MAX_KEPT),
    "max_position_embeddings": (1, MAX_POSITIONS),
    "n_positions": (1, MAX_POSITIONS),
    "state_size": (1, MAX_KEPT),
    "mamba_d_state": (1, MAX_KEPT),
    "conv_kernel": (1, MAX_KEPT),
    "mamba_d_conv": (1, MAX_KEPT),
    "n_groups": (1, MAX_KEPT),
    "mamba_n_groups": (1, MAX_KEPT),
    "mamba_n_heads": (1, MAX_SHRUNK),
    "mamba_d_head": (1, MAX_KEPT),
    "qk_nope_head_dim": (0, MAX_KEPT),
    "first_k_dense_replace": (0, MAX_SHRUNK),
    "n_shared_experts": (0, MAX_SHRUNK),
    "sliding_window": (0, MAX_POSITIONS),
    "num_nextn_predict_layers": (0, MAX_SHRUNK),
}
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers")
_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model")
_HEAD_KEYS = ("num_attention_heads", "n_head", "n_heads")
_KV_KEYS = ("num_key_value_heads", "num_kv_heads", "n_head_kv")
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
_TOPK_KEYS = ("num_experts_per_tok", "moe_topk")


class _Unusable:
    """A JSON number kept as its text because Python cannot use it (too long, NaN, Infinity)."""

    def __init__(self, text: str, why: str) -> None:
        self.text, self.why = text, why

    def __repr__(self) -> str:
        return self.text


def _int(text: str) -> int | _Unusable:
    if len(text.lstrip("-")) > MAX_DIGITS:
        return _Unusable(f"{text[:12]}…({len(text.lstrip('-'))} digits)", "an integer far too large")
    return int(text)


MAX_FLOAT = 1e12  # rope_theta, the largest float a config holds, is at most ~1e8


def _float(text: str) -> float | _Unusable:
    value = float(text)
    if not math.isfinite(value):
        return _Unusable(text, "not a finite number")
    if abs(value) > MAX_FLOAT:  # a rope factor of 1e308 overflowed in the model worker (#32 L)
        return _Unusable(text, f"larger than any config value (|x| > {MAX_FLOAT:g})")
    return value


# Attributes of transformers' PretrainedConfig (transformers/configuration_utils.py) a config key
# would replace on the object the model worker builds: a config.json with "to_dict": 1 or
# "__class__": "x" passed every shape check and crashed the worker (#32 L). Keys starting with "_"
# (but _name_or_path, which the shrink drops) are refused the same way.
CONFIG_OBJECT_NAMES = frozenset(
    {
        "to_dict",
        "to_diff_dict",
        "to_json_string",
        "to_json_file",
        "update",
        "update_from_string",
        "save_pretrained",
        "from_dict",
        "from_pretrained",
        "from_json_file",
        "from_text_vision_configs",
        "get_config_dict",
        "get_text_config",
        "dict_torch_dtype_to_str",
        "register_for_auto_class",
        "attribute_map",
        "base_config_key",
        "sub_configs",
        "use_return_dict",
        "num_labels",
        "name_or_path",
        "has_no_defaults_at_init",
        "is_composition",
        "keys_to_ignore_at_inference",
        "model_type",
        "output_attentions",
    }
    - {"model_type", "output_attentions", "num_labels"}  # plain values a config.json may carry
)


def _reserved_key(key: str, where: str) -> str:
    if key.startswith("_") and key != "_name_or_path":
        return "a name the config object reserves (it starts with _)"
    if key in CONFIG_OBJECT_NAMES:
        return "a method or property of transformers' PretrainedConfig, not a setting"
    if key == "auto_map" and where:
        return "auto_map inside a sub-config: the model needs its own Python code (trust_remote_code)"
    return ""


def _constant(text: str) -> _Unusable:
    return _Unusable(text, "not a number JSON has (NaN / Infinity)")


def show(value: object) -> str:
    """``value`` as the file has it (JSON), cut to a readable length."""
    if isinstance(value, _Unusable):
        return value.text
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def read_config(path: Path) -> dict[str, Any]:
    """The config.json at ``path``, read with bounds; numbers Python cannot use are refused with
    their field. Shapes are checked by :func:`validate_config` (``shrink_config`` calls it)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}", HINT) from exc
    if not stat.S_ISREG(info.st_mode):
        what = (
            "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a directory" if stat.S_ISDIR(info.st_mode) else ""
        )
        raise ModelError(f"{path} is not a regular file{f' ({what})' if what else ''}", HINT)
    if info.st_size > MAX_CONFIG_BYTES:
        raise ModelError(
            f"{path}: {info.st_size} bytes: a config.json is far smaller (limit {MAX_CONFIG_BYTES})", HINT
        )
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the check cannot block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ModelError(f"{path} is not a regular file", HINT)
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}", HINT) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelError(f"{path}: more than {MAX_CONFIG_BYTES} bytes: a config.json is far smaller", HINT)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text: {exc}", HINT) from exc
    try:
        data = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError as exc:
        raise ModelError(f"{path} is not a config: JSON nested too deeply", HINT) from exc
    except ValueError as exc:
        raise ModelError(f"{path} is not JSON: {exc}", HINT) from exc
    return _usable_object(data, str(path))  # the shape checks come with the shrink (validate_config)


def _usable_object(data: object, where: str) -> dict[str, Any]:
    """``data`` when it is a JSON object holding no number Python cannot use; else ModelError."""
    if not isinstance(data, dict):
        raise ModelError(
            f"{where}: a config.json is a JSON object, not {type(data).__name__} ({show(data)})", HINT
        )
    try:
        found = next(_walk(data, ""), None)
    except RecursionError as exc:
        raise ModelError(f"{where} is not a config: JSON nested too deeply", HINT) from exc
    if found is not None:
        raise ModelError(f"{where}: {found[0]} = {found[1].text}: {found[1].why}", HINT)
    return data


def _walk(value: object, where: str) -> Iterator[tuple[str, _Unusable]]:
    if isinstance(value, _Unusable):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            path = f"{where}.{k}" if where else str(k)
            why = _reserved_key(str(k), where)
            if why:
                yield path, _Unusable(show(v), why)
                continue
            yield from _walk(v, path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{where}[{i}]")


_KIND = {"str": "a string", "float": "a float", "list": "a list", "dict": "an object", "bool": "a boolean"}


def _whole(config: dict[str, Any], key: str) -> int | None:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first(config: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, int] | None:
    return next(((k, v) for k in keys if (v := _whole(config, k)) is not None), None)


def validate_config(config: object, where: str = "config.json") -> None:
    """Raise :class:`ModelError` naming the first field that no real model could have."""

    def bad(field: str, value: object, why: str) -> ModelError:
        return ModelError(f"{where}: {field} = {show(value)}: {why}", HINT)

    config = _usable_object(config, where)
    for key, (low, high) in _BOUNDS.items():
        if key not in config or config[key] is None:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int):
            kind = _KIND.get(type(value).__name__, type(value).__name__)
            raise bad(key, value, f"{kind}, not a whole number")
        if value < low:
            raise bad(key, value, f"must be at least {low}")
        if value > high:
            raise bad(key, value, f"more than {high}: no real model has that")
    layers = _first(config, _LAYER_KEYS)
    if layers is None and not any(config.get(k) is not None for k in _LAYER_KEYS):
        raise ModelError(f"{where}: no layer count ({' / '.join(_LAYER_KEYS)})", HINT)
    heads, kv, hidden = _first(config, _HEAD_KEYS), _first(config, _KV_KEYS), _first(config, _HIDDEN_KEYS)
    if heads and kv:
        if kv[1] > heads[1]:
            raise bad(kv[0], kv[1], f"more KV heads than {heads[0]} = {heads[1]}")
        if heads[1] % kv[1]:
            raise bad(heads[0], heads[1], f"not a multiple of {kv[0]} = {kv[1]} (GQA groups must be whole)")
    if heads and hidden and config.get("head_dim") is None and hidden[1] % heads[1]:
        raise bad(
            hidden[0], hidden[1], f"not a multiple of {heads[0]} = {heads[1]}, and no head_dim is given"
        )
    experts, top_k = _first(config, _EXPERT_KEYS), _first(config, _TOPK_KEYS)
    if experts and top_k and top_k[1] > experts[1]:
        raise bad(top_k[0], top_k[1], f"routes to more experts than {experts[0]} = {experts[1]}")
    layer_types = config.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or not layer_types:
            raise bad("layer_types", layer_types, "not a non-empty list of layer kinds")
        for i, kind in enumerate(layer_types):
            if not isinstance(kind, str):
                raise bad(f"layer_types[{i}]", kind, "a layer kind is a string")
        if layers and len(layer_types) != layers[1]:
            raise bad("layer_types", layer_types, f"{len(layer_types)} entries for {layers[0]} = {layers[1]}")
