"""Cutting supports_op out of real trees, and refusing loudly when the cut would not be faithful."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.oracle.extract import DEVICE_H, DEVICE_M, ENTRY, ExtractionFailed, extract
from toolchain.oracle.probe import ProbeUnavailable, ensure_probe, props_setter


def test_cut_from_0336_follows_calls_into_common(tree_0336: Path) -> None:
    ex = extract(tree_0336)
    names = [f.name for f in ex.functions]
    assert names[:2] == ["ggml_metal_supports_mul_mat_op", ENTRY]  # static helper first, as in the .m
    assert {
        "ggml_metal_op_mul_mat_use_mm",
        "ggml_metal_op_mul_mat_id_use_mm",
        "ggml_metal_op_mul_mat_use_fwht",
        "ggml_metal_fwht_supported_size",
    } <= set(names)
    assert {f.language for f in ex.functions if f.file.endswith(".m")} == {"c"}
    assert {f.language for f in ex.functions if f.file.endswith(".cpp")} == {"cxx"}
    assert set(ex.props_used) == {
        "has_bfloat",
        "has_simdgroup_mm",
        "has_simdgroup_reduction",
        "max_theadgroup_memory_size",
    }
    assert "Foundation" not in ex.source("c") and '#include "toolchain_device.h"' in ex.source("c")
    entry = next(f for f in ex.functions if f.name == ENTRY)
    assert entry.text.startswith("bool ggml_metal_device_supports_op(") and entry.text.endswith("}")


def test_cut_from_0320_is_self_contained(tree_0320: Path) -> None:
    ex = extract(tree_0320)
    assert [f.name for f in ex.functions] == [ENTRY]
    assert set(ex.props_used) == {"has_bfloat", "has_simdgroup_mm", "has_simdgroup_reduction"}


def test_props_setter_covers_every_field(tree_0336: Path) -> None:
    ex = extract(tree_0336)
    code = props_setter(ex.props_fields)
    for f in ex.props_fields:
        assert f'strcmp(key, "{f.name}")' in code
    assert "snprintf(dev->props.name" in code  # char[] fields are copied, not cast


# --- synthetic trees: each refusal names its reason ---------------------------------------------

HEADER = """
#pragma once
struct ggml_metal_device_props {
    bool has_simdgroup_reduction;
    bool has_bfloat;
    char name[128];
};
"""


def _tree(tmp_path: Path, body: str, prelude: str = "") -> Path:
    (tmp_path / DEVICE_M).parent.mkdir(parents=True)
    (tmp_path / DEVICE_H).write_text(HEADER)
    (tmp_path / DEVICE_M).write_text(
        '#import "ggml-metal-device.h"\n#include <Metal/Metal.h>\n' + prelude + "\n"
        "bool ggml_metal_device_supports_op(ggml_metal_device_t dev, const struct ggml_tensor * op) {\n"
        + body
        + "\n}\n"
    )
    return tmp_path


def test_a_plain_body_is_cut(tmp_path: Path) -> None:
    ex = extract(_tree(tmp_path, "    return dev->props.has_bfloat && op != NULL;"))
    assert ex.props_used == ("has_bfloat",)
    assert ex.includes["c"] == ("ggml-metal-device.h",)


@pytest.mark.parametrize(
    ("body", "prelude", "reason"),
    [
        ("    return dev->mtl_device != nil;", "", "reads dev->mtl_device"),
        ("    return [dev->mtl_device supportsFamily:7];", "", "Objective-C"),
        ('    return getenv("X") != NULL;', "", "environment variable"),
        ("#if TARGET_OS_OSX\n    return true;\n#endif\n    return false;", "", "preprocessor conditional"),
        (
            "    return op->ne[0] <= MY_LIMIT;",
            "#define MY_LIMIT 64",
            "defined in ggml/src/ggml-metal/ggml-metal-device.m itself: MY_LIMIT",
        ),
        ("    return op->ne[0] <= kLimit;", "static const int kLimit = 64;", "kLimit"),
        ("    return dev->props.has_tensor;", "", "dev->props.has_tensor, not declared"),
    ],
)
def test_refusals_name_the_reason(tmp_path: Path, body: str, prelude: str, reason: str) -> None:
    with pytest.raises(ExtractionFailed) as err:
        extract(_tree(tmp_path, body, prelude))
    assert reason in err.value.reason


def test_renamed_function_is_reported(tmp_path: Path) -> None:
    tree = _tree(tmp_path, "    return true;")
    text = (tree / DEVICE_M).read_text().replace("ggml_metal_device_supports_op", "ggml_metal_dev_supports")
    (tree / DEVICE_M).write_text(text)
    with pytest.raises(ExtractionFailed, match="renamed or moved upstream"):
        extract(tree)


def test_tree_without_metal_backend(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match="ggml-metal-device.m is missing"):
        extract(tmp_path)


def test_probe_reports_why_it_is_unavailable(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree", "    return dev->mtl_device != nil;")
    (tree / "tests").mkdir()
    (tree / "tests" / "test-backend-ops.cpp").write_text("int main() { return 0; }\n")
    with pytest.raises(ProbeUnavailable, match="cannot cut supports_op out of .*reads dev->mtl_device"):
        ensure_probe(tree, tmp_path / "cache")
