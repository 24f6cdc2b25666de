"""Identical op cases share one measurement per run and backend (toolchain/coverage/engine/cases.py):
the line grammar, what is shared and what never is."""

from __future__ import annotations

from toolchain.coverage.engine.cases import CaseMemo, split_case
from toolchain.coverage.records import OpResult

# lines as test-export-graph-ops writes them (0.3.36 tree): ADD with two sources, a SET_ROWS into a
# named view (the name has a space: the tool reads its first word) and one with no name
ADD = "2 0 512 256 1 1 16 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 2 0 512 256 1 1 4 2048 524288 524288 0 512 256 1 1 4 2048 524288 524288 ffn_inp-0"
VIEW = (
    "42 1 128 256 1 1 0 2 0 128 256 1 1 4 512 131072 131072 26 256 1 1 1 8 2048 2048 2048 cache_k_l0 (view)"
)
NONAME = "7 0 512 1 1 1 0 1 0 512 1 1 1 4 2048 2048 2048 -"


def _op(name: str, test: str = "not-run", message: str = "") -> OpResult:
    return OpResult("ADD", f"name={name}", name=name, test=test, message=message)  # type: ignore[arg-type]


def test_a_line_splits_into_its_case_and_the_name_the_tool_reads() -> None:
    case, name = split_case(ADD)
    assert name == "ffn_inp-0" and case == ADD.rsplit(" ", 1)[0]
    assert split_case(ADD.replace("ffn_inp-0", "attn_out-3"))[0] == case  # another name, same case
    assert split_case(ADD.replace(" 512 256 1 1 16", " 512 255 1 1 16"))[0] != case
    case, name = split_case(VIEW)
    assert name == "cache_k_l0" and case.endswith("2048 2048 2048")
    assert split_case(NONAME) == (NONAME[:-2], "")
    assert split_case("29 0 garbage") == ("29 0 garbage", "")  # its own case: shared with nothing


def test_only_finished_verdicts_of_the_same_backend_are_shared() -> None:
    memo = CaseMemo()
    other = ADD.replace("ffn_inp-0", "x")
    lines = [ADD, VIEW, NONAME]
    ran = [_op("ffn_inp-0", "fail", "ERR = 0.1 > 0.0005"), _op("cache_k_l0", "crash"), _op("", "not-run")]
    memo.record("CPU", lines, ran, [0, 1, 2], "a-f16-CPU")
    split = memo.split("CPU", [other, VIEW, NONAME])
    assert split.run == (1, 2)  # the crash and the case not reached run again
    assert split.known[0].test == "fail" and split.known[0].cell == "a-f16-CPU"
    assert split.known[0].message == "ERR = 0.1 > 0.0005"
    assert memo.split("BLAS", [other]).run == (0,)  # another backend measures its own
    # a verdict is kept from the first cell that measured it
    memo.record("CPU", [other], [_op("x", "ok")], [0], "b-f16-CPU")
    assert memo.split("CPU", [ADD]).known[0].cell == "a-f16-CPU"
    # only the lines the cell ran are recorded (a shared line is not recorded again)
    memo.record("CPU", [VIEW], [_op("cache_k_l0", "ok")], [], "c-CPU")
    assert memo.split("CPU", [VIEW]).run == (0,)
