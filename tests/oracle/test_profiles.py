"""Device profiles: GPU-family data turned into props by the tree's own device-init rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.oracle.extract import extract
from toolchain.oracle.profiles import GPU_FAMILIES, default_profiles, device_rules, select


def test_rules_are_read_from_the_device_init(tree_0336: Path) -> None:
    rules = device_rules(tree_0336)
    red = [r for r in rules.rules if r.prop == "has_simdgroup_reduction" and r.kind == "family"][-1]
    assert set(red.families) == {"Apple7", "Metal3"} and red.where.startswith(
        "ggml/src/ggml-metal/ggml-metal-device.m:"
    )
    bf = [r for r in rules.rules if r.prop == "has_bfloat" and r.kind == "family"][-1]
    assert set(bf.families) == {"Metal3", "Apple6"}
    assert any(r.prop == "has_bfloat" and r.env == "GGML_METAL_BF16_DISABLE" for r in rules.rules)
    assert "M5" in rules.tensor_names


@pytest.mark.parametrize("version", ["0336", "0320"])
def test_profiles_follow_the_rules(version: str, request: pytest.FixtureRequest) -> None:
    tree: Path = request.getfixturevalue(f"tree_{version}")
    ex = extract(tree)
    profiles = {p.name: p for p in default_profiles(tree, ex.props_fields, ex.props_used)}
    assert {"apple7", "apple8", "apple9", "apple7-nobf16", "apple9-nobf16", "paravirtual"} <= set(profiles)
    m1 = profiles["apple7"].props_values()
    assert (m1["has_simdgroup_reduction"], m1["has_simdgroup_mm"], m1["has_bfloat"]) == ("1", "1", "1")
    assert profiles["apple9-nobf16"].prop("has_bfloat") == "0"
    pv = profiles["paravirtual"].props_values()
    assert (pv["has_simdgroup_reduction"], pv["has_simdgroup_mm"], pv["has_bfloat"]) == ("0", "0", "0")
    # every value says where it came from
    src = {p.name: p.source for p in profiles["apple7"].props}
    assert src["has_simdgroup_reduction"].startswith("tree ggml/src/ggml-metal/ggml-metal-device.m:")
    assert (
        "GGML_METAL_BF16_DISABLE" in {p.name: p.source for p in profiles["apple7-nobf16"].props}["has_bfloat"]
    )
    assert "Apple Metal feature set tables" in src["max_theadgroup_memory_size"]
    assert profiles["apple7"].prop("has_tensor") == "0"  # tensor API off for pre-M5 names, per the tree


def test_apple10_only_when_the_tree_knows_it(tree_0336: Path, tmp_path: Path) -> None:
    assert GPU_FAMILIES["apple10"].needs_tree_token == "M5"
    ex = extract(tree_0336)
    fields, used = ex.props_fields, ex.props_used
    assert "apple10" in {p.name for p in default_profiles(tree_0336, fields, used)}
    # a tree whose device file never names M5 gets no Apple10 profile
    m = tree_0336 / "ggml/src/ggml-metal/ggml-metal-device.m"
    fake = tmp_path / "ggml/src/ggml-metal/ggml-metal-device.m"
    fake.parent.mkdir(parents=True)
    fake.write_text(m.read_text().replace('"M5', '"X5').replace('@"M5"', '@"X5"'))
    assert "apple10" not in {p.name for p in default_profiles(tmp_path, fields, used)}


def test_select_unknown_profile_is_a_usage_error(tree_0336: Path) -> None:
    from toolchain.errors import UsageError

    profiles = default_profiles(tree_0336, (ex := extract(tree_0336)).props_fields, ex.props_used)
    assert [p.name for p in select(profiles, ["paravirtual"])] == ["paravirtual"]
    with pytest.raises(UsageError, match="apple99"):
        select(profiles, ["apple99"])
