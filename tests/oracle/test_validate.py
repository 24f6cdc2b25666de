"""The oracle against the tree's real-device op table docs/ops/Metal.csv (issue #10)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.oracle.conftest import profiles
from toolchain.oracle import validate_tree
from toolchain.oracle.probe import Probe
from toolchain.oracle.profiles import GPUFamily, device_rules, make_profile


@pytest.fixture(scope="module")
def validation_0336(tree_0336: Path, tree_0320: Path, probes_for_validation: Path):  # type: ignore[no-untyped-def]
    return validate_tree(tree_0336, cache_dir=probes_for_validation, older_tree=tree_0320, commit="0c1e57098")


def test_metal_validation_on_the_default_pin(validation_0336) -> None:  # type: ignore[no-untyped-def]
    v = validation_0336
    m = v.metal
    assert v.ok and m.status == "ok", m.reason
    assert m.matched >= 15_000
    assert m.best_agreement >= 0.95
    assert m.unexplained == 0
    # every disagreement is listed with its case string and explained
    assert len(m.disagreements) == sum(sum(ops.values()) for ops in m.explanations.values())
    assert all(d.case and d.explanation == "stale-csv" for d in m.disagreements)
    # the CSV's device had simdgroup mm and bfloat: the full-feature profiles tie at the top
    assert "apple9" in m.best_profiles and not any(p.endswith("-nobf16") for p in m.best_profiles)
    rates = {a.profile: a.agreement for a in m.profiles}
    assert rates["paravirtual"] < 0.7 and rates["apple9-nobf16"] < rates["apple9"]
    # unmatched are counted with reasons, and reference + matched + unmatched add up
    ref_unmatched = sum(u.count for u in m.unmatched if u.side == "reference")
    assert m.matched + ref_unmatched == m.reference_cases
    assert all(u.reason for u in m.unmatched)
    assert {o.op for o in m.per_op} >= {"MUL_MAT", "FLASH_ATTN_EXT", "ROPE"}


def test_wrong_profile_fails_validation(
    tree_0336: Path, tree_0320: Path, probes_for_validation: Path, probe_0336: Probe
) -> None:
    """An "M-series" profile without simdgroup matrix multiply: plausible, wrong, and caught."""
    wrong_family = GPUFamily(
        "wrong", "Apple6 + Metal3, no simdgroup mm", "Apple Wrong", ("Apple6", "Metal3"), "test", 32768, True
    )
    wrong = make_profile(
        wrong_family,
        "",
        device_rules(tree_0336),
        probe_0336.extraction.props_fields,
        probe_0336.extraction.props_used,
    )
    assert wrong.prop("has_simdgroup_mm") == "0" and wrong.prop("has_simdgroup_reduction") == "1"
    v = validate_tree(tree_0336, cache_dir=probes_for_validation, older_tree=tree_0320, profiles=[wrong])
    assert not v.ok and v.metal.status == "failed"
    assert v.metal.unexplained > 0 and "unexplained" in v.metal.reason


def test_paravirtual_alone_fails_on_agreement(
    tree_0336: Path, tree_0320: Path, probes_for_validation: Path
) -> None:
    v = validate_tree(
        tree_0336, cache_dir=probes_for_validation, older_tree=tree_0320, profiles=["paravirtual"]
    )
    assert not v.ok and "best agreement" in v.metal.reason


def test_without_an_older_tree_disagreements_stay_unexplained(
    tree_0336: Path, probes_for_validation: Path
) -> None:
    v = validate_tree(tree_0336, cache_dir=probes_for_validation, profiles=["apple9"])
    assert not v.ok and v.metal.unexplained == len(v.metal.disagreements) > 0
    assert "no older tree given" in v.metal.disagreements[0].detail


def test_tree_without_metal_csv_is_skipped(tree_0336: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "ggml").mkdir(parents=True)
    v = validate_tree(tree, cache_dir=tmp_path / "cache")
    assert v.ok and v.metal.status == "skipped" and "docs/ops/Metal.csv" in v.metal.reason
    assert v.probe is None


def test_0320_has_its_own_table(tree_0320: Path, probe_0320: Probe, oracle_cache: Path) -> None:
    """The older tree validates against its own Metal.csv (no older tree: staleness not checked)."""
    v = validate_tree(tree_0320, cache_dir=oracle_cache, profiles=["apple9"], min_agreement=0.0)
    assert v.metal.matched > 10_000
    assert v.metal.best_agreement > 0.9


@pytest.mark.slow  # coverage_build builds llama.cpp
def test_blas_and_cpu_measured_against_upstream(
    coverage_build: Path, tree_0336: Path, probes_for_validation: Path
) -> None:
    """This machine's test-backend-ops vs docs/ops/BLAS.csv and CPU.csv."""
    v = validate_tree(
        tree_0336,
        cache_dir=probes_for_validation,
        older_tree=None,
        profiles=["apple9"],
        measured_build=coverage_build,
        min_agreement=0.0,
    )
    by = {t.backend: t for t in v.measured}
    assert (coverage_build / "bin" / "test-backend-ops").is_file()
    for name in ("BLAS", "CPU"):
        t = by[name]
        assert t.status == "reported" and t.observed_by == "device"
        assert t.matched > 10_000 and t.best_agreement > 0.99
        assert all(d.explanation == "measured-difference" for d in t.disagreements)


def test_measured_skipped_without_a_build(tree_0336: Path, tmp_path: Path) -> None:
    shutil.copytree(tree_0336 / "docs" / "ops", tmp_path / "tree" / "docs" / "ops", dirs_exist_ok=True)
    (tmp_path / "tree" / "docs" / "ops" / "Metal.csv").unlink()
    v = validate_tree(tmp_path / "tree", cache_dir=tmp_path / "cache", measured_build=tmp_path)
    assert [t.status for t in v.measured] == ["skipped", "skipped"]
    assert "no test-backend-ops" in v.measured[0].reason


def test_profiles_helper(tree_0336: Path, probe_0336: Probe) -> None:
    assert "paravirtual" in profiles(tree_0336, probe_0336)
