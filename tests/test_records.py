"""Reading reports back: one registry, one typed reader, the toolchain's own error naming the file."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from toolchain.builder.cmake import Compiler, Tool
from toolchain.builder.compiler_cache import CacheStats
from toolchain.builder.manifest import Artifact, BuildManifest, HostInfo, Tools, last_build_dir
from toolchain.config import Settings
from toolchain.errors import ReportError
from toolchain.records import (
    BUILD_MANIFEST,
    CONVERT,
    COVERAGE,
    DOCTOR,
    DRYRUN,
    DRYRUN_HISTORY,
    DRYRUN_SHIPPED,
    DRYRUN_SWEEP,
    DRYRUN_VALIDATION,
    ORACLE_PREDICTIONS,
    ORACLE_VALIDATION,
    REPORTS,
    VERIFY,
    read_data,
    read_record,
    read_record_if_any,
    write_report,
)
from toolchain.source.lock import ResolvedSource, SdistInfo
from toolchain.verify import write_verification
from toolchain.verify.records import Check, DeviceInfo, RuntimeRun, Verification

ROOT = Path(__file__).resolve().parents[1]


def manifest(build_dir: Path) -> BuildManifest:
    return BuildManifest(
        status="built",
        source=ResolvedSource(
            "pypi",
            "llama-cpp-python",
            "0.3.36",
            "a" * 40,
            "2026-01-01T00:00:00Z",
            SdistInfo("f", "s", "u", "0.3.36"),
        ),
        source_dir=build_dir / "src",
        local_changes=("ggml/x.c",),
        profile="blas",
        build_dir=build_dir,
        cmake_defines={"GGML_BLAS": "ON"},
        extra_cmake_args=(),
        skipped_options={},
        missing_targets={},
        tools=Tools(
            Tool("cmake", Path("/usr/bin/cmake"), "3.31"),
            Tool("ninja", Path("/usr/bin/ninja"), "1.12"),
            "Ninja",
            (Compiler("C", "GNU", "14", "/usr/bin/cc"),),
        ),
        host=HostInfo("linux", "6", "x86_64", "3.12", {}),
        toolchain_identity={"CC": "gcc 14"},
        changed_since_last=(),
        artifacts=(Artifact("llama-cli", "EXECUTABLE", build_dir / "bin" / "llama-cli", "0" * 64, 10),),
        compiler_cache=CacheStats("ccache", 3, None),
        durations={"total": 1.5},
    )


def verification(path: Path) -> Verification:
    return Verification(
        path=path,
        profile="metal",
        checks=(Check("registration", "x", "y", "f", "fail", "static", hint="rebuild"),),
        runtime_requested=True,
        devices=(DeviceInfo("metal", "MTL0", "Apple M4", gpu_family=9, gpu_families=("A9",), bfloat=True),),
        device_class="real",
        runs=(RuntimeRun(("llama-cli", "-n", "1"), None, 1.0, True, ("tail",)),),
        files=("f",),
    )


def _dataclasses_of(hint: Any, seen: set[type]) -> None:
    for arg in typing.get_args(hint):
        _dataclasses_of(arg, seen)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and hint not in seen:
        seen.add(hint)
        for h in typing.get_type_hints(hint).values():
            _dataclasses_of(h, seen)


def _record_classes() -> dict[str, type]:
    """The record class each report's readers name (the registry itself imports no stage)."""
    from toolchain.convert.results import Conversion
    from toolchain.coverage.records import CoverageRun
    from toolchain.doctor.findings import DoctorReport
    from toolchain.dryrun.history import History
    from toolchain.dryrun.records import DryRun
    from toolchain.dryrun.sweep import Sweep
    from toolchain.dryrun.validate import Validation
    from toolchain.oracle.records import OracleValidation, Predictions

    return {
        BUILD_MANIFEST.kind: BuildManifest,
        VERIFY.kind: Verification,
        CONVERT.kind: Conversion,
        COVERAGE.kind: CoverageRun,
        DOCTOR.kind: DoctorReport,
        ORACLE_PREDICTIONS.kind: Predictions,
        ORACLE_VALIDATION.kind: OracleValidation,
        DRYRUN.kind: DryRun,
        DRYRUN_VALIDATION.kind: Validation,
        DRYRUN_SHIPPED.kind: dict,  # {"libraries": [...], "dry_run": DryRun}: read back as plain data
        DRYRUN_SWEEP.kind: Sweep,
        DRYRUN_HISTORY.kind: History,
    }


