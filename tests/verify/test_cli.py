"""``llama-toolchain verify`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolchain.cli import main


def _verify_metal(path: Path, tmp_path: Path, *extra: str) -> int:
    """``llama-toolchain verify PATH --profile metal --no-runtime`` in a work dir under ``tmp_path``."""
    common = ["--no-runtime", "--work-dir", str(tmp_path / "work"), "--project", str(tmp_path)]
    return main(["verify", str(path), "--profile", "metal", *common, *extra])


def test_good_build_exits_0_and_writes_the_report(
    macho_fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    code = main(
        [
            "verify",
            str(macho_fixtures["shared"]),
            "--no-runtime",
            "--json",
            "--work-dir",
            str(work),
            "--project",
            str(tmp_path),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is True and printed["profile"] == "metal"  # auto: Mach-O -> metal
    report = json.loads((work / "reports" / "verify.json").read_text(encoding="utf-8"))
    assert report["kind"] == "verify" and report["schema_version"] == 1
    # nothing ran: read from the binaries (+ the dry run's kernel needs for the embedded library)
    assert {c["observed_by"] for c in report["checks"]} == {"static", "static+dry-run"}


def test_bad_build_exits_30_with_what_to_do(
    macho_fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _verify_metal(macho_fixtures["no-metal"], tmp_path)
    assert code == 30
    err = capsys.readouterr().err
    assert "built without Metal: rebuild with -DGGML_METAL=ON" in err


def test_frameworks_folder_and_single_binary(macho_fixtures: dict[str, Path], tmp_path: Path) -> None:
    for name in ("app-frameworks", "single-binary"):
        code = _verify_metal(macho_fixtures[name], tmp_path, "-q")
        assert code == 0, name


def test_not_a_binary(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    code = _verify_metal(tmp_path / "notes.txt", tmp_path, "-q")
    assert code == 30
