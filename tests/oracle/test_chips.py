"""Per-chip ``device_id`` from the tree's own ``ggml_metal_device_id_parse`` (M1 … M5, Pro/Max/Ultra):
values and sources read from the real 0.3.36 tree and from copies of its Metal sources with the
parse function or the table changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.oracle.tree_copies import metal_copy, patch_once
from toolchain.oracle.chips import chip_table
from toolchain.oracle.extract import DEVICE_H, DEVICE_M, ExtractionFailed, extract
from toolchain.oracle.profiles import default_profiles

ENTRY_LINE = "bool ggml_metal_device_supports_op(ggml_metal_device_t dev, const struct ggml_tensor * op) {\n"
READS_DEVICE_ID = "    if (dev->props.device_id == GGML_METAL_DEVICE_M1_ULTRA && op->ne[0] > 4096) {\n        return false;\n    }\n"


def _enum_value(tree: Path, token: str) -> int:
    """GGML_METAL_DEVICE_* value counted by hand from the header (GENERIC = 0, then one each)."""
    text = (tree / DEVICE_H).read_text(encoding="utf-8")
    body = text[text.index("enum ggml_metal_device_id {") :].split("}", 1)[0]
    names = [part.split("=")[0].strip() for part in body.split("{", 1)[1].split(",") if part.strip()]
    return names.index(token)


def _profiles(tree: Path) -> dict[str, dict[str, str]]:
    ex = extract(tree)
    return {p.name: p.props_values() for p in default_profiles(tree, ex.props_fields, ex.props_used)}


def _sources(tree: Path, name: str) -> dict[str, str]:
    ex = extract(tree)
    (p,) = [p for p in default_profiles(tree, ex.props_fields, ex.props_used) if p.name == name]
    return {v.name: v.source for v in p.props}


def test_family_profiles_carry_device_id_and_gpu_family_with_sources(tree_0336: Path) -> None:
    profiles = _profiles(tree_0336)
    assert profiles["apple7"]["device_id"] == str(_enum_value(tree_0336, "GGML_METAL_DEVICE_M1"))
    assert profiles["apple10"]["device_id"] == str(_enum_value(tree_0336, "GGML_METAL_DEVICE_M5"))
    assert profiles["paravirtual"]["device_id"] == "0"  # "Apple Paravirtual device": GENERIC
    assert (profiles["apple7"]["gpu_family"], profiles["apple10"]["gpu_family"]) == ("7", "10")
    src = _sources(tree_0336, "apple7")
    table_line = next(
        i + 1
        for i, line in enumerate((tree_0336 / DEVICE_M).read_text(encoding="utf-8").splitlines())
        if 'DEV("M1",' in line
    )
    assert (
        f"ggml_metal_device_id_parse('Apple M1') -> GGML_METAL_DEVICE_M1 ({DEVICE_M}:{table_line};"
        in src["device_id"]
    )
    assert src["gpu_family"].startswith(f"tree {DEVICE_M}:")
    # 0.3.36's supports_op does not read device_id: no per-chip profiles
    assert not any(name.startswith("m1") for name in profiles)


def test_per_chip_profiles_where_supports_op_reads_device_id(tree_0336: Path, tmp_path: Path) -> None:
    tree = metal_copy(tree_0336, tmp_path)
    patch_once(tree / DEVICE_M, ENTRY_LINE, ENTRY_LINE + READS_DEVICE_ID)
    assert "device_id" in extract(tree).props_used
    profiles = _profiles(tree)
    chips = [
        f"m{g}{s}" for g in range(1, 5) for s in ("", "-pro", "-max", "-ultra") if (g, s) != (4, "-ultra")
    ]
    chips += ["m5", "m5-pro", "m5-max", "m5-ultra"]
    assert set(chips) <= set(profiles)
    ids = {c: profiles[c]["device_id"] for c in chips}
    assert len(set(ids.values())) == len(chips)  # each chip its own value
    assert ids["m1-ultra"] == str(_enum_value(tree, "GGML_METAL_DEVICE_M1_ULTRA"))
    assert profiles["m1-ultra"]["gpu_family"] == "7" and profiles["m4-max"]["gpu_family"] == "9"
    assert (profiles["m5-max"]["has_tensor"], profiles["m4-max"]["has_tensor"]) == ("1", "0")


def test_a_changed_parse_prefix_gives_other_values(tree_0336: Path, tmp_path: Path) -> None:
    tree = metal_copy(tree_0336, tmp_path)
    patch_once(
        tree / DEVICE_M, 'static const char prefix[] = "Apple ";', 'static const char prefix[] = "Apple(R) ";'
    )
    profiles = _profiles(tree)
    assert profiles["apple7"]["device_id"] == "0"  # "Apple M1" no longer parses
    assert "GGML_METAL_DEVICE_GENERIC" in _sources(tree, "apple7")["device_id"]


def test_a_changed_table_entry_gives_other_values(tree_0336: Path, tmp_path: Path) -> None:
    tree = metal_copy(tree_0336, tmp_path)
    patch_once(
        tree / DEVICE_M, 'DEV("M1",       GGML_METAL_DEVICE_M1),', 'DEV("M1",       GGML_METAL_DEVICE_M2),'
    )
    assert _profiles(tree)["apple7"]["device_id"] == str(_enum_value(tree, "GGML_METAL_DEVICE_M2"))


def test_a_parse_function_of_another_shape_is_not_modelled(tree_0336: Path, tmp_path: Path) -> None:
    tree = metal_copy(tree_0336, tmp_path)
    patch_once(
        tree / DEVICE_M,
        "        if (strcmp(suffix, k_metal_devices[i].name) == 0) {",
        "        if (strstr(suffix, k_metal_devices[i].name) != NULL) {",
    )
    assert chip_table(tree) is None
    # not read by supports_op: zero, and says so
    assert "not modelled" in _sources(tree, "apple7")["device_id"]
    # read by supports_op: refused, naming the field
    patch_once(tree / DEVICE_M, ENTRY_LINE, ENTRY_LINE + READS_DEVICE_ID)
    ex = extract(tree)
    with pytest.raises(ExtractionFailed) as err:
        default_profiles(tree, ex.props_fields, ex.props_used)
    assert "dev->props.device_id" in err.value.reason and "no profile models" in err.value.reason
