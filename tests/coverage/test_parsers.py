"""test-backend-ops CSV and console parsing (incl. malformed CSV and the NaN trap), scheduler and
eval-callback parsing, NMSE, test-llama-archs rows. Formats checked against the trees' sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.coverage.device import e2e
from toolchain.coverage.device.archs import parse_archs_rows
from toolchain.coverage.device.backend_ops import (
    CSV_FIELDS,
    classify_nan,
    parse_generic_params,
    parse_support_csv,
    parse_test_line,
    parse_test_output,
)

HEADER = '"backend_name","op_name","op_params","test_mode","supported","error_message","backend_reg_name"'
P1 = "name=ffn_up-0,type=f32,ne=[256,256,1,1],op_params=[],sources=q8_0[256,256,1,1],f32[256,256,1,1]"
P2 = "name=norm-0,type=f32,ne=[256,1,1,1],op_params=[0:925353388],sources=f32[256,1,1,1]"
P3 = "name=cache_k_l0 (view),type=f16,ne=[64,256,1,1],op_params=[],sources=f32[64,1,1,1],i64[1,1,1,1]nb[8,8,8,8]"


def test_csv_support_rows_with_exact_shapes() -> None:
    lines = [
        "load_backend: loaded BLAS backend",  # a log line on the merged stream
        HEADER,
        f'"BLAS","MUL_MAT","{P1}","support","1","yes","BLAS"',
        f'"BLAS","RMS_NORM","{P2}","support","0","no","BLAS"',
        f'"BLAS","SET_ROWS","{P3}","support","0","no","BLAS"',
    ]
    parsed = parse_support_csv(lines, backend="BLAS")
    assert parsed.problems == ()
    assert [o.supported for o in parsed.ops] == ["yes", "no", "no"]
    norm = parsed.ops[1]
    assert norm.op == "RMS_NORM" and norm.name == "norm-0"
    assert norm.output is not None and norm.output.type == "f32" and norm.output.ne == (256, 1, 1, 1)
    assert norm.op_params == (0, 925353388)
    mm = parsed.ops[0]
    assert mm.types == ("f32", "q8_0", "f32") and mm.sources[0].ne == (256, 256, 1, 1)
    rows = parsed.ops[2]
    assert rows.name == "cache_k_l0 (view)" and rows.sources[1].nb == (8, 8, 8, 8)
    assert parsed.backend_reg_names == ("BLAS",)


def test_csv_columns_are_found_by_name_not_position() -> None:
    header = '"op_name","supported","op_params","backend_name"'
    parsed = parse_support_csv([header, f'"ADD","0","{P2}","BLAS"'])
    assert parsed.ops[0].op == "ADD" and parsed.ops[0].supported == "no" and parsed.ops[0].params == P2


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([], "no CSV header"),
        ([f'"BLAS","ADD","{P2}","support","1","yes","BLAS"'], "before any header"),
        ([HEADER, '"BLAS","ADD","x","support","1"'], "5 fields, header has 7"),
        ([HEADER, f'"BLAS","ADD","{P2}","support","maybe","?","BLAS"'], "neither 1 nor 0"),
        ([HEADER, '"BLAS","ADD","unterminated'], "not CSV"),
        (['"backend_name","supported"', '"BLAS","1"'], "lacks op_name"),
    ],
)
def test_malformed_csv_is_named_never_guessed(lines: list[str], problem: str) -> None:
    parsed = parse_support_csv(lines)
    assert parsed.ops == ()
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_csv_fields_match_the_trees(tree_0336: Path, tree_0320: Path) -> None:
    """The CSV printer's fields, in get_fields() order filtered by get_fields_csv(), in both trees."""
    import re

    for tree in (tree_0336, tree_0320):
        src = (tree / "tests" / "test-backend-ops.cpp").read_text()
        fields = re.search(
            r"get_fields\(\) \{\s*static const std::vector<std::string> fields = \{(.*?)\};", src, re.S
        )
        csv_fields = re.search(r"get_fields_csv\(\) \{\s*return \{(.*?)\};", src, re.S)
        assert fields and csv_fields, tree
        order = re.findall(r'"(\w+)"', fields.group(1))
        wanted = set(re.findall(r'"(\w+)"', csv_fields.group(1)))
        assert tuple(f for f in order if f in wanted) == CSV_FIELDS
        assert "NaN at index %zu (%s=%f %s=%f)" in src  # the message the NaN trap reads


