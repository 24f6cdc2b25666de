"""The kernel library per profile: the tree's .metal sources with the loader's own defines."""

from __future__ import annotations

from pathlib import Path

from toolchain.dryrun.library import kernel_library, loader_defines, names_in_text
from toolchain.oracle.extract import extract
from toolchain.oracle.profiles import DeviceProfile, default_profiles


def _profiles(tree: Path) -> dict[str, DeviceProfile]:
    ex = extract(tree)
    return {p.name: p for p in default_profiles(tree, ex.props_fields, ex.props_used)}


def test_map0_instantiations_at_the_pin(tree_0336: Path) -> None:
    lib = kernel_library(tree_0336, _profiles(tree_0336)["apple9"])
    map0 = sorted(int(n.rsplit("_", 1)[1]) for n in lib.names if n.startswith("kernel_mul_mm_id_map0_ne20_"))
    assert map0 == [1, 2, 4, 5, 6, 8, 10, 16, 22]
    assert lib.names["kernel_mul_mm_id_map0_ne20_4"] == "ggml/src/ggml-metal/kernels/mul_mm.metal:500"
    assert len(lib.names) == 1130


def test_bf16_kernels_follow_the_loader_define(tree_0336: Path) -> None:
    profiles = _profiles(tree_0336)
    full = kernel_library(tree_0336, profiles["apple9"])
    para = kernel_library(tree_0336, profiles["paravirtual"])
    assert "kernel_mul_mm_bf16_f32" in full.names and "kernel_mul_mm_bf16_f32" not in para.names
    bf16 = next(
        d for d in loader_defines(tree_0336, profiles["paravirtual"]) if d.name == "GGML_METAL_HAS_BF16"
    )
    assert not bf16.active and bf16.condition == "props.has_bfloat = 0"
    assert bf16.where.startswith("ggml/src/ggml-metal/ggml-metal-device.m:")


def test_tensor_api_define_on_apple10_only(tree_0336: Path) -> None:
    profiles = _profiles(tree_0336)
    active = {
        name: {d.name for d in loader_defines(tree_0336, profiles[name]) if d.active}
        for name in ("apple9", "apple10")
    }
    assert "GGML_METAL_HAS_TENSOR" in active["apple10"] and "GGML_METAL_HAS_TENSOR" not in active["apple9"]


def test_older_single_file_library(tree_0320: Path) -> None:
    lib = kernel_library(tree_0320, _profiles(tree_0320)["apple7"])
    assert lib.sources == ("ggml/src/ggml-metal/ggml-metal.metal",)
    assert "kernel_mul_mm_id_map0_ne20_22" in lib.names


def test_preprocessor_keeps_only_active_branches() -> None:
    text = "\n".join(
        [
            "#if __METAL_VERSION__ < 310 && defined(GGML_METAL_HAS_BF16)",
            "#undef GGML_METAL_HAS_BF16",
            "#endif",
            "#if defined(GGML_METAL_HAS_BF16)",
            'template [[host_name("kernel_a_bf16" )]] kernel t k<bfloat>;',
            "#elif 0",
            "kernel void kernel_never(",
            "#else",
            "kernel void kernel_no_bf16(",
            "#endif",
        ]
    )
    assert names_in_text(text, {"GGML_METAL_HAS_BF16": "1", "__METAL_VERSION__": "320"}) == {"kernel_a_bf16"}
    assert names_in_text(text, {"GGML_METAL_HAS_BF16": "1", "__METAL_VERSION__": "300"}) == {"kernel_no_bf16"}
    assert names_in_text(text, {"__METAL_VERSION__": "320"}) == {"kernel_no_bf16"}


def test_an_edited_kernel_source_is_scanned_again_in_the_same_process(
    tree_0336: Path, tmp_path: Path
) -> None:
    """The library (and the cut) are kept per process while their files are unchanged: one scan for
    a whole matrix, and an edit between two calls is seen."""
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(tree_0336 / "ggml", tree / "ggml")
    apple9 = _profiles(tree)["apple9"]
    first = kernel_library(tree, apple9)
    assert kernel_library(tree, apple9) is first  # kept
    source = tree / "ggml" / "src" / "ggml-metal" / "kernels" / "mul_mm.metal"
    source.write_text(
        source.read_text() + '\ntemplate [[host_name("kernel_toolchain_added")]] kernel void x();\n'
    )
    again = kernel_library(tree, apple9)
    assert "kernel_toolchain_added" in again.names and "kernel_toolchain_added" not in first.names
    cut = extract(tree)
    assert extract(tree) is cut
    device_m = tree / "ggml" / "src" / "ggml-metal" / "ggml-metal-device.m"
    device_m.write_text(device_m.read_text() + "\n")
    assert extract(tree) is not cut
