"""The dry-run sweep (toolchain.dryrun.sweep, space, history).

Unit: the space is read from a real tree (its types and block sizes, the thresholds its encoder
functions compare dimensions with, its kernel-name formats), every generated case is a line the
ops-file check of that tree accepts, and missing kernel names are matched to the tree's formats.
Slow (the dry-run program of each tree, cached in the test cache):
- blind, on llama-cpp-python 0.3.30: the sweep, told nothing, finds the two real crashes of the
  corpus (F32 x F16 mat-vec ``kernel_mul_mv_f32_f16_4``, llama.cpp PR #26212; flash attention K 96
  / V 64 ``kernel_flash_attn_ext_vec_f16_dk96_dv64``, llama.cpp #28602) among its classes;
- every replayable corpus case whose pre-fix tree is an sdist is in a class of the sweep on that
  tree (0.3.35 and 0.3.23), with its kernel or assert; the fixed ones are gone on 0.3.36.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tests.conftest as root_conftest
from tests.conftest import ROOT
from tests.dryrun.conftest import BUILD_LOCK, GGML_GIT, ggml_git_tree, sdist_tree
from toolchain.config import Settings
from toolchain.core.opsinput import checked_lines
from toolchain.dryrun.build import ensure_program
from toolchain.dryrun.history import HistoryCase, history, table_lines
from toolchain.dryrun.space import space_of, thresholds_of, types_of
from toolchain.dryrun.sweep import (
    Formats,
    Sweep,
    SweepClass,
    diff,
    exact_names,
    generate,
    pattern,
    sweep,
    write_batches,
)
from toolchain.errors import ReportError, UsageError

CORPUS = tomllib.loads((ROOT / "fixtures" / "real_crashes" / "corpus.toml").read_text(encoding="utf-8"))
PROFILES = ["apple7", "apple9", "apple10"]


def test_the_space_is_read_from_the_tree(tree_0336: Path) -> None:
    types = {t.name: t.block for t in types_of(tree_0336)}
    assert types["q4_0"] == 32 and types["q4_K"] == 256 and types["bf16"] == 1 and types["f32"] == 1
    assert not any("REMOVED" in n or n == "DEPRECATED" for n in types)  # block size 0: left out
    found = {(t.function, t.variable, t.value) for t in thresholds_of(tree_0336)}
    # ggml_metal_op_mul_mat: the ext path for ne11 in 2…8, the mat-mat path above ne11_mm_min (8)
    assert ("ggml_metal_op_mul_mat", "ne11", 2) in found
    assert ("ggml_metal_op_mul_mat", "ne11", 8) in found
    space = space_of(tree_0336, {})
    assert "kernel_mul_mm_id_map0_ne20_%d" in {f.text for f in space.formats}
    assert {96, 64, 576} <= set(space.head_sizes)
    assert space.experts_per_token == tuple(range(1, 33)) and max(space.expert_counts) == 512


def test_every_generated_case_passes_the_trees_ops_file_check(tree_0336: Path, tmp_path: Path) -> None:
    space = space_of(tree_0336, {})
    families = generate(tree_0336, space)
    assert set(families) == {"mul_mat", "mul_mat_id", "flash_attn_ext", "rows", "copy"}
    files, skipped = write_batches(tree_0336, families, tmp_path)
    assert not skipped, skipped
    total = 0
    for _family, chunks in files:
        for path, cases, _lines in chunks:
            assert len(checked_lines(path, tree_0336)) == len(cases)
            total += len(cases)
    assert total == sum(len(c) for c in families.values()) > 5000


def test_kernel_names_are_matched_to_the_most_specific_format(tree_0336: Path) -> None:
    space = space_of(tree_0336, {})
    formats = Formats(space.formats, space.type_names())
    fmt, values = formats.match("kernel_mul_mv_q8_0_f16") or (None, ())
    assert fmt is not None and fmt.text == "kernel_mul_mv_%s_%s%s" and values == ("q8_0", "f16", "")
    fmt, values = formats.match("kernel_mul_mm_id_map0_ne20_7") or (None, ())
    assert fmt is not None and fmt.text == "kernel_mul_mm_id_map0_ne20_%d" and values == ("7",)
    assert pattern("kernel_mul_mv_%s_%s%s", [("f32", "f16", "_4"), ("q8_0", "f16", "")]) == (
        "kernel_mul_mv_{f32,q8_0}_f16{,_4}"
    )


def _expand(text: str) -> set[str]:
    """Brace expansion of one pattern: ``a_{x,y}_b{,_4}`` -> {a_x_b, a_x_b_4, a_y_b, a_y_b_4}."""
    import itertools
    import re

    parts = re.split(r"\{([^{}]*)\}", text)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return {"".join(c) for c in itertools.product(*choices)}


def test_exact_names_say_which_pairs_are_missing_when_the_sets_overstate() -> None:
    """One set per position (``dk{64,96}_dv{32,40,72}``) claims 6 pairs where 4 are missing; the
    summary names them per K head size, each pattern exact (the sweep's FA classes read as if
    every K/V pair were missing)."""
    fmt = "kernel_%s_%s_dk%d_dv%d"
    pairs = [("64", "32"), ("64", "40"), ("96", "32"), ("96", "72")]
    values = [("flash_attn_ext", t, k, v) for t in ("f16", "q8_0") for k, v in pairs]
    text = exact_names(fmt, values, frozenset({"f16", "q8_0"}))
    assert (
        text
        == "kernel_flash_attn_ext_{f16,q8_0}_dk64_dv{32,40}; kernel_flash_attn_ext_{f16,q8_0}_dk96_dv{32,72}"
    )
    got = set().union(*(_expand(p) for p in text.split("; ")))
    assert got == {fmt.replace("%d", "%s") % v for v in values}
    assert exact_names(fmt, values[:2], frozenset({"f16"})) == ""  # one pattern is already exact


def _names(c: SweepClass) -> set[str]:
    """The missing kernel names of a class (its format filled with each missing value tuple)."""
    import re

    fmt = re.sub(r"%(?:\d*)(?:s|d|u|ld|lld|i)", "%s", c.format) if c.format else ""
    return {fmt % tuple(v.split("/")) for v in c.values} if fmt else {c.what}


def _swept(version: str, tmp_path: Path, families: list[str] | None = None) -> Sweep:
    cache = root_conftest.test_cache_dir() / "dryrun-cache"
    tree = sdist_tree(version)
    ensure_program(
        tree, cache, compiler_cache_dir=root_conftest.test_cache_dir() / "ccache", build_lock=BUILD_LOCK
    )
    return sweep(tree, cache, tmp_path / version, profiles=PROFILES, families=families)


@pytest.mark.slow
def test_blind_on_0330_the_sweep_finds_the_two_real_crashes(tmp_path: Path) -> None:
    result = _swept("0.3.30", tmp_path)
    crash = result.crash_classes()
    by_kernel = {n: c for c in crash if c.verdict == "missing-kernel" for n in _names(c)}
    for kernel in ("kernel_mul_mv_f32_f16_4", "kernel_flash_attn_ext_vec_f16_dk96_dv64"):
        assert kernel in by_kernel, sorted(by_kernel)[:40]
        assert set(by_kernel[kernel].profiles) == set(PROFILES)
        assert by_kernel[kernel].blame == "upstream (Metal backend)"
    # no class blames the sweep's own cases: every generated case is one ggml accepts
    assert not [c for c in result.classes if c.verdict == "invalid-case"], result.classes


@pytest.mark.slow
def test_each_sdist_corpus_case_is_in_a_class_on_its_prefix_tree(tmp_path: Path) -> None:
    cases = [c for c in CORPUS["case"] if c.get("replayable") and c["prefix_version"]]
    assert {c["prefix_version"] for c in cases} >= {"0.3.35", "0.3.23"}
    for version in sorted({c["prefix_version"] for c in cases}):
        result = _swept(version, tmp_path)
        crash = result.crash_classes()
        kernels = {n for c in crash if c.verdict == "missing-kernel" for n in _names(c)}
        asserts = {c.what for c in crash if c.verdict == "encoder-abort"}
        for case in (c for c in cases if c["prefix_version"] == version):
            if case["failure"] == "missing-kernel":
                assert case["kernel"] in kernels, (version, case["id"])
            else:
                inner = case["kernel"].removeprefix("GGML_ASSERT(").removesuffix(")")
                assert any(inner in a for a in asserts), (version, case["id"], asserts)


@pytest.mark.slow
def test_history_names_the_version_where_the_corpus_crashes_stop(settings: Settings) -> None:
    """Bisected over 0.3.30, 0.3.35, 0.3.36 (the sdists): the F32 x F16 mat-vec case and the
    flash-attention K 96 / V 64 case crash from the first and stop in 0.3.36 (llama.cpp PR #26212 and
    #28599), and so does the Q8_0 x F16 MoE mat-vec case."""
    cases = tuple(
        HistoryCase(c["id"], c["replay"])
        for c in CORPUS["case"]
        if c["id"] in ("mv-f32-f16-4", "fa-dk96-dv64-vec", "mvid-q8_0-f16")
    )
    cache = root_conftest.test_cache_dir() / "dryrun-cache"
    local = dataclasses.replace(settings, cache_dir=cache)
    versions = ["0.3.30", "0.3.35", "0.3.36"]
    for v in versions:
        ensure_program(
            sdist_tree(v), cache, compiler_cache_dir=cache.parent / "ccache", build_lock=BUILD_LOCK
        )
    result = history(versions, sdist_tree, cases, local, PROFILES)
    assert result.checked == tuple(versions)  # the ends differ, so the middle is dry-run too
    for t in result.transitions:
        assert (t.first_crash, t.fixed_in) == ("0.3.30", "0.3.36"), t
    lines = "\n".join(table_lines(result))
    assert "mv-f32-f16-4: apple7: crashes from 0.3.30, fixed in 0.3.36" in lines


@pytest.mark.slow
def test_against_the_previous_pins_sweep_the_update_names_what_it_fixes(tmp_path: Path) -> None:
    """0.3.35 -> 0.3.36 (mat-mul and flash-attention families): the two corpus crashes fixed by
    llama.cpp PR #26212 and #28599 are among what no longer crashes, nothing of 0.3.35's is new."""
    families = ["mul_mat", "flash_attn_ext"]
    before = _swept("0.3.35", tmp_path, families)
    after = _swept("0.3.36", tmp_path, families)
    d = diff(after, before, tmp_path / "dryrun-sweep.json")
    gone = {c.name for c in d.fixed}
    assert {"kernel_mul_mv_f32_f16_4", "kernel_flash_attn_ext_vec_f16_dk96_dv64"} <= gone
    assert all(set(c.profiles) == set(PROFILES) for c in d.fixed if c.name in gone)
    assert not d.new, d.new[:5]
    assert "no longer crash here" in d.summary


FAMILY_OF_OP = {
    "MUL_MAT": "mul_mat",
    "MUL_MAT_ID": "mul_mat_id",
    "FLASH_ATTN_EXT": "flash_attn_ext",
    "IM2COL": "rows",
}


@pytest.mark.slow
@pytest.mark.skipif(
    not GGML_GIT.is_dir(), reason=f"no ggml-org/ggml clone at {GGML_GIT} (TOOLCHAIN_GGML_GIT)"
)
def test_each_git_corpus_case_is_in_a_class_on_its_prefix_commit(tmp_path: Path) -> None:
    """The corpus cases whose window lies between two sdists (ggml bce8a97c: 5 experts per token,
    single-device era; 91dc6fc4: Q1_0 MoE weights): the sweep of the case's op family on the
    pre-fix ggml commit names the kernel."""
    cache = root_conftest.test_cache_dir() / "dryrun-cache"
    cases = [
        c
        for c in CORPUS["case"]
        if c.get("replayable") and c["git_prefix_commit"] and c["failure"] == "missing-kernel"
    ]
    assert {c["id"] for c in cases} >= {"moe-ne20-5", "mmid-q1_0-f32"}
    for case in cases:
        tree = ggml_git_tree(case["git_prefix_commit"])
        ensure_program(tree, cache, compiler_cache_dir=cache.parent / "ccache", build_lock=BUILD_LOCK)
        result = sweep(
            tree, cache, tmp_path / case["id"], profiles=PROFILES, families=[FAMILY_OF_OP[case["op"]]]
        )
        kernels = {n for c in result.crash_classes() if c.verdict == "missing-kernel" for n in _names(c)}
        assert case["kernel"] in kernels, (case["id"], sorted(kernels)[:20])


def test_bad_sweep_arguments_are_refused_before_anything_is_swept(tree_0336: Path, tmp_path: Path) -> None:
    """An unknown family or a --baseline that is not a sweep report: refused with its own exit
    code before the dry-run program is built or one case is written."""
    bad = tmp_path / "coverage.json"
    bad.write_text('{"schema_version": 1, "kind": "coverage"}')
    for extra, code, text in (
        (["--family", "mul_mat,bogus"], UsageError.exit_code, "unknown sweep families: bogus"),
        (["--baseline", str(bad)], ReportError.exit_code, "not a dryrun-sweep report"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "toolchain", "dryrun", "sweep", "--tree", str(tree_0336), *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == code, done.stderr
        assert text in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / ".toolchain" / "dryrun").exists()


@pytest.mark.slow
def test_after_an_update_the_sweep_says_what_the_new_pin_fixes(tree_0336: Path, tmp_path: Path) -> None:
    """The everyday flow: a sweep of the old tree, then (after `nox -s update`) one of the new tree in
    the same project compares with the previous report by itself, keeps it as
    dryrun-sweep.previous.json, and names what no longer crashes; a rerun on the same commit does
    not compare with itself."""
    cache = root_conftest.test_cache_dir() / "dryrun-cache"
    old = sdist_tree("0.3.35")
    for tree in (old, tree_0336):
        ensure_program(tree, cache, compiler_cache_dir=cache.parent / "ccache", build_lock=BUILD_LOCK)
    (tmp_path / "pyproject.toml").write_text(f'[tool.llama-toolchain]\ncache-dir = "{cache}"\n')

    def run(tree: Path) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "toolchain",
                "dryrun",
                "sweep",
                "--tree",
                str(tree),
                "--family",
                "mul_mat",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    run(old)
    second = run(tree_0336)
    text = second.stdout + second.stderr
    assert "against the sweep of" in text and "no longer crash here" in text
    assert (
        "no longer crashes on apple7, apple9, apple10: missing-kernel kernel_mul_mv_f32_f16_4"
        in text.replace("apple10, apple7, apple9", "apple7, apple9, apple10")
    )
    reports = tmp_path / ".toolchain" / "reports"
    assert (reports / "dryrun-sweep.previous.json").is_file()
    assert "kernel_mul_mv_f32_f16_4" in (reports / "dryrun-sweep.md").read_text()
    third = run(tree_0336)
    assert "against the sweep of" not in third.stdout + third.stderr