def test_nan_on_both_sides_is_not_the_backends_fault() -> None:
    assert classify_nan("[SET_ROWS] NaN at index 20 (CPU=nan CPU=nan)", "CPU") == "nan-both"
    assert classify_nan("[NONE] NaN at index 98 (BLAS=-nan CPU=-nan)", "BLAS") == "nan-both"
    assert classify_nan("[ROPE] NaN at index 3 (MTL0=nan CPU=0.5)", "MTL0") is None  # the backend's own NaN
    assert classify_nan("[ROPE] NaN at index 3 (MTL0=0.5 CPU=nan)", "MTL0") == "nan-reference"


@pytest.mark.parametrize(
    ("line", "outcome"),
    [
        # 0.3.36: the compare callback's message comes first, then the case string
        (f"[SET_ROWS] NaN at index 20 (CPU=nan CPU=nan)   RMS_NORM({P2}): \x1b[1;31mFAIL\x1b[0m", "nan-both"),
        # 0.3.20: case string first
        (
            f"  RMS_NORM({P2}): [RMS_NORM] NaN at index 1 (BLAS=-nan CPU=-nan) \x1b[1;31mFAIL\x1b[0m",
            "nan-both",
        ),
        (
            f"[RMS_NORM] NaN at index 1 (BLAS=nan CPU=0.250000)   RMS_NORM({P2}): \x1b[1;31mFAIL\x1b[0m",
            "fail",
        ),
        (
            f"[NONE] NaN at index 1 (BLAS=nan CPU=nan) [RMS_NORM] ERR = 0.1 > 0.0005   RMS_NORM({P2}): FAIL",
            "fail",
        ),
        (f"  RMS_NORM({P2}): [RMS_NORM] ERR = 0.012 > 0.0000001 \x1b[1;31mFAIL\x1b[0m", "fail"),
        (f"  RMS_NORM({P2}): \x1b[1;32mOK\x1b[0m", "ok"),
        (f"  RMS_NORM({P2}): not supported [BLAS] ", "not-supported"),
    ],
)
def test_console_case_lines(line: str, outcome: str) -> None:
    from toolchain.coverage.device.backend_ops import op_result

    known = [op_result("RMS_NORM", P2).key]
    parsed = parse_test_line(line, "BLAS" if "BLAS" in line else "CPU", known)
    assert parsed is not None and parsed.outcome == outcome, parsed
    assert parsed.params == P2


def test_case_names_with_parentheses_match_exactly() -> None:
    from toolchain.coverage.device.backend_ops import op_result

    case = op_result("SET_ROWS", P3)
    out = parse_test_output([f"  SET_ROWS({P3}): \x1b[1;32mOK\x1b[0m"], "CPU", [case])
    assert out[case.key].outcome == "ok"


def test_generic_params_of_builtin_cases_are_kept_raw() -> None:
    assert parse_generic_params("type=f16,ne=[10,5,4,3],nr=[2,1,1,1],nf=1") == {}


def test_scheduler_report_and_fallback_inputs() -> None:
    lines = [
        "0.00.034.563 I sched_reserve: graph (pp bs=256, tg bs=1): nodes = 96 / 96, splits = 30 / 1, input objects = 4",
        "## SPLIT #1: BLAS # 0 inputs0.00.025.799 D ",
        "0.00.018.492 D node #  0 (  GET_ROWS):                 embd (   1K) [  CPU         ] use=2,c=1:",
        "0.00.018.496 D node #  3 (   MUL_MAT):               node_3 ( 256K) [ BLAS         ] use=1,c=1:",
        "0.00.018.496 D node #  4 (FLASH_ATTN):          __fattn__-0 ( 256K) [  CPU         ] use=1,c=1:",
        "0.00.018.497 D node #  5 (  GET_ROWS):             inp_embd (   1K) [  CPU         ] use=1,c=1:",
        "resolve_fused_ops: Flash Attention not supported, set to disabled",
        "common_perf_print: prompt eval time =     226.45 ms /    53 tokens",
    ]
    r = e2e.parse_sched(lines)
    assert (r.splits_pp, r.splits_tg) == (30, 1)
    assert r.nodes_by_backend == {"CPU": 3, "BLAS": 1}
    assert r.cpu_ops == {"GET_ROWS": 1, "FLASH_ATTN": 1}  # inp_* inputs are not fallbacks
    assert r.split_backends == ("BLAS",) and r.prompt_tokens == 53
    assert r.disabled == ("Flash Attention not supported, set to disabled",)


