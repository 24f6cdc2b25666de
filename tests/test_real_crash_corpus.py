"""The real-crash corpus (fixtures/real_crashes/corpus.toml): its schema, and its version pairs
checked against the sdist trees themselves.

The schema tests read only the TOML. The tree tests read the Metal files straight out of the
llama-cpp-python sdists (no unpacking, no build): the two pinned ones of the test cache by default,
every sdist 0.3.17 … 0.3.36 in the slow test.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from fixtures.real_crashes.corpus import (
    MetalTree,
    boundary_failures,
    check_git_pairs,
    check_markers,
    load,
    schema_errors,
    sdist_versions,
    version_key,
)
from fixtures.upstream.build_upstream import DEFAULT_VERSIONS, fetch_sdists
from tests.conftest import test_cache_dir as shared_test_cache
from tests.dryrun.conftest import ggml_git_tree
from toolchain.dryrun.standin import generate
from toolchain.oracle.extract import extract


@pytest.fixture(scope="module")
def corpus() -> dict[str, Any]:
    return load()


def test_schema_is_clean(corpus: dict[str, Any]) -> None:
    assert schema_errors(corpus) == []


def test_size_and_classes(corpus: dict[str, Any]) -> None:
    cases = corpus["case"]
    assert len(cases) >= 12
    assert len({c["class"] for c in cases}) >= 5
    assert set(corpus["classes"]) == {c["class"] for c in cases}
    # issue #27's two named crashes are in, with the kernel names as the source spells them
    by_id = {c["id"]: c for c in cases}
    assert by_id["mv-f32-f16-4"]["kernel"] == "kernel_mul_mv_f32_f16_4"
    assert by_id["fa-dk96-dv64-vec"]["kernel"] == "kernel_flash_attn_ext_vec_f16_dk96_dv64"
    for case in (by_id["mv-f32-f16-4"], by_id["fa-dk96-dv64-vec"]):
        assert version_key(case["prefix_version"]) >= (0, 3, 30) > version_key(case["first_affected_version"])
        assert case["fixed_version"] == "0.3.36"


def _broken(corpus: dict[str, Any], case_id: str, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(corpus)
    case = next(c for c in data["case"] if c["id"] == case_id)
    for key, value in changes.items():
        if value is None:
            del case[key]
        else:
            case[key] = value
    return data


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"prefix_version": "0.3.36"}, "is not before fixed_version"),
        ({"fixed_version": "0.3.40"}, "outside the sdists"),
        ({"class": "shaders"}, "class 'shaders' not one of"),
        ({"evidence": None}, "missing evidence"),
        ({"fixed_version": "", "fixed_reason": ""}, "fixed_version empty without fixed_reason"),
        ({"sources": ["https://example.com/thread"]}, "GitHub issue/PR addresses"),
        ({"replayable": False, "replay_reason": ""}, "needs replay_reason"),
        ({"title": "Error Domain=MTLLibraryErrorDomain Code=5"}, "pasted log text"),
    ],
)
def test_schema_check_catches(corpus: dict[str, Any], changes: dict[str, Any], expected: str) -> None:
    errors = schema_errors(_broken(corpus, "fa-dk96-dv64-vec", **changes))
    assert any(expected in e for e in errors), errors


def _trees(versions: tuple[str, ...]) -> dict[str, MetalTree]:
    return {v: MetalTree.from_sdist(v, p) for v, p in fetch_sdists(versions, shared_test_cache()).items()}


@pytest.fixture(scope="module")
def pinned_trees() -> dict[str, MetalTree]:
    return _trees(DEFAULT_VERSIONS)


def test_markers_hold_on_pinned_sdists(corpus: dict[str, Any], pinned_trees: dict[str, MetalTree]) -> None:
    made, failures = check_markers(corpus["case"], pinned_trees)
    assert failures == []
    assert made >= 30  # 0.3.20 is inside most crash windows, 0.3.36 after most fixes


def test_marker_check_fails_on_a_wrong_fact(
    corpus: dict[str, Any], pinned_trees: dict[str, MetalTree]
) -> None:
    data = copy.deepcopy(corpus)
    case = next(c for c in data["case"] if c["id"] == "fa-dk96-dv64-vec")
    case["fixed_version"] = "0.3.20"  # claim the fix is already in 0.3.20: the fixed marker must fail there
    _, failures = check_markers([case], pinned_trees)
    assert any("kernel_flash_attn_ext_vec_f16_dk96_dv64" in f and "0.3.20" in f for f in failures)


@pytest.mark.slow
def test_version_pairs_on_every_sdist(corpus: dict[str, Any]) -> None:
    """Every marker on every C++-Metal sdist, and each prefix→fixed pair evidenced at its boundary."""
    trees = _trees(tuple(sdist_versions("0.3.17", "0.3.36")))
    made, failures = check_markers(corpus["case"], trees)
    assert failures == []
    assert made >= 400
    pairs, boundary = boundary_failures(corpus["case"], trees)
    assert boundary == []
    assert pairs == sum(1 for c in corpus["case"] if c["prefix_version"] and c["fixed_version"])


# a ggml-org/ggml clone (the session's snapshot by default); the git pairs need its history
GGML_GIT = Path(os.environ.get("TOOLCHAIN_GGML_GIT", "/work/.mirror/ggml-org+ggml/repo"))


@pytest.mark.skipif(not (GGML_GIT / "HEAD").is_file(), reason=f"no ggml-org/ggml clone at {GGML_GIT}")
def test_git_pairs_on_ggml_history(corpus: dict[str, Any]) -> None:
    """Cases whose crash window holds no sdist: crash facts at git_prefix_commit, fix at git_fixed_commit."""
    made, failures = check_git_pairs(corpus["case"], GGML_GIT)
    assert failures == []
    assert made >= 12
    swapped = copy.deepcopy(next(c for c in corpus["case"] if c["id"] == "moe-ne20-5"))
    swapped["git_prefix_commit"], swapped["git_fixed_commit"] = (
        swapped["git_fixed_commit"],
        swapped["git_prefix_commit"],
    )
    _, wrong = check_git_pairs([swapped], GGML_GIT)
    assert any("kernel_mul_mm_id_map0_ne20_5" in f for f in wrong)


def test_readme_documents_every_field(corpus: dict[str, Any]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "fixtures" / "real_crashes" / "README.md").read_text()
    for field in corpus["case"][0]:
        assert f"`{field}`" in readme, field


@pytest.mark.skipif(not (GGML_GIT / "HEAD").is_file(), reason=f"no ggml-org/ggml clone at {GGML_GIT}")
def test_replayable_git_pairs_have_a_dry_run_on_both_trees(corpus: dict[str, Any]) -> None:
    """A replayable case replayed on its ggml pair (bench/replay_corpus.py) needs the dry run on both
    commits: the stand-in follows each tree (no refusal; generated, nothing compiled). moe-ne20-5's
    pair is single-device (one dry-run process per profile) with a test-backend-ops that predates
    --test-file (the driver reads the line)."""
    pairs = [
        c for c in corpus["case"] if c["replayable"] and c["git_prefix_commit"] and c["git_fixed_commit"]
    ]
    assert {c["id"] for c in pairs} >= {"moe-ne20-5", "mmid-q1_0-f32"}
    single: dict[str, bool] = {}
    for case in pairs:
        for commit in (case["git_prefix_commit"], case["git_fixed_commit"]):
            tree = ggml_git_tree(commit)
            standin = generate(tree, [f.name for f in extract(tree).props_fields])  # raises when refused
            single[commit] = standin.single_device
            reads = "--test-file" in (tree / "tests" / "test-backend-ops.cpp").read_text(encoding="utf-8")
            assert reads == (commit not in ("bce8a97c", "b53073cc")), commit
    assert single["bce8a97c"] and single["b53073cc"]
    assert not single["91dc6fc4"] and not single["460533c1"]
