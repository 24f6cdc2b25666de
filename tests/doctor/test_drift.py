"""Drift guard: the catalog's patterns against the format strings of real llama.cpp trees."""

from __future__ import annotations

from pathlib import Path

from toolchain.doctor.catalog import PATTERNS
from toolchain.doctor.drift import _render, check_patterns, check_tree, format_strings

# Messages 0.3.36 prints that 0.3.20 did not (or worded differently): what drift looks like.
NEWER_THAN_0320 = {
    "memory.metal-buffer-oom",
    "unsupported-op.graph-splits",
    "metal-library.kernel-not-found",
    "metal-library.nil-pipeline",
    "metal-library.not-in-bundle",
    "metal-library.tensor-metallib-missing",
}


def test_render_format_strings() -> None:
    assert _render("%s: error: failed to allocate buffer, size = %8.2f MiB") == (
        "X: error: failed to allocate buffer, size = 0.00 MiB"
    )
    assert _render("%s:%d: %zu %%") == "X:0: 0 %"


def test_every_tree_pattern_matches_the_current_tree(tree_0336: Path) -> None:
    results = check_tree(tree_0336)
    assert len(results) >= 45
    missing = [(r.pattern_id, r.regex) for r in results if not r.matched]
    assert not missing, f"upstream wording drifted for: {missing}"
    elsewhere = [
        (r.pattern_id, r.where) for r in results if not r.in_sources and PATTERNS[r.pattern_id].sources
    ]
    assert not elsewhere, f"messages moved to other files (update the catalog's sources): {elsewhere}"


def test_legacy_patterns_match_the_tree_that_printed_them(tree_0320: Path, tree_0336: Path) -> None:
    old, new = format_strings(tree_0320), format_strings(tree_0336)
    for r in check_patterns(old, legacy="0.3.20"):
        assert r.matched, r
    # "Flash Attention was auto, set to disabled" is gone from 0.3.36 (now "... not supported, set to disabled")
    current = {r.pattern_id: r.matched for r in check_patterns(new, legacy="0.3.20")}
    assert current["unsupported-op.fa-disabled"] is False


def test_guard_detects_drift_on_an_older_tree(tree_0320: Path) -> None:
    results = check_tree(tree_0320)
    assert {r.pattern_id for r in results if not r.matched} == NEWER_THAN_0320


def test_commented_out_messages_do_not_count(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.cpp").write_text(
        "// LOG(\"%s: unsupported op '%s'\\n\");\n"
        'LOG("%s: this GGUF file is version %" PRIu32 " but this software only supports up to version %d\\n");\n'
        'char q = \'"\'; const char * s = "wrong number of tensors; expected %d, got %d";\n'
    )
    texts = [s.text for s in format_strings(tmp_path)]
    assert not any("unsupported op" in t for t in texts)
    assert "X: this GGUF file is version 0 but this software only supports up to version 0" in texts
    assert "wrong number of tensors; expected 0, got 0" in texts


def test_tensor_api_device_names_are_the_trees(tree_0336: Path) -> None:
    """The GPU names the tree enables the tensor API for (containsString in ggml_metal_device_init)."""
    import re

    src = (tree_0336 / "ggml/src/ggml-metal/ggml-metal-device.m").read_text(encoding="utf-8")
    cond = src[: src.index("tensor API disabled for pre-M5")].rsplit("GGML_METAL_TENSOR_ENABLE", 1)[1]
    names = re.findall(r'containsString:@"(\w+)"', cond)
    assert names == ["M5", "M6", "A19", "A20"]
    device = PATTERNS["no-metal-build.tensor-device"].compiled
    for name in names:
        assert device.search(f"ggml_metal_device_init: GPU name:   MTL0 (Apple {name} Max)"), name
    for older in ("M1", "M2 Ultra", "M3 Pro", "M4 Max", "A18 Pro"):
        assert not device.search(f"ggml_metal_device_init: GPU name:   MTL0 (Apple {older})"), older
