"""Facts about Metal support the predictions must reproduce, against the real extracted function.

Each fact is checked on exact tensors: either test-backend-ops' own built-in cases (0.3.36) or
ops lines written with the tree's own enum values and fed through ``--test-file`` (both trees).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.oracle.conftest import ops_line, profiles, write_ops
from toolchain.oracle.probe import Probe, SupportRow, run_support

PROFILES = ("apple7", "apple9", "apple9-nobf16", "paravirtual")


def _fa(tree: Path, hs: int, k_type: str = "f16", v_type: str = "f16", hsv: int | None = None) -> str:
    hsv = hsv or hs
    n_kv, n_batch, n_head = 256, 8, 4
    return ops_line(
        tree,
        "FLASH_ATTN_EXT",
        "f32",
        [hsv, n_head, n_batch, 1],
        [
            ("f32", [hs, n_batch, n_head, 1]),
            (k_type, [hs, n_kv, n_head, 1]),
            (v_type, [hsv, n_kv, n_head, 1]),
            ("f16", [n_kv, n_batch, 1, 1]),
        ],
        params=[1040187392, 0, 0, 0],  # scale 0.125f as bits, max_bias 0, softcap 0, prec default
        name=f"fa-{hs}-{k_type}-{v_type}",
    )


def _mul_mat(tree: Path, a: str, b: str, n: int, k: int = 256, m: int = 64) -> str:
    return ops_line(
        tree, "MUL_MAT", "f32", [m, n, 1, 1], [(a, [k, m, 1, 1]), (b, [k, n, 1, 1])], name=f"mm-{a}-{b}-{n}"
    )


def _concat(tree: Path, b: str, name: str) -> str:
    """CONCAT along dim 1 of an f32 tensor and a ``b`` one."""
    return ops_line(
        tree,
        "CONCAT",
        "f32",
        [64, 16, 1, 1],
        [("f32", [64, 8, 1, 1]), (b, [64, 8, 1, 1])],
        params=[1],
        name=name,
    )


def _cases(tree: Path) -> list[str]:
    return [
        _fa(tree, 128),  # 0 head size 128
        _fa(tree, 16),  # 1 head size 16: no kernel
        _fa(tree, 128, "f16", "f32"),  # 2 K and V of different types
        _mul_mat(tree, "f32", "f32", 1),  # 3 plain MUL_MAT
        _mul_mat(tree, "bf16", "f32", 16),  # 4 a bf16 weight
        ops_line(
            tree,
            "SOFT_MAX",
            "f32",
            [64, 8, 1, 1],
            [("f32", [64, 8, 1, 1])],
            params=[1065353216, 0],
            name="sm",
        ),  # 5
        ops_line(
            tree, "RMS_NORM", "f32", [64, 8, 1, 1], [("f32", [64, 8, 1, 1])], params=[925353388], name="norm"
        ),  # 6
        _concat(tree, "f16", "cat-mixed"),  # 7
        _concat(tree, "f32", "cat"),  # 8
    ]


def _predict(probe: Probe, tree: Path, tmp_path: Path) -> dict[str, list[SupportRow]]:
    ops = write_ops(tmp_path / "facts.txt", _cases(tree))
    chosen = [profiles(tree, probe)[n] for n in PROFILES]
    rows = run_support(probe, chosen, tmp_path, test_file=ops)
    out: dict[str, list[SupportRow]] = {}
    for r in rows:
        out.setdefault(r.backend, []).append(r)
    assert all(len(v) == len(_cases(tree)) for v in out.values()), {k: len(v) for k, v in out.items()}
    return out


@pytest.fixture(params=["0336", "0320"])
def facts(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, list[bool]]:
    tree: Path = request.getfixturevalue(f"tree_{request.param}")
    probe: Probe = request.getfixturevalue(f"probe_{request.param}")
    return {name: [r.supported for r in rows] for name, rows in _predict(probe, tree, tmp_path).items()}


def test_flash_attn_head_size_128_accepted(facts: dict[str, list[bool]]) -> None:
    assert facts["apple7"][0] and facts["apple9"][0]


def test_flash_attn_head_size_16_rejected(facts: dict[str, list[bool]]) -> None:
    assert not any(facts[p][1] for p in PROFILES)


def test_flash_attn_k_v_of_different_types_rejected(facts: dict[str, list[bool]]) -> None:
    assert not any(facts[p][2] for p in PROFILES)


def test_flash_attn_needs_simdgroup_mm(facts: dict[str, list[bool]]) -> None:
    assert not facts["paravirtual"][0]


def test_mul_mat_rejected_on_paravirtual(facts: dict[str, list[bool]]) -> None:
    assert facts["apple7"][3] and not facts["paravirtual"][3]


def test_bf16_weight_needs_bfloat(facts: dict[str, list[bool]]) -> None:
    assert facts["apple9"][4] and not facts["apple9-nobf16"][4]


def test_softmax_and_rms_norm_need_simdgroup_reduction(facts: dict[str, list[bool]]) -> None:
    assert facts["apple7"][5] and facts["apple7"][6]
    assert not facts["paravirtual"][5] and not facts["paravirtual"][6]


def test_concat_of_mixed_types(facts: dict[str, list[bool]], request: pytest.FixtureRequest) -> None:
    """0.3.36 rejects CONCAT of an f32 and an f16 source; 0.3.20 accepted every CONCAT: the trees
    differ, which is why the oracle follows the pinned tree."""
    assert facts["apple9"][8]
    assert facts["apple9"][7] is (request.node.callspec.params["facts"] == "0320")


# --- over every built-in case of 0.3.36 -----------------------------------------------------------


def test_every_bf16_case_rejected_without_bfloat(support_0336: dict[str, list[SupportRow]]) -> None:
    # a bf16 tensor reaches the node supports_op sees (a bf16 conv kernel is im2col'd first: not counted)
    bf16 = re.compile(r"(^|,)(type|type_a|type_b|type_src|type_dst|type_K|type_V)=bf16(,|$)")
    with_bf = [r for r in support_0336["apple9"] if bf16.search(r.case)]
    without = [r for r in support_0336["apple9-nobf16"] if bf16.search(r.case)]
    assert len(with_bf) > 100 and sum(r.supported for r in with_bf) > 50
    assert [f"{r.op} {r.case}" for r in without if r.supported] == []
    # and bfloat changes nothing else
    changed = {
        f"{a.op} {a.case}"
        for a, b in zip(support_0336["apple9"], support_0336["apple9-nobf16"], strict=True)
        if a.supported != b.supported
    }
    assert changed and all("bf16" in c for c in changed)


def test_every_mul_mat_rejected_on_paravirtual(support_0336: dict[str, list[SupportRow]]) -> None:
    mm = [r for r in support_0336["paravirtual"] if r.op in ("MUL_MAT", "MUL_MAT_ID")]
    assert len(mm) > 1000 and not any(r.supported for r in mm)


def test_mul_mat_f16_src1_small_batch_needs_the_mm_path(support_0336: dict[str, list[SupportRow]]) -> None:
    """0.3.36: a quantized weight times an f16 activation only on the simdgroup-mm path (ne11 > 8)."""
    rows = [
        r
        for r in support_0336["apple9"]
        if r.op == "MUL_MAT" and r.case.startswith("type_a=q4_0,type_b=f16,")
    ]
    small = [r for r in rows if ",n=1," in r.case]
    large = [r for r in rows if ",n=16," in r.case or ",n=32," in r.case]
    assert small and large
    assert not any(r.supported for r in small)
    assert any(r.supported for r in large)


def test_get_rows_rejects_tq1_0(support_0336: dict[str, list[SupportRow]]) -> None:
    rows = [r for r in support_0336["apple9"] if r.op == "GET_ROWS"]
    assert not any(r.supported for r in rows if r.case.startswith("type=tq1_0,"))
    assert all(r.supported for r in rows if r.case.startswith("type=q4_0,"))
