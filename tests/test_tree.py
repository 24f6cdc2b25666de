"""``toolchain.core.tree``: what a llama.cpp tree contains is said in one place."""

from __future__ import annotations

import re
from pathlib import Path

from toolchain.builder.targets import TARGET_GROUPS
from toolchain.core import tree
from toolchain.coverage.engine.backends import backend

ROOT = Path(__file__).resolve().parents[1]

# Literals that name a program or a source path of the tree (quoted, as code has them).
TREE_LITERALS = re.compile(
    r"""["'](?:llama-completion|llama-cli|llama-simple|test-backend-ops|test-llama-archs|"""
    r"""test-export-graph-ops|llama-quantize|llama-debug|llama-eval-callback)["']\s*[,)]"""
    r"""|["']ggml-metal["']\s*\)|ggml/src/ggml-metal["']|["']tests["']\s*/\s*["']test-backend-ops\.cpp"""
    r"""|\(tree\s*/\s*["']convert_hf_to_gguf\.py["']\)|## SPLIT #"""
)


def test_programs_paths_and_log_formats_of_the_tree_live_only_in_tree_py() -> None:
    offenders = []
    for path in (ROOT / "toolchain").rglob("*.py"):
        if path.name == "tree.py" and path.parent.name == "core" or path.name == "platform_data.py":
            continue  # platform_data: names of processes running on a Mac, not of the tree's programs
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("  # ")[0]
            if TREE_LITERALS.search(code) and not code.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_the_build_builds_the_programs_the_stages_look_for() -> None:
    wants = {w.purpose: w.names for group in TARGET_GROUPS.values() for w in group}
    assert wants["runner"] == tree.RUNNERS and wants["backend-ops"] == tree.BACKEND_OPS
    assert wants["export-graph-ops"] == tree.EXPORTERS and wants["quantize"] == tree.QUANTIZE


def test_log_formats_and_option_probing() -> None:
    m = tree.SCHED_SPLIT.search("## SPLIT #3: BLAS # 1 inputs: [a]")
    assert m is not None and m["backend"] == "BLAS" and m["n"] == "3"
    text = "-ub,  --ubatch-size N   physical maximum batch size\n--no-repack  disable\n-fa, --flash-attn=on"
    assert tree.has_option(text, "-ub") and tree.has_option(text, "--no-repack")
    assert tree.has_option(text, "--flash-attn") and not tree.has_option(text, "--repack")


def test_placement_is_profile_data() -> None:
    assert (backend("CPU").kind, backend("BLAS").kind, backend("MTL0").kind) == ("cpu", "accel", "gpu")
    assert backend("BLAS").min_batch == 32 and backend("MTL0").min_batch == 0
