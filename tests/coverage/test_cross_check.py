"""The oracle's prediction cross-checked against a Metal device's own support answers.

No Metal device here: the device cell is a fixture record (observed_by "fixture"), shaped as the
coverage stage records a real MTL0 cell; the comparison itself is the code that runs on a Mac.
"""

from toolchain.coverage.metal.predicted import _cross_checked, cross_check, profile_for_device
from toolchain.coverage.records import Cell, DeviceSummary, OpResult


def op(name: str, params: str, supported: str) -> OpResult:
    return OpResult(name, params, supported=supported)  # type: ignore[arg-type]


def cell(cid: str, backend: str, *ops: OpResult, observed_by: str = "fixture") -> Cell:
    return Cell(cid, "llama", "f16", backend, "m.gguf", "pass", "", observed_by, ops=ops)  # type: ignore[arg-type]


MM = "name=q,type=f32,ne=[128,1,1,1]"
SM = "name=kq,type=f32,ne=[256,2,1,1]"


def test_profile_follows_the_device_verify_saw() -> None:
    assert (
        profile_for_device(DeviceSummary("MTL0", "Apple M2", "real", {"gpu_family": 8, "bfloat": True}))
        == "apple8"
    )
    assert (
        profile_for_device(DeviceSummary("MTL0", "Apple M1", "real", {"gpu_family": 7, "bfloat": False}))
        == "apple7-nobf16"
    )
    assert (
        profile_for_device(DeviceSummary("MTL0", "Apple Paravirtual device", "paravirtual", {}))
        == "paravirtual"
    )
    assert profile_for_device(DeviceSummary("MTL0", "AMD Radeon", "none", {"gpu_family": 5})) is None


def test_agreement_and_disagreement_are_reported_op_by_op() -> None:
    device = cell("llama-f16-MTL0", "MTL0", op("MUL_MAT", MM, "yes"), op("SOFT_MAX", SM, "no"))
    same = cell(
        "llama-f16-metal-predicted:apple9",
        "metal-predicted:apple9",
        op("MUL_MAT", MM, "yes"),
        op("SOFT_MAX", SM, "no"),
    )
    other = cell(
        "llama-f16-metal-predicted:apple9",
        "metal-predicted:apple9",
        op("MUL_MAT", MM, "yes"),
        op("SOFT_MAX", SM, "yes"),
    )
    ok = cross_check(device, same)
    assert ok.status == "pass" and ok.details == {"device": "MTL0", "compared": 2, "differ": 0}
    bad = cross_check(device, other)
    assert bad.status == "wrong"
    assert bad.evidence == (f"SOFT_MAX({SM}): predicted yes, device no",)


def test_the_matching_predicted_cell_carries_the_check_and_the_report_a_note() -> None:
    device = cell("llama-f16-MTL0", "MTL0", op("SOFT_MAX", SM, "no"), observed_by="device")
    predicted = [
        cell("llama-f16-metal-predicted:apple9", "metal-predicted:apple9", op("SOFT_MAX", SM, "yes"))
    ]
    out, notes = _cross_checked((device,), predicted, {"MTL0": "apple9"})
    assert out[0].checks[-1].column == "cross-check" and out[0].checks[-1].status == "wrong"
    assert "Oracle cross-check on MTL0 (apple9)" in notes[0] and "predicted yes, device no" in notes[0]
    assert _cross_checked((device,), predicted, {}) == (predicted, ())
