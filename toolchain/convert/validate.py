"""Validate a GGUF against the checkpoint it was made from.

The header is read with doctor's bounded parser (:mod:`toolchain.doctor.gguf_reader`), not the
gguf package's reader: that one builds a numpy view per array element, 2 s of the validation of
each 50k-token vocabulary (the convert stage's second core went to it); names and types come from
the gguf package (its ``TensorNameMap``, ``GGMLQuantizationType``).

Checked: magic and version (the reader refuses a bad magic; version 2 or 3), architecture
(``general.architecture`` is the one the spec expects), block count = the checkpoint's layers,
tensor count (header = tensors read), every tensor inside the file, every tensor's type allowed
for the output type (1-D tensors are F32; the target type is actually used), and every tensor's
shape against the source: each safetensors tensor is mapped to its GGUF name with gguf's own
``TensorNameMap`` (experts merged into one 3-D tensor); the GGUF tensor must hold exactly the
source's elements with the same non-unit dimensions. Tensors the name map cannot place (fused or
split by the converter) are counted and reported, not guessed at.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..doctor.gguf_reader import read_gguf
from ..errors import GGUFError
from ..models.build import read_safetensors_index

ALLOWED: dict[str, frozenset[str]] = {
    "f32": frozenset({"F32"}),
    "f16": frozenset({"F16", "F32"}),
    "bf16": frozenset({"BF16", "F32"}),
    "q8_0": frozenset({"Q8_0", "F16", "F32"}),
    "q4_0": frozenset({"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K", "Q8_0", "F16", "F32"}),
    "q4_K": frozenset({"Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "F32"}),
}
TARGET = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_K": "Q4_K"}
_EXPERT = re.compile(r"\.experts\.\d+\.")


@dataclass(frozen=True)
class GGUFCheck:
    path: Path
    ok: bool
    version: int
    architecture: str
    tensor_count: int
    matched: int  # tensors checked one to one against the source (experts merged)
    unplaced_source: int  # source tensors the name map does not place (fused/split by the converter)
    types: dict[str, int]
    problems: tuple[str, ...]


def _name_map(gguf: Any, arch: str, blocks: int) -> Any:
    for enum_value, name in gguf.MODEL_ARCH_NAMES.items():
        if name == arch:
            return gguf.get_tensor_name_map(enum_value, blocks)
    return None


def validate_gguf(path: Path, model_dir: Path, expected_arch: str, outtype: str) -> GGUFCheck:
    import gguf  # lazy: numpy-heavy (the name map and the type names)

    problems: list[str] = []
    try:
        info = read_gguf(path)
    except GGUFError as exc:
        return GGUFCheck(path, False, 0, "", 0, 0, 0, {}, (f"unreadable GGUF: {exc.message}",))
    if info.kind != "gguf":
        return GGUFCheck(
            path, False, 0, "", 0, 0, 0, {}, (f"unreadable GGUF: {info.kind} (magic {info.magic!r})",)
        )
    if info.parse_error:
        problems.append(f"unreadable GGUF header: {info.parse_error}")
    version = int(info.version or 0)
    if version not in (2, 3):
        problems.append(f"GGUF version {version} (expected 2 or 3)")
    meta = info.metadata
    arch = str(meta.get("general.architecture") or "")
    if arch != expected_arch:
        problems.append(f"general.architecture is {arch!r}, expected {expected_arch!r}")
    header_count = int(info.tensor_count or 0)
    tensors = {t.name: t for t in info.tensors}
    if header_count != len(info.tensors) or len(tensors) != len(info.tensors):
        problems.append(
            f"header says {header_count} tensors, {len(info.tensors)} read ({len(tensors)} distinct names)"
        )
    size = info.file_size
    data_offset = info.data_offset if info.data_offset is not None else size
    types: dict[str, int] = {}
    allowed = ALLOWED.get(outtype, frozenset())
    for t in info.tensors:
        try:
            tname = gguf.GGMLQuantizationType(t.ggml_type).name
        except ValueError:
            problems.append(f"{t.name}: unknown ggml type {t.ggml_type}")
            continue
        types[tname] = types.get(tname, 0) + 1
        if data_offset + t.offset + t.n_bytes > size:
            problems.append(f"{t.name}: data beyond the end of the file")
        if allowed and tname not in allowed:
            problems.append(f"{t.name}: type {tname} is not expected in a {outtype} file")
        if len([d for d in t.shape if d > 1]) <= 1 and tname not in ("F32",) and outtype != "bf16":
            problems.append(f"{t.name}: 1-D tensor stored as {tname} (llama.cpp expects F32)")
    if outtype in TARGET and TARGET[outtype] not in types:
        problems.append(f"no tensor is {TARGET[outtype]}: the file is not really {outtype}")

    config = json.loads((model_dir / "config.json").read_text())
    layers = next(
        (config[k] for k in ("num_hidden_layers", "n_layer", "n_layers") if isinstance(config.get(k), int)),
        None,
    )
    block_count = meta.get(f"{arch}.block_count")
    if layers is not None and block_count is not None and int(block_count) != layers:
        problems.append(f"{arch}.block_count is {block_count}, the checkpoint has {layers} layers")

    source = read_safetensors_index(model_dir / "model.safetensors")
    name_map = _name_map(gguf, arch, int(block_count or layers or 0))
    expected: dict[str, list[tuple[int, ...]]] = {}
    unplaced = 0
    for name, (_dtype, shape) in source.items():
        key = _EXPERT.sub(".experts.", name)
        mapped = name_map.get_name(key, try_suffixes=(".weight", ".bias")) if name_map is not None else None
        if mapped is None or mapped not in tensors:
            unplaced += 1
            continue
        expected.setdefault(mapped, []).append(shape)
    for mapped, shapes in expected.items():
        numel = sum(_numel(s) for s in shapes)
        t = tensors[mapped]
        got = tuple(int(d) for d in reversed(list(t.shape)))  # GGUF lists ne0 first
        if _numel(got) != numel:
            problems.append(
                f"{mapped}: {_numel(got)} elements {list(got)}, the source has {numel} ({[list(s) for s in shapes]})"
            )
        elif (
            len(shapes) == 1
            and len([d for d in got if d > 1]) == len([d for d in shapes[0] if d > 1])
            and sorted(d for d in got if d > 1) != sorted(d for d in shapes[0] if d > 1)
        ):  # a split of one dimension into groups (mamba2's ssm_norm) keeps the elements: accepted
            problems.append(f"{mapped}: shape {list(got)} vs source {list(shapes[0])}")
    if not expected:
        problems.append("no tensor of the source checkpoint could be matched by name")
    return GGUFCheck(
        path,
        not problems,
        version,
        arch,
        len(info.tensors),
        len(expected),
        unplaced,
        types,
        tuple(problems),
    )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
