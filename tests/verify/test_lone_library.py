"""One backend library taken from an app bundle (``verify --profile metal libggml-metal.dylib``):
the CPU backend lives in another file the user did not give, so its check is unverifiable for that
input; the whole Frameworks folder or a build dir still has to carry it."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.errors import NothingVerifiedError, VerifyError
from toolchain.profiles import PROFILES
from toolchain.verify import Verification, require_ok, verify_path

METAL = PROFILES["metal"]


def _status(v: Verification, name: str) -> tuple[str, str]:
    (check,) = [c for c in v.checks if c.name == name]
    return check.status, check.found


def test_lone_metal_library_does_not_fail_the_cpu_check(macho_fixtures: dict[str, Path]) -> None:
    lib = macho_fixtures["app-frameworks"] / "libggml-metal.dylib"
    v = verify_path(lib, METAL, runtime=False)
    assert v.ok, [(c.name, c.found) for c in v.failures]
    status, found = _status(v, "registration:cpu")
    assert status == "unverifiable"
    assert "libggml-metal.dylib was given alone" in found and "libggml-cpu" in found
    assert _status(v, "registration")[0] == "pass"
    require_ok(v)  # the Metal backend itself is verified: exit 0 is honest


def test_lone_library_of_a_bundle_without_cpu_is_still_unverifiable(sdk_fixtures: dict[str, Path]) -> None:
    """The input alone cannot tell whether the bundle has the CPU backend: not a failure either way."""
    v = verify_path(sdk_fixtures["app-no-cpu"] / "libggml-metal.dylib", METAL, runtime=False)
    assert _status(v, "registration:cpu")[0] == "unverifiable"


def test_frameworks_folder_without_cpu_backend_fails(sdk_fixtures: dict[str, Path]) -> None:
    v = verify_path(sdk_fixtures["app-no-cpu"], METAL, runtime=False)
    assert {c.name for c in v.failures} == {"registration:cpu"}
    with pytest.raises(VerifyError):
        require_ok(v)


def test_build_dir_without_cpu_backend_fails(sdk_fixtures: dict[str, Path]) -> None:
    v = verify_path(sdk_fixtures["shared-no-cpu"], METAL, runtime=False)
    assert {c.name for c in v.failures} == {"registration:cpu"}
    status, found = _status(v, "registration:cpu")
    assert "no ggml_backend_cpu_reg /" in found


def test_lone_program_still_needs_the_cpu_backend(sdk_fixtures: dict[str, Path]) -> None:
    """A program is not one piece of a set: what it links is what it runs with."""
    v = verify_path(sdk_fixtures["shared-no-cpu"] / "bin" / "llama-cli", METAL, runtime=False)
    assert "registration:cpu" in {c.name for c in v.failures}


def test_lone_cpu_library_verified_as_metal_is_nothing_verified_not_a_pass(
    macho_fixtures: dict[str, Path],
) -> None:
    """The profile's own backend is not in the file given: that stays a failure (the user asked
    for Metal in this very file)."""
    v = verify_path(macho_fixtures["app-frameworks"] / "libggml-cpu.dylib", METAL, runtime=False)
    assert _status(v, "registration")[0] == "fail"
    with pytest.raises(VerifyError) as err:
        require_ok(v)
    assert not isinstance(err.value, NothingVerifiedError)


@pytest.mark.parametrize(
    ("where", "code"),
    [("lone-library", 0), ("frameworks-no-cpu", 30), ("build-dir-no-cpu", 30)],
)
def test_exit_codes_for_the_three_inputs(
    macho_fixtures: dict[str, Path], sdk_fixtures: dict[str, Path], tmp_path: Path, where: str, code: int
) -> None:
    path = {
        "lone-library": macho_fixtures["app-frameworks"] / "libggml-metal.dylib",
        "frameworks-no-cpu": sdk_fixtures["app-no-cpu"],
        "build-dir-no-cpu": sdk_fixtures["shared-no-cpu"],
    }[where]
    args = ["verify", str(path), "--profile", "metal", "--no-runtime", "--work-dir", str(tmp_path / "w")]
    assert main([*args, "--project", str(tmp_path)]) == code
