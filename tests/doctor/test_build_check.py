"""The --build adapter over the verify stage (lazy import, failures mapped to catalog classes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from toolchain.doctor import build_check
from toolchain.doctor.build_check import check_build


@dataclass(frozen=True)
class FakeCheck:
    name: str
    expected: str
    found: str
    file: str
    status: str

    @property
    def failed(self) -> bool:
        return self.status == "fail"


@dataclass(frozen=True)
class FakeVerification:
    checks: tuple[FakeCheck, ...]

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)


def _fake_verify(monkeypatch: pytest.MonkeyPatch, checks: tuple[FakeCheck, ...]) -> list[tuple[object, ...]]:
    calls: list[tuple[object, ...]] = []

    def verify_path(path: Path, profile: object, *, runtime: bool) -> FakeVerification:
        calls.append((path, profile, runtime))
        return FakeVerification(checks)

    monkeypatch.setattr(build_check, "verify_path", verify_path)
    return calls


def test_failed_checks_become_findings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = _fake_verify(
        monkeypatch,
        (
            FakeCheck("registration", "ggml_backend_metal_reg", "absent", "libggml.dylib", "fail"),
            FakeCheck("deployment-target", "<= 14.0", "26.0", "llama-cli", "fail"),
            FakeCheck("linked-libraries", "Metal.framework", "Metal.framework", "libggml.dylib", "pass"),
        ),
    )
    record, findings = check_build(tmp_path, "metal")
    assert getattr(calls[0][1], "name", None) == "metal" and calls[0][2] is False
    assert not record.ok and len(record.checks) == 3
    assert [f.class_id for f in findings] == ["no-metal-build", "build-toolchain"]
    assert all(f.observed_by == "static" for f in findings)
    assert "ggml_backend_metal_reg" in findings[0].evidence[0].text


def test_passing_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_verify(monkeypatch, (FakeCheck("registration", "x", "x", "f", "pass"),))
    record, findings = check_build(tmp_path, "metal")
    assert record.ok and findings == []


def test_unverifiable_checks_are_noted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_verify(
        monkeypatch, (FakeCheck("registration", "x", "no symbols left in stripped ls", "ls", "unverifiable"),)
    )
    record, findings = check_build(tmp_path, "metal")
    assert record.ok and [(f.class_id, f.severity) for f in findings] == [("no-metal-build", "info")]
