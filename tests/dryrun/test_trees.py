"""The dry run on trees other than the pin (issue 27): the first tree with the C++ Metal backend
(0.3.17) and the two of the issue (0.3.25, 0.3.30), each from its real llama-cpp-python sdist, and
a single-device ggml-org/ggml commit no sdist carries (bce8a97c, skipped without the ggml clone).

On each: the stand-in follows the tree's interface (no refusal), the built-in MUL_MAT cases
validate with 0 unexplained findings on the four default profiles, and the two real crashes of
issue 27 are named on apple7, apple9 and apple10:

- llama.cpp PR #26212 (https://github.com/ggml-org/llama.cpp/pull/26212): MUL_MAT src0 F32
  [64,100] x src1 F16 [64,1] (one token: the mat-vec path) asks for ``kernel_mul_mv_f32_f16_4``,
  which these libraries do not instantiate;
- llama.cpp #28602 (https://github.com/ggml-org/llama.cpp/issues/28602): FLASH_ATTN_EXT with K head
  96 and V head 64 (MiniCPM3), one token, asks for ``kernel_flash_attn_ext_vec_f16_dk96_dv64``,
  instantiated from PR #28599 on (0.3.36 has it: silent there).

Slow: one dry-run program per tree (cached per tree content in the test cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.conftest as root_conftest
from tests.dryrun.conftest import BUILD_LOCK, ggml_git_tree, needs_ggml_git, sdist_tree
from toolchain.dryrun.build import ensure_program
from toolchain.dryrun.replay import case_line, outcomes
from toolchain.dryrun.run import dry_run
from toolchain.dryrun.validate import validate

pytestmark = pytest.mark.slow

PROFILES = ["apple7", "apple9", "apple10"]
MV_F32_F16 = {
    "op": "MUL_MAT",
    "dst_type": "f32",
    "srcs": [{"type": "f32", "ne": [64, 100, 1, 1]}, {"type": "f16", "ne": [64, 1, 1, 1]}],
}
FA_96_64 = {
    "op": "FLASH_ATTN_EXT",
    "dst_type": "f32",
    "srcs": [
        {"type": "f32", "ne": [96, 1, 4, 1]},
        {"type": "f16", "ne": [96, 512, 4, 1]},
        {"type": "f16", "ne": [64, 512, 4, 1]},
        {"type": "f16", "ne": [512, 1, 1, 1]},
    ],
    "params": {"prec": "f32"},
}


def _program(tree: Path, cache: Path):  # type: ignore[no-untyped-def]
    return ensure_program(
        tree, cache, compiler_cache_dir=root_conftest.test_cache_dir() / "ccache", build_lock=BUILD_LOCK
    )


def _replay(
    tree: Path, cache: Path, work: Path, replay: dict[str, object]
) -> dict[str, tuple[str, tuple[str, ...]]]:
    ops = work / "case.ops"
    work.mkdir(parents=True, exist_ok=True)
    ops.write_text(case_line(tree, replay) + "\n")
    run = dry_run(tree, cache, work / "run", batches=[("ops", ops)], profiles=PROFILES)
    return {p: (o.verdict, o.missing) for p, o in outcomes(run).items()}


@pytest.mark.parametrize("version", ["0.3.17", "0.3.25", "0.3.30"])
def test_an_older_tree_is_dry_run_and_names_the_real_crashes(
    version: str, dryrun_cache: Path, tmp_path: Path
) -> None:
    tree = sdist_tree(version)
    prog = _program(tree, dryrun_cache)
    assert prog.standin is not None
    assert [d.split(":")[0] for d in prog.standin.defaults] == ["ggml_metal_supports_family"]
    assert "ggml-metal-fusion.cpp" not in [p.name for p in prog.standin.metal_sources]

    report = validate(tree, dryrun_cache, tmp_path / "validate", ops="MUL_MAT")
    assert report.ok, report.summary_lines()
    assert not [e for e in report.explained if e.kind == "unexplained"]

    mv = _replay(tree, dryrun_cache, tmp_path / "mv", MV_F32_F16)
    assert mv == {p: ("missing-kernel", ("kernel_mul_mv_f32_f16_4",)) for p in PROFILES}, mv
    fa = _replay(tree, dryrun_cache, tmp_path / "fa", FA_96_64)
    assert fa == {p: ("missing-kernel", ("kernel_flash_attn_ext_vec_f16_dk96_dv64",)) for p in PROFILES}, fa


def test_the_pin_has_the_fa_kernel_the_older_trees_lack(
    tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    _program(tree_0336, dryrun_cache)
    fa = _replay(tree_0336, dryrun_cache, tmp_path / "fa", FA_96_64)
    assert {v for v, _m in fa.values()} == {"pass"}, fa


@needs_ggml_git
def test_a_single_device_ggml_tree_is_dry_run_one_process_per_profile(
    dryrun_cache: Path, tmp_path: Path
) -> None:
    """ggml-org/ggml bce8a97c (2026-01-08), between the C++ split (2025-09-20) and virtual devices
    (e1fda9de, 2026-02-02), which no sdist carries: ``ggml_metal_device_init(void)``, one device per
    process, and a test-backend-ops without --test-file."""
    tree = ggml_git_tree("bce8a97c")
    prog = _program(tree, dryrun_cache)
    assert prog.standin is not None and prog.standin.single_device and not prog.reads_test_file
    report = validate(tree, dryrun_cache, tmp_path / "validate", ops="MUL_MAT")
    assert report.ok, report.summary_lines()
    assert not [e for e in report.explained if e.kind == "unexplained"]
    batch = report.run.runs[0]
    # one process per profile, merged: every default profile, in order, each with every case
    assert [p.profile for p in batch.results] == ["apple7", "apple9", "apple10", "paravirtual"]
    assert all(sum(p.counts.values()) == batch.cases > 1000 for p in batch.results)
    # the mat-vec gap of PR #26212 is already there (the driver reads the case line: no --test-file)
    mv = _replay(tree, dryrun_cache, tmp_path / "mv", MV_F32_F16)
    assert mv == {p: ("missing-kernel", ("kernel_mul_mv_f32_f16_4",)) for p in PROFILES}, mv
