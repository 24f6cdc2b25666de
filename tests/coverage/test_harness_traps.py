"""False findings the coverage stage must not report: the harness's own traps.

test-backend-ops runs each exported op out of its graph on random inputs. Integer index sources
(GET_ROWS' rows) then point outside the source tensor and the CPU reference's bounds check aborts:
that is the harness, like the NaN-on-both-sides trap, not the backend under test.
"""

from toolchain.coverage.cell import _harness_index_crash
from toolchain.coverage.isolate import Outcome
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
    from toolchain.coverage.backends import backend

    blas = backend("BLAS")
    assert "--no-repack" in blas.device_args(("-v", "--no-repack"))
    assert "--no-repack" not in blas.device_args(("-v",)), "only where the tree's runner has the flag"
    assert "--no-repack" not in backend("CPU").device_args(("--no-repack",))
