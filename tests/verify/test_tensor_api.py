"""The SDK and deployment target of Mach-O files, and whether a build could ever use the tree's
Metal 4 tensor API on an M5: real cross-built fixtures (old and new SDKs), conditions read from the
real 0.3.36 tree and from copies of its Metal sources with one condition changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.oracle.tree_copies import metal_copy, patch_once
from toolchain.errors import VerifyError
from toolchain.profiles import PROFILES
from toolchain.verify import Check, verify_path
from toolchain.verify.binaries import read_binary
from toolchain.verify.tensor_rules import DEVICE_M, METAL_CMAKE, read_tensor_rules

METAL = PROFILES["metal"]


def _check(path: Path, name: str, tree: Path | None) -> Check:
    v = verify_path(path, METAL, runtime=False, tree=tree)
    (check,) = [c for c in v.checks if c.name == name]
    assert check.observed_by == "static"
    return check


def _guarded_tree(tree: Path, dest: Path, condition: str) -> Path:
    """A copy of the Metal sources with ``#if <condition>`` around the has_tensor line."""
    copy = metal_copy(tree, dest)
    line = "dev->props.has_tensor = [dev->mtl_device supportsFamily:MTLGPUFamilyMetal4_GGML];"
    text = (copy / DEVICE_M).read_text(encoding="utf-8")
    (at,) = [i for i, got in enumerate(text.splitlines(keepends=True)) if got.strip() == line]
    patch_once(
        copy / DEVICE_M,
        text.splitlines(keepends=True)[at],
        f"#if {condition}\n" + text.splitlines(keepends=True)[at] + "#endif\n",
    )
    return copy


def _line(tree: Path, rel: Path, needle: str) -> int:
    lines = (tree / rel).read_text(encoding="utf-8").splitlines()
    return next(i + 1 for i, line in enumerate(lines) if needle in line)


def test_sdk_and_minos_are_read_from_lc_build_version(sdk_fixtures: dict[str, Path]) -> None:
    lib = sdk_fixtures["sdk-old-embedded"] / "bin" / "libggml-metal.dylib"
    (s,) = read_binary(lib)
    assert (s.minos, s.sdk) == ("14.0", "14.5")
    found = _check(sdk_fixtures["sdk-old-embedded"], "deployment-target", None).found
    assert "libggml-metal.dylib 14.0 (SDK 14.5)" in found


def test_older_binaries_lc_version_min_macosx(sdk_fixtures: dict[str, Path]) -> None:
    (s,) = read_binary(sdk_fixtures["version-min"] / "bin" / "llama-cli")
    assert (s.arch, s.minos, s.sdk) == ("x86_64", "10.13", "10.14")
    check = _check(sdk_fixtures["version-min"], "deployment-target", None)
    assert check.status == "pass"
    assert "llama-cli 10.13 (SDK 10.14)" in check.found


def test_conditions_come_from_the_tree_with_file_and_line(tree_0336: Path) -> None:
    rules = read_tensor_rules(tree_0336)
    assert rules.has_tensor_api
    src = str(DEVICE_M)
    family_line = _line(tree_0336, DEVICE_M, "props.has_tensor = [dev->mtl_device supportsFamily:")
    by = {(c.what, c.value): c for c in rules.conditions}
    assert by[("family", "MTLGPUFamilyMetal4_GGML (5002)")].source == f"{src}:{family_line}"
    assert {c.value for c in rules.conditions if c.what == "device-name"} == {"M5", "M6", "A19", "A20"}
    lib = by[("metallib", "ggml-tensor.metallib")]
    lib_line = _line(tree_0336, DEVICE_M, '@"ggml-tensor"')
    assert (lib.source, lib.applies) == (f"{src}:{lib_line}", "not-embedded")
    sdk = by[("sdk", "26.0")]
    assert (sdk.source, sdk.applies) == (
        f"{METAL_CMAKE}:{_line(tree_0336, METAL_CMAKE, 'METAL_SDK_VERSION VERSION_GREATER_EQUAL')}",
        "not-embedded",
    )
    # 0.3.36 puts no SDK / deployment-target guard around has_tensor itself
    assert not [c for c in rules.conditions if c.what in ("sdk", "minos") and c.applies == "all"]


def test_old_sdk_without_tensor_metallib_never_uses_it(
    sdk_fixtures: dict[str, Path], tree_0336: Path
) -> None:
    check = _check(sdk_fixtures["sdk-old-metallib"], "tensor-api", tree_0336)
    assert check.status == "fail"
    assert "minos 13.3, SDK 14.5, library not embedded" in check.found
    assert "no ggml-tensor.metallib in bin/" in check.found
    assert f"with SDK 14.5 the tree never builds it (needs 26.0, {METAL_CMAKE}:" in check.found
    assert "Xcode 26" in check.hint


def test_new_sdk_with_tensor_metallib_can_use_it(sdk_fixtures: dict[str, Path], tree_0336: Path) -> None:
    check = _check(sdk_fixtures["sdk-new-metallib"], "tensor-api", tree_0336)
    assert check.status == "pass", check.found
    assert "SDK 26.0" in check.found
    assert "MTLGPUFamilyMetal4_GGML (5002)" in check.found and "M5/M6/A19/A20" in check.found


