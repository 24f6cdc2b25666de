"""Real upstream crashes replayed (fixtures/real_crashes/corpus.toml, toolchain.dryrun.replay).

Unit: a corpus case becomes one line of the tree's own test-file format, op and type ids from
that tree's ggml.h. Slow: the corpus cases whose pre-fix tree is 0.3.35 and post-fix tree 0.3.36
(the sdists themselves) are named there and silent here, and moe-ne20-5 on its ggml-org/ggml commit
pair (skipped without a ggml clone, TOOLCHAIN_GGML_GIT); the whole corpus is bench/replay_corpus.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import tests.conftest as root_conftest
from tests.conftest import ROOT
from tests.dryrun.conftest import BUILD_LOCK, ggml_git_tree, needs_ggml_git, sdist_tree
from toolchain.dryrun.build import ensure_program
from toolchain.dryrun.contradict import CANNOT_ENCODE
from toolchain.dryrun.replay import NotReplayable, case_line
from toolchain.dryrun.run import dry_run

CORPUS = tomllib.loads((ROOT / "fixtures" / "real_crashes" / "corpus.toml").read_text(encoding="utf-8"))
PROFILES = ["apple7", "apple9", "apple10"]


def _case(case_id: str) -> dict[str, object]:
    return next(c for c in CORPUS["case"] if c["id"] == case_id)


def test_a_case_is_written_with_the_trees_own_ids(tree_0320: Path, tree_0336: Path) -> None:
    fa = _case("fa-dk96-dv64-vec")["replay"]
    # FLASH_ATTN_EXT is enum value 73 in 0.3.20's ggml.h and 74 in 0.3.36's; the output is
    # [hsv, n_head, n_batch, 1]; op_params scale (1/sqrt(96) as f32 bits), max_bias, softcap, prec F32 (10)
    assert case_line(tree_0320, fa).startswith("73 0 64 4 1 1 4 1037108716 0 0 10 4 0 96 1 4 1 0 0 0 0 ")
    assert case_line(tree_0336, fa).startswith("74 0 64 4 1 1 4 1037108716 0 0 10 4 0 96 1 4 1 0 0 0 0 ")
    im2col = _case("im2col-khkw-over-1024")["replay"]
    # ggml_im2col: [IC*KH*KW, OW, OH, N] with op_params [s0, s1, p0, p1, d0, d1, is_2D]
    assert " 1056 99 98 2 7 1 1 1 1 1 1 1 2 " in case_line(tree_0336, im2col)
    with pytest.raises(NotReplayable, match="GGML_TYPE_Q1_0"):
        case_line(tree_0320, _case("mmid-q1_0-f32")["replay"])  # 0.3.20 predates Q1_0


@pytest.mark.slow
def test_the_corpus_cases_of_0335_are_named_there_and_silent_on_0336(tree_0336: Path, tmp_path: Path) -> None:
    cache = root_conftest.test_cache_dir() / "dryrun-cache"
    cases = [
        c
        for c in CORPUS["case"]
        if c.get("replayable") and c["prefix_version"] == "0.3.35" and c["fixed_version"] == "0.3.36"
    ]
    assert len(cases) >= 5
    trees = {"0.3.35": sdist_tree("0.3.35"), "0.3.36": tree_0336}
    for tree in trees.values():
        ensure_program(
            tree, cache, compiler_cache_dir=root_conftest.test_cache_dir() / "ccache", build_lock=BUILD_LOCK
        )
    for version, tree in trees.items():
        ops = tmp_path / f"corpus-{version}.ops"
        ops.write_text("".join(case_line(tree, c["replay"], c["id"]) + "\n" for c in cases))
        run = dry_run(tree, cache, tmp_path / version, batches=[("ops", ops)], profiles=PROFILES)
        for i, c in enumerate(cases, start=1):
            per: dict[str, tuple[str, tuple[str, ...]]] = {}
            for p in run.runs[0].results:
                f = next((x for x in (*p.findings, *p.unsupported) if x.index == i), None)
                per[p.profile] = ("pass", ()) if f is None else (f.verdict, tuple(m.base for m in f.missing))
            if version == "0.3.35":
                assert any(v == ("missing-kernel", (c["kernel"],)) for v in per.values()), (c["id"], per)
            else:
                assert all(v[0] not in CANNOT_ENCODE for v in per.values()), (c["id"], per)


@needs_ggml_git
@pytest.mark.slow
def test_moe_ne20_5_is_named_on_its_ggml_pair(tmp_path: Path) -> None:
    """moe-ne20-5 (https://github.com/ggml-org/llama.cpp/pull/18667): no sdist carries its crash
    window; its ggml-org/ggml pair does. Both trees have one Metal device per process
    (``ggml_metal_device_init(void)``, one dry-run process per profile) and a test-backend-ops without
    --test-file (the driver reads the case line)."""
    case = _case("moe-ne20-5")
    cache = root_conftest.test_cache_dir() / "dryrun-cache"
    seen: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {}
    for commit in (str(case["git_prefix_commit"]), str(case["git_fixed_commit"])):
        tree = ggml_git_tree(commit)
        prog = ensure_program(
            tree, cache, compiler_cache_dir=root_conftest.test_cache_dir() / "ccache", build_lock=BUILD_LOCK
        )
        assert prog.standin is not None and prog.standin.single_device and not prog.reads_test_file
        ops = tmp_path / f"{commit}.ops"
        ops.write_text(case_line(tree, case["replay"], str(case["id"])) + "\n")
        run = dry_run(tree, cache, tmp_path / commit, batches=[("ops", ops)], profiles=PROFILES)
        assert [p.profile for p in run.runs[0].results] == PROFILES  # one record each, merged in order
        assert run.runs[0].cases == 1
        seen[commit] = {}
        for p in run.runs[0].results:
            assert sum(p.counts.values()) == 1, p
            f = next(iter((*p.findings, *p.unsupported)), None)
            seen[commit][p.profile] = (
                ("pass", ()) if f is None else (f.verdict, tuple(m.base for m in f.missing))
            )
    kernel = str(case["kernel"])
    assert seen[str(case["git_prefix_commit"])] == dict.fromkeys(PROFILES, ("missing-kernel", (kernel,)))
    assert seen[str(case["git_fixed_commit"])] == dict.fromkeys(PROFILES, ("pass", ()))


_GOOD = {
    "op": "MUL_MAT",
    "srcs": [{"type": "f16", "ne": [64, 100, 1, 1]}, {"type": "f32", "ne": [64, 1, 1, 1]}],
}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({}, "op must be"),
        ({"op": "MUL_MAT"}, "srcs must be"),
        ({"op": "MUL_MAT", "srcs": "abc"}, "srcs must be"),
        ({"op": "MUL_MAT", "srcs": [1, 2]}, "srcs[0] must have a type"),
        ({**_GOOD, "srcs": [{"type": "f16", "ne": [1.5, 2]}, _GOOD["srcs"][1]]}, "whole number"),
        ({**_GOOD, "srcs": [{"type": "f16", "ne": [-1, 100]}, _GOOD["srcs"][1]]}, "whole number"),
        ({**_GOOD, "srcs": [{"type": "f16", "ne": [10**30, 1]}, _GOOD["srcs"][1]]}, "whole number"),
        ({**_GOOD, "srcs": [{"type": "f16", "ne": [4096, 4096, 4096]}, _GOOD["srcs"][1]]}, "elements"),
        ({**_GOOD, "srcs": [{"type": "f16", "ne": [64, 1, 1, 1, 5]}, _GOOD["srcs"][1]]}, "1 to 4 sizes"),
        ({**_GOOD, "srcs": [{"type": "f16\n0 0", "ne": [64]}, _GOOD["srcs"][1]]}, "type name"),
        ({**_GOOD, "dst_type": "f32 9"}, "dst_type"),
        ({**_GOOD, "ne": ["1 2 3"]}, "whole number"),
        ({**_GOOD, "srcs": _GOOD["srcs"] * 6}, "1 to 10 sources"),
        ({**_GOOD, "params": "zz"}, "params must be a table"),
        ({**_GOOD, "params": {"scale": float("nan")}}, "not a finite number"),
        ({**_GOOD, "params": {"op_params": [1 << 40]}}, "32-bit"),
        ({"op": "IM2COL", "srcs": [{"type": "f16", "ne": [3, 3, 1, 1]}]}, "IndexError"),
        ({"op": "MUL_MAT_ID", "srcs": [{"type": "f16", "ne": [64, 100, 1, 1]}]}, "IndexError"),
        ({**_GOOD, "op": "FLASH_ATTN_EXT", "params": {"scale": "1e39"}}, "malformed"),
        ({**_GOOD, "op": "FLASH_ATTN_EXT", "params": {"prec": "f64"}}, "KeyError"),
    ],
)
def test_a_malformed_spec_is_not_replayable_and_says_why(tree_0336: Path, spec: object, reason: str) -> None:
    """A spec from someone else's file (`dryrun history CASES`) never reaches the test file with a
    negative, fractional, huge or extra size, a type name carrying a line break or sources the op
    reads and the spec lacks: refused with the reason (it raised KeyError / IndexError, or wrote
    the line)."""
    assert case_line(tree_0336, _GOOD, "x").endswith(" x")  # the well-formed spec is written
    with pytest.raises(NotReplayable, match="malformed replay spec") as err:
        case_line(tree_0336, spec, "x")  # type: ignore[arg-type]
    assert reason in str(err.value)