def test_eval_callback_blocks_and_nmse() -> None:
    lines = """common_debug_cb_eval:                   norm-0 = (f32)   RMS_NORM(embd{256, 53, 1, 1}, }) = {256, 53, 1, 1}
    [
        [      0.1000,       0.2000,    ...,      -0.3000  ],
    ]
    sum = 1.5
common_debug_cb_eval:            result_output = (f32)    MUL_MAT(output.weight{256, 128, 1, 1}, result_norm{256, 1, 1, 1}}) = {128, 1, 1, 1}
    [
        [
            [      0.0095,       0.0375,      -0.0899,    ...,      -0.0396,      -nan,      -0.1128  ],
        ],
    ]
    sum = nan""".splitlines()
    nodes = e2e.parse_eval_callback(lines)
    assert [n.name for n in nodes] == ["norm-0", "result_output"]
    out = e2e.output_sample(nodes)
    assert out is not None and len(out.values) == 6
    assert e2e.nmse([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert e2e.nmse([1.0, 0.0], [1.01, 0.0]) == pytest.approx(1e-4)
    assert e2e.nmse([1.0], [float("nan")]) == float("inf")
    assert e2e.nmse_threshold("f16") == 1e-4 and e2e.nmse_threshold("q8_0") == 5e-4
    other = [nodes[0].__class__("norm-0", "RMS_NORM", (), 9.0)]
    assert e2e.first_divergence(nodes, other).startswith("RMS_NORM norm-0")


def test_archs_table_rows() -> None:
    rows = parse_archs_rows(
        [
            "|     Model arch.|  Device|Config|   NMSE vs. CPU|Roundtrip|",
            "|          gemma3|AMD EPYC| Dense|  \x1b[1;32mOK\x1b[0m (2.76e-12)|       \x1b[1;32mOK\x1b[0m|",
            "|          gemma3|OpenBLAS|   MoE|  \x1b[1;31mFAIL\x1b[0m (3.00e-02)|       \x1b[1;32mOK\x1b[0m|",
            "|          gemma3|AMD EPYC| Dense|",  # a row its asynchronous log cut off
        ]
    )
    assert (
        rows[0]["nmse_status"] == "OK" and rows[0]["nmse"] == "2.76e-12" and rows[0]["device"] == "AMD EPYC"
    )
    assert rows[1]["config"] == "MoE" and rows[1]["nmse_status"] == "FAIL"
    assert rows[2]["nmse_status"] == ""


def test_models_from_convert_report(tmp_path: Path) -> None:
    """convert.json as toolchain.convert writes it: results with architecture (the spec), type,
    status, gguf and gguf_architecture."""
    from toolchain.convert.results import Conversion, ConvertResult
    from toolchain.coverage.engine.inputs import from_convert_report
    from toolchain.models.build import ModelSet
    from toolchain.records import CONVERT, write_report

    good = tmp_path / "qwen3-f16.gguf"
    good.write_bytes(b"GGUF")
    other = tmp_path / "distilbert-q8_0.gguf"
    other.write_bytes(b"GGUF")
    results = (
        ConvertResult("qwen3", "Qwen3ForCausalLM", "f16", "pass", good, "qwen3"),
        ConvertResult("distilbert", "DistilBertModel", "q8_0", "pass", other, "bert"),
        ConvertResult("llama", "LlamaForCausalLM", "f16", "error", None, ""),
    )
    conversion = Conversion(tmp_path, "", {}, (), "", ModelSet(tmp_path, (), 0.0), results, 0.0, 0.0)
    report = write_report(tmp_path / CONVERT.name, CONVERT.kind, conversion)
    models = from_convert_report(report)
    assert [(m.architecture, m.weight_type, m.variant, m.label) for m in models] == [
        ("qwen3", "f16", "", "qwen3"),
        ("bert", "q8_0", "distilbert", "bert-distilbert"),
    ]