def test_new_sdk_but_tensor_metallib_not_shipped(sdk_fixtures: dict[str, Path], tree_0336: Path) -> None:
    check = _check(sdk_fixtures["sdk-new-no-tensor-lib"], "tensor-api", tree_0336)
    assert check.status == "fail"
    assert "no ggml-tensor.metallib in bin/" in check.found
    assert "never builds it" not in check.found  # the SDK was new enough: only the file is missing


def test_embedded_build_has_no_sdk_condition_in_this_tree(
    sdk_fixtures: dict[str, Path], tree_0336: Path
) -> None:
    """0.3.36 compiles the embedded kernels at run time: nothing ties them to the SDK."""
    check = _check(sdk_fixtures["sdk-old-embedded"], "tensor-api", tree_0336)
    assert check.status == "pass", check.found


@pytest.mark.parametrize(
    ("condition", "text", "statuses"),
    [
        (
            "__MAC_OS_X_VERSION_MAX_ALLOWED >= 260000",
            "SDK 14.5 is older than the 26.0 the tree requires",
            {"sdk-old-embedded": "fail", "version-min": "fail", "sdk-new-metallib": "pass"},
        ),
        (
            "__MAC_OS_X_VERSION_MIN_REQUIRED >= 150000",
            "deployment target 14.0 is older than the 15.0 the tree requires",
            {"sdk-old-embedded": "fail", "sdk-new-metallib": "fail"},  # minos 13.3
        ),
    ],
)
def test_a_guard_around_has_tensor_judges_the_binary(
    sdk_fixtures: dict[str, Path],
    tree_0336: Path,
    tmp_path: Path,
    condition: str,
    text: str,
    statuses: dict[str, str],
) -> None:
    """A tree that guards has_tensor with the SDK / deployment-target macros: those become
    conditions on the binary, cited at the guard's line."""
    tree = _guarded_tree(tree_0336, tmp_path, condition)
    guard = _line(tree, DEVICE_M, condition)
    got = {name: _check(sdk_fixtures[name], "tensor-api", tree) for name in statuses}
    assert {name: c.status for name, c in got.items()} == statuses
    assert f"{text} ({DEVICE_M}:{guard})" in got["sdk-old-embedded"].found


def test_a_tree_without_the_tensor_api_is_said_so(
    macho_fixtures: dict[str, Path], tree_0336: Path, tmp_path: Path
) -> None:
    tree = metal_copy(tree_0336, tmp_path)
    text = (tree / DEVICE_M).read_text(encoding="utf-8")
    (tree / DEVICE_M).write_text(text.replace("props.has_tensor", "props.has_other"), encoding="utf-8")
    check = _check(macho_fixtures["shared"], "tensor-api", tree)
    assert check.status == "pass"
    assert "this tree has no tensor API" in check.found


def test_without_a_tree_it_is_unverifiable(macho_fixtures: dict[str, Path]) -> None:
    check = _check(macho_fixtures["shared"], "tensor-api", None)
    assert check.status == "unverifiable"
    assert "--tree" in check.hint


def test_the_tree_is_found_through_the_build_dirs_cmake_cache(
    sdk_fixtures: dict[str, Path], tree_0336: Path, tmp_path: Path
) -> None:
    build = tmp_path / "build"
    shutil.copytree(sdk_fixtures["sdk-old-metallib"], build, symlinks=True)
    with (build / "CMakeCache.txt").open("a", encoding="utf-8") as fh:
        fh.write(f"CMAKE_HOME_DIRECTORY:INTERNAL={tree_0336}\n")
    assert _check(build, "tensor-api", None).status == "fail"


@pytest.mark.parametrize("name", ["sdk-old-metallib", "sdk-new-metallib"])
def test_cli_reports_the_tensor_check(
    sdk_fixtures: dict[str, Path], tree_0336: Path, name: str, cli: object
) -> None:
    result = cli(  # type: ignore[operator]
        "verify",
        str(sdk_fixtures[name]),
        "--profile",
        "metal",
        "--no-runtime",
        "--json",
        "--tree",
        str(tree_0336),
    )
    assert "tensor-api" in result.stdout
    assert result.returncode == (30 if name == "sdk-old-metallib" else 0), result.stdout + result.stderr


def test_a_tree_path_that_is_not_a_folder_is_refused(macho_fixtures: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(VerifyError) as err:
        verify_path(macho_fixtures["shared"], METAL, runtime=False, tree=tmp_path / "no-such-tree")
    assert "no-such-tree" in str(err.value) and err.value.exit_code == 30


def test_a_folder_without_metal_sources_is_unverifiable_not_a_pass(
    macho_fixtures: dict[str, Path], tmp_path: Path
) -> None:
    check = _check(macho_fixtures["shared"], "tensor-api", tmp_path)
    assert check.status == "unverifiable"
    assert str(DEVICE_M) in check.found
