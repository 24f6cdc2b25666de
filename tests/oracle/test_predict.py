"""``predict``: a model's exported graph ops, per GPU family, as the coverage stage consumes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.oracle.conftest import FIXTURES, ops_line, write_ops
from toolchain.errors import OracleUnavailableError, UsageError
from toolchain.oracle import OBSERVED_BY, predict
from toolchain.oracle.probe import Probe

TINY = (
    FIXTURES / "tiny-llama-0.3.36.ops.txt"
)  # test-export-graph-ops of the verify stage's tiny llama, 0.3.36


def test_tiny_llama_per_family(probe_0336: Probe, tree_0336: Path, oracle_cache: Path) -> None:
    preds = predict(
        TINY,
        tree_0336,
        cache_dir=oracle_cache,
        profiles=["apple7", "apple9", "paravirtual"],
        commit="0c1e57098",
    )
    assert preds.observed_by == OBSERVED_BY == "predicted-from-source"
    assert preds.commit == "0c1e57098" and "not an observation" in preds.statement.lower()
    assert [p.column for p in preds.profiles] == [
        "metal-predicted:apple7",
        "metal-predicted:apple9",
        "metal-predicted:paravirtual",
    ]
    lines = [ln for ln in TINY.read_text().splitlines() if ln.strip()]
    for p in preds.profiles:
        assert len(p.ops) == len(lines)
        assert [o.line for o in p.ops] == list(range(1, len(lines) + 1))
    by_profile = {p.profile: p for p in preds.profiles}
    m1 = by_profile["apple7"]
    assert m1.unsupported == 0, [o.case for o in m1.ops if not o.supported]
    pv = by_profile["paravirtual"]
    rejected = {o.op for o in pv.ops if not o.supported}
    assert {"MUL_MAT", "RMS_NORM", "FLASH_ATTN_EXT"} <= rejected  # the tiny llama uses flash attention
    first = m1.ops[0]
    assert (first.op, first.name, first.type, first.ne) == ("ADD", "ffn_inp-0", "f32", "[64,1,1,1]")
    assert first.sources == "f32[64,1,1,1],f32[64,1,1,1]" and first.source_strides == ("[4,256,256,256]",) * 2
    props = {v.name: v for v in pv.props}
    assert props["has_simdgroup_reduction"].value == "0" and props[
        "has_simdgroup_reduction"
    ].source.startswith("tree ")
    assert any(c.name == "ggml_metal_device_supports_op" for c in preds.probe.cut)


def test_exact_shapes_decide(probe_0336: Probe, tree_0336: Path, oracle_cache: Path, tmp_path: Path) -> None:
    """The same op at two head sizes: only the shape differs, and so does the verdict."""

    def fa(hs: int) -> str:
        return ops_line(
            tree_0336,
            "FLASH_ATTN_EXT",
            "f32",
            [hs, 4, 8, 1],
            [
                ("f32", [hs, 8, 4, 1]),
                ("f16", [hs, 256, 4, 1]),
                ("f16", [hs, 256, 4, 1]),
                ("f16", [256, 8, 1, 1]),
            ],
            params=[1040187392, 0, 0, 0],
            name=f"fa{hs}",
        )

    ops = write_ops(tmp_path / "fa.txt", [fa(128), fa(16)])
    preds = predict(ops, tree_0336, cache_dir=oracle_cache, profiles=["apple9"])
    assert [o.supported for o in preds.profiles[0].ops] == [True, False]
    assert preds.profiles[0].ops[1].name == "fa16"


def test_missing_ops_file(tree_0336: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="test-export-graph-ops"):
        predict(tmp_path / "nope.txt", tree_0336, cache_dir=tmp_path)


def test_unavailable_oracle_is_a_typed_error(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "tests").mkdir(parents=True)
    (tree / "tests" / "test-backend-ops.cpp").write_text("")
    ops = write_ops(tmp_path / "ops.txt", ["0 0 1 1 1 1 0 0 -"])
    with pytest.raises(OracleUnavailableError) as err:
        predict(ops, tree, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == 70 and "ggml-metal-device.m is missing" in str(err.value)
