"""The normalisation rules that make upstream's support CSV and the tree's cases comparable."""

from __future__ import annotations

from pathlib import Path

from toolchain.oracle.normalise import (
    Normaliser,
    apply_renames,
    join_case,
    literal_to_var,
    make_normaliser,
    split_case,
    tree_defaults,
)


def test_split_keeps_brackets_together() -> None:
    assert split_case("type=f32,ne=[4,5,6,7],nr23=[1,1],v=0") == (
        ("type", "f32"),
        ("ne", "[4,5,6,7]"),
        ("nr23", "[1,1]"),
        ("v", "0"),
    )
    assert join_case(split_case("a=1,b=[1,2]")) == "a=1,b=[1,2]"
    assert split_case("") == ()


def test_renames_in_place() -> None:
    fa = split_case("hsk=128,type_KV=q8_0,permute=[0,1,2,3]")
    assert (
        join_case(apply_renames("FLASH_ATTN_EXT", fa)) == "hsk=128,type_K=q8_0,type_V=q8_0,permute=[0,1,2,3]"
    )
    cpy = split_case("type_src=f32,type_dst=f16,ne=[256,4,4,4]")
    assert join_case(apply_renames("CPY", cpy)) == "type_src=f32,type_dst=f16,ne_src=[256,4,4,4]"
    rows = split_case("type=q8_0,type_idx=i64,ne=[1,2,3,4]")
    assert (
        join_case(apply_renames("SET_ROWS", rows)) == "type_src=f32,type_dst=q8_0,type_idx=i64,ne=[1,2,3,4]"
    )
    # only for the op the rule names
    assert apply_renames("GET_ROWS", rows) == rows


def test_literals_print_like_test_backend_ops() -> None:
    assert literal_to_var("false") == "0"
    assert literal_to_var("true") == "1"
    assert literal_to_var("0") == "0"
    assert literal_to_var("1.0f") == "1.000000"
    assert literal_to_var("GGML_TYPE_F32") == "f32"
    assert literal_to_var("GGML_TYPE_Q4_K") == "q4_K"
    assert literal_to_var("GGML_PREC_DEFAULT") == "def"
    assert literal_to_var("some_call") is None


def test_defaults_are_read_from_constructor_signatures() -> None:
    src = (
        "test_mul_mat(ggml_type type_a = GGML_TYPE_F32, int64_t k_v = 0, bool src_overlap = false, int64_t m_v = 0)\n"
        "test_flash_attn_ext(bool kv_view = true, int64_t n_kv_max = 0)\n"
    )
    d = tree_defaults([src])
    assert d["src_overlap"] == {"0"} and d["kv_view"] == {"1"} and d["type_a"] == {"f32"}


def test_tree_defaults_from_the_real_tree(tree_0336: Path) -> None:
    d = tree_defaults([(tree_0336 / "tests" / "test-backend-ops.cpp").read_text()])
    for name, value in [
        ("src_overlap", "0"),
        ("m_v", "0"),
        ("n_offs", "0"),
        ("kv_view", "1"),
        ("kernel_offset", "0"),
    ]:
        assert value in d[name], name


def test_new_parameter_dropped_only_at_its_default() -> None:
    csv = [("MUL_MAT", "type_a=f16,m=16,o=1")]
    tree = [
        ("MUL_MAT", "type_a=f16,m=16,o=1,src_overlap=0"),
        ("MUL_MAT", "type_a=f16,m=16,o=1,src_overlap=1"),
    ]
    n = make_normaliser([csv, tree], ["bool src_overlap = false,"])
    assert n.canonical("MUL_MAT", csv[0][1]) == ("type_a=f16,m=16,o=1", None)
    assert n.canonical("MUL_MAT", tree[0][1]) == ("type_a=f16,m=16,o=1", None)
    key, blocker = n.canonical("MUL_MAT", tree[1][1])
    assert key == "type_a=f16,m=16,o=1,src_overlap=1" and blocker and "src_overlap=1" in blocker


def test_parameters_both_sides_have_are_never_dropped() -> None:
    n = make_normaliser([[("ADD", "type=f32,v=0")], [("ADD", "type=f32,v=0")]], ["bool v = false,"])
    assert n.canonical("ADD", "type=f32,v=0") == ("type=f32,v=0", None)


def test_ops_one_side_lacks_are_left_as_they_are() -> None:
    n = make_normaliser([[("ADD", "type=f32")], [("NEW_OP", "nb=1,x=2")]], ["int nb = 1,"])
    assert n.canonical("NEW_OP", "nb=1,x=2") == ("nb=1,x=2", None)


def test_renamed_csv_case_meets_the_tree_case() -> None:
    csv = [("FLASH_ATTN_EXT", "hsk=64,type_KV=f16,permute=[0,1,2,3]")]
    tree = [("FLASH_ATTN_EXT", "hsk=64,type_K=f16,type_V=f16,permute=[0,1,2,3],kv_view=1,n_kv_max=0")]
    n: Normaliser = make_normaliser([csv, tree], ["bool kv_view = true, int64_t n_kv_max = 0)"])
    assert (
        n.canonical(*csv[0])[0]
        == n.canonical(*tree[0])[0]
        == "hsk=64,type_K=f16,type_V=f16,permute=[0,1,2,3]"
    )
