"""False findings the coverage stage must not report: the harness's own traps.

test-backend-ops runs each exported op out of its graph on random inputs. Integer index sources
(GET_ROWS' rows) then point outside the source tensor and the CPU reference's bounds check aborts:
that is the harness, like the NaN-on-both-sides trap, not the backend under test.
"""

from pathlib import Path

from toolchain.core.isolate import Outcome
from toolchain.coverage.device.op_columns import harness_index_crash as _harness_index_crash
from toolchain.coverage.engine.opsfile import contiguous_index_views, ggml_ids
from toolchain.coverage.records import OpResult, TensorShape

ABORT = "../../src/ggml/src/ggml-cpu/ops.cpp:5363: GGML_ASSERT(i01 >= 0 && i01 < ne01) failed"


def outcome(*lines: str) -> Outcome:
    return Outcome(("test-backend-ops", "test"), "crash", -6, 0.1, lines, (), "/dev/null", 0, lines)


def op(*source_types: str) -> OpResult:
    return OpResult(
        "GET_ROWS",
        "type=f32,ne=[1,2,4,1]",
        sources=tuple(TensorShape(t, (1, 4, 4, 1)) for t in source_types),
    )


def test_random_indices_crashing_the_cpu_reference_are_the_harness() -> None:
    why = _harness_index_crash(outcome(ABORT), op("f32", "i32"))
    assert why.startswith("harness, not the backend: GET_ROWS")
    assert "ggml-cpu/ops.cpp:5363" in why


def test_a_real_crash_stays_a_crash() -> None:
    # an abort in a GPU backend's code, or in an op without index sources, is a finding
    assert (
        _harness_index_crash(outcome("ggml-metal-ops.cpp:120: GGML_ASSERT(x < ne0) failed"), op("f32", "i32"))
        == ""
    )
    assert _harness_index_crash(outcome(ABORT), op("f32", "f32")) == ""
    assert _harness_index_crash(outcome("Segmentation fault"), op("f32", "i32")) == ""
    assert _harness_index_crash(outcome(ABORT), None) == ""


def test_accel_device_run_keeps_weights_out_of_the_cpus_extra_buffers() -> None:
    """On a host with AMX (or repacked CPU layouts) the CPU's extra buffer type takes the matrix
    weights and BLAS gets no node: the device run asks for plain host buffers where it can."""
    from toolchain.coverage.engine.backends import backend

    blas = backend("BLAS")
    assert "--no-repack" in blas.device_args(("-v", "--no-repack"))
    assert "--no-repack" not in blas.device_args(("-v",)), "only where the tree's runner has the flag"
    assert "--no-repack" not in backend("CPU").device_args(("--no-repack",))


# Two lines test-export-graph-ops of the 0.3.36 tree wrote for a MoE model (4 experts, top-2):
# GET_ROWS picks the routing weights with a strided view of the argsort (i32[2,512] nb[4,16,…]).
MOE_LINES = (
    "40 0 1 2 512 1 16 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 2 0 1 4 512 1 4 4 16 8192 "
    "26 2 512 1 1 4 16 8192 8192 ffn_moe_weights-0\n"
    "40 0 256 1 1 1 16 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 2 0 256 128 1 1 4 1024 131072 131072 "
    "26 1 1 1 1 4 4 4 4 embd\n"
)


def test_strided_get_rows_indices_are_made_contiguous_and_nothing_else(tree_0336: Path) -> None:
    op_ids, type_ids = ggml_ids(tree_0336)
    assert op_ids["GGML_OP_GET_ROWS"] == 40 and type_ids["GGML_TYPE_I32"] == 26
    done = contiguous_index_views(MOE_LINES, op_ids, type_ids)
    assert done.rewritten == ("GET_ROWS(name=ffn_moe_weights-0)",)
    before, after = MOE_LINES.splitlines(), done.text.splitlines()
    assert after[1] == before[1]  # a contiguous index stays as exported
    a, b = before[0].split(), after[0].split()
    # everything but the index source's strides is kept: op, types, shapes, params, src0 and its strides
    assert a[:-5] == b[:-5] and a[-1] == b[-1]
    assert b[-5:-1] == ["4", "8", "4096", "4096"]  # dense i32[2,512]
    # an op that fills its integer sources row by row (MUL_MAT_ID, SET_ROWS) is left alone
    mmid = MOE_LINES.replace("40 0 1 2 512", f"{op_ids['GGML_OP_MUL_MAT_ID']} 0 1 2 512", 1)
    assert contiguous_index_views(mmid, op_ids, type_ids).rewritten == ()


def test_ids_are_read_from_the_tree_or_not_at_all(tmp_path: Path) -> None:
    (tmp_path / "ggml" / "include").mkdir(parents=True)
    (tmp_path / "ggml" / "include" / "ggml.h").write_text(
        "enum ggml_op { GGML_OP_NONE = 0, GGML_OP_X = FOO, };"
    )
    assert ggml_ids(tmp_path)[0] == {}  # not understood: no ids, so no rewrite
    assert contiguous_index_views(MOE_LINES, {}, {}).text == MOE_LINES


def test_the_plain_cpu_switch_is_what_the_tree_reads(tree_0336: Path) -> None:
    """The reference, the op export and the load check turn the CPU's extra buffer types off with
    LLAMA_ARG_REPACK=false (on AMX hosts they crash or abort the scheduler): the tree must read
    that variable for --repack/--no-repack and take "false" as off, or the switch is silently inert."""
    import re

    from toolchain.core.tree import PLAIN_CPU_ENV

    arg = (tree_0336 / "common" / "arg.cpp").read_text(encoding="utf-8")
    block = re.search(r'\{"--repack"\},\s*\{"-nr", "--no-repack"\}.*?set_env\("(\w+)"\)', arg, re.S)
    assert block and block.group(1) in PLAIN_CPU_ENV
    assert "no_extra_bufts = !value" in block.group(0)
    falsey = re.search(r"bool common_arg_utils::is_falsey\(.*?\{(.*?)\}", arg, re.S)
    assert falsey and f'"{PLAIN_CPU_ENV[block.group(1)]}"' in falsey.group(1)
