"""verify on a real wheel's folder with no tree: the shipped library's can / cannot-run table, read
from the build alone (the CI share of fixtures/real_builds.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.real_builds import CORPUS, RealBuild
from tests.verify.test_real_builds import real_build
from toolchain.profiles import PROFILES
from toolchain.verify import verify_path
from toolchain.verify.shipped_kernels import Fact


def _build(project: str, version: str) -> RealBuild:
    return next(b for b in CORPUS if b.project == project and b.version == version and b.ci)


def _facts(path: Path) -> dict[str, Fact]:
    v = verify_path(path, PROFILES["metal"], runtime=False)
    out: dict[str, Fact] = {}
    for f in v.shipped:
        assert isinstance(f, Fact) and f.observed_by == "static" and f.source
        out.setdefault(f.topic, f)
    return out


def test_b11739_names_the_missing_moe_map_kernels() -> None:
    facts = _facts(real_build(_build("llama-cpp-py-sync", "0.11739")))
    moe = facts["MoE experts per token (mul_mm_id map kernels)"]
    assert moe.can == "9 values: 1, 2, 4, 5, 6, 8, 10, 16, 22 experts per token"
    assert moe.cannot.startswith("a MoE with 3, 7, 9, 11, 12, ")
    assert "kernel_mul_mm_id_map0_ne20_%d" in moe.source and "__ggml_metallib" in moe.source
    fa = facts["flash attention K/V head sizes"]
    assert "576/512" in fa.can and "dk%d_dv%d" in fa.source
    bf16 = facts["bf16 kernels"]
    assert "Metal language >= 3.1" in bf16.can and "GGML_METAL_BF16_DISABLE=1" in bf16.cannot
    assert "__METAL_VERSION__ < 310" in bf16.source
    mv = facts["mat-vec type pairs (mul_mv)"]
    assert "src1 f16 with src0 f32," in mv.cannot  # kernel_mul_mv_f32_f16_4: the llama.cpp PR #26212 class


def test_pre_registry_compiled_library_beside_the_binary() -> None:
    build = _build("gpt4all", "2.8.2")
    facts = _facts(real_build(build))
    inv = facts["kernel inventory"]
    assert inv.can == "172 kernels (compiled library beside the binary, Metal language 2.4)"
    assert "default.metallib" in inv.source
    assert "compiled for 2.4" in facts["bf16 kernels"].cannot
    assert facts["kernels the host code loads by name"].cannot == ""


def test_cli_prints_the_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from toolchain.cli import main

    path = real_build(_build("llama-cpp-py-sync", "0.11739"))
    rc = main(
        [
            "verify",
            str(path),
            "--no-runtime",
            "--profile",
            "metal",
            "--work-dir",
            str(tmp_path),
            "--no-tree-match",
        ]
    )
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())
    assert rc == 0
    assert "shipped library: what it can / cannot run (static" in text
    assert "era: registry" in text