def test_every_registered_record_class_can_be_read_back() -> None:
    """Each record class's annotations resolve at run time (the reader needs them), to the leaves."""
    classes = _record_classes()
    assert set(classes) == set(REPORTS), "a registered report without the record class its readers name"
    for report in REPORTS.values():
        seen: set[type] = set()
        _dataclasses_of(classes[report.kind], seen)
        assert report.name.endswith(".json") and report.schema_version >= 1
        assert classes[report.kind] is dict or seen, report.kind


def test_records_round_trip(tmp_path: Path) -> None:
    m = manifest(tmp_path)
    path = write_report(tmp_path / BUILD_MANIFEST.name, BUILD_MANIFEST.kind, m)
    assert read_record(path, BUILD_MANIFEST, BuildManifest) == m
    assert last_build_dir(tmp_path) == tmp_path
    v = verification(tmp_path)
    write_verification(v, tmp_path / VERIFY.name)
    assert (
        read_record(tmp_path / VERIFY.name, VERIFY, Verification) == v
    )  # its extra "ok"/"verified" are ignored
    assert read_record_if_any(tmp_path / "none.json", VERIFY, Verification) is None
    assert last_build_dir(tmp_path / "empty") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "a JSON list"),
        (json.dumps({"schema_version": 1, "kind": "coverage"}), "kind is 'coverage'"),
        (json.dumps({"kind": "verify"}), "schema_version None"),
        (json.dumps({"schema_version": 2, "kind": "verify"}), "newer than this toolchain reads"),
        (json.dumps({"schema_version": 1, "kind": "verify", "path": "/x"}), "profile is missing"),
        (
            json.dumps({"schema_version": 1, "kind": "verify", "path": "/x", "profile": "m", "checks": [1]}),
            "checks[0]: expected an object",
        ),
        (
            json.dumps(
                {
                    "schema_version": 1,
                    "kind": "verify",
                    "path": "/x",
                    "profile": "m",
                    "checks": [],
                    "runtime_requested": True,
                    "device_class": "imaginary",
                }
            ),
            "device_class",
        ),
    ],
)
def test_a_bad_report_is_the_toolchains_error_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "verify.json"
    path.write_text(content)
    with pytest.raises(ReportError, match=re.escape(message)) as caught:
        read_record(path, VERIFY, Verification)
    assert str(path) in caught.value.message and caught.value.hint and caught.value.exit_code == 6


def test_an_unreadable_report_is_named(tmp_path: Path) -> None:
    (tmp_path / "verify.json").mkdir()
    with pytest.raises(ReportError, match="cannot read the verify report") as caught:
        read_data(tmp_path / "verify.json", VERIFY)
    assert str(tmp_path / "verify.json") in caught.value.message


def test_report_file_names_live_only_in_the_registry() -> None:
    names = {r.name for r in REPORTS.values()}
    offenders = []
    for path in (ROOT / "toolchain").rglob("*.py"):
        if path.name == "records.py" and path.parent.name == "toolchain":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for _quote, literal in re.findall(r"([\"'])([a-z-]+\.json)\1", line.split("  # ")[0]):
                if literal in names:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {literal}")
    assert offenders == []


@pytest.mark.parametrize("command", [("coverage",), ("oracle", "validate", "--tree", "TREE"), ("convert",)])
def test_a_hand_edited_manifest_is_named_by_every_stage_that_reads_it(
    cli: Any, settings: Settings, command: tuple[str, ...], request: pytest.FixtureRequest
) -> None:
    """Through the command line: exit 6 naming the file and the field, never a traceback."""
    if "TREE" in command:
        command = tuple(str(request.getfixturevalue("tree_0336")) if c == "TREE" else c for c in command)
    path = settings.reports_dir / BUILD_MANIFEST.name
    path.parent.mkdir(parents=True)
    write_report(path, BUILD_MANIFEST.kind, manifest(settings.work_dir / "build" / "blas-0"))
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "build_dir": 42}))
    done = cli(*command, timeout=300)
    assert done.returncode == 6, done.stderr
    said = "".join(done.stderr.split())  # the console may wrap a long path
    assert f"{path}:".replace(" ", "") in said and "build_dir:42isnotPath" in said, done.stderr
    assert "Traceback" not in done.stderr
