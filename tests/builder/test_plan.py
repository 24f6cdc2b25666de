"""What a tree offers and what the build passes to CMake: both trees, every profile."""

from pathlib import Path

import pytest

from toolchain.builder.capabilities import read_capabilities
from toolchain.builder.cli import passthrough_args
from toolchain.builder.stage import BuildRequest, _unused_variables, build_dir_for, plan_defines, user_defines
from toolchain.builder.targets import choose_targets, parse_groups
from toolchain.config import Settings
from toolchain.errors import ProfileError, UsageError
from toolchain.profiles import PROFILES, PlatformInfo, resolve_profile

LINUX = PlatformInfo("linux", "x86_64", "6.1")
MAC = PlatformInfo("darwin", "arm64", "24.0")


def test_option_detection_follows_each_tree(tree_0320: Path, tree_0336: Path) -> None:
    old, new = read_capabilities(tree_0320), read_capabilities(tree_0336)
    # renamed between the two trees
    assert old.offers("LLAMA_BUILD_WEBUI") and not new.offers("LLAMA_BUILD_WEBUI")
    assert new.offers("LLAMA_BUILD_UI") and new.offers("LLAMA_BUILD_APP")
    # deprecated in the newer tree: declared through llama_option_depr, so not offered
    assert "LLAMA_CURL" in new.deprecated_options and not new.offers("LLAMA_CURL")
    for caps in (old, new):
        for name in (
            "GGML_METAL",
            "GGML_BLAS",
            "GGML_METAL_EMBED_LIBRARY",
            "LLAMA_BUILD_TESTS",
            "BUILD_SHARED_LIBS",
        ):
            assert caps.offers(name), name
        assert caps.has_metal_sources and caps.has_convert_script
        assert caps.cmake_minimum == "3.14"


def test_defines_per_tree_only_pass_known_options(tree_0320: Path, tree_0336: Path) -> None:
    request = BuildRequest(profile=PROFILES["blas"])
    new_defines, new_skipped = plan_defines(request, tree_0336)
    old_defines, old_skipped = plan_defines(request, tree_0320)
    assert new_defines["GGML_BLAS"] == "ON" and new_defines["CMAKE_BUILD_TYPE"] == "Release"
    assert "LLAMA_BUILD_UI" not in new_defines  # we only turn off what the tree declares ...
    assert "LLAMA_BUILD_WEBUI" in new_skipped and "LLAMA_BUILD_WEBUI" in old_defines
    assert "LLAMA_CURL" in new_skipped
    assert new_defines["LLAMA_USE_PREBUILT_UI"] == "OFF"  # never download at build time
    assert "LLAMA_USE_PREBUILT_UI" in old_skipped


def test_profiles_as_cmake_arguments() -> None:
    assert PROFILES["metal"].defines_for("darwin")["GGML_METAL"] == "ON"
    assert PROFILES["metal"].defines_for("darwin")["GGML_METAL_EMBED_LIBRARY"] == "ON"
    assert PROFILES["blas"].defines_for("linux")["GGML_BLAS_VENDOR"] == "OpenBLAS"
    assert PROFILES["blas"].defines_for("darwin")["GGML_BLAS_VENDOR"] == "Apple"
    cpu = PROFILES["cpu"].defines_for("linux")
    assert cpu["GGML_METAL"] == cpu["GGML_BLAS"] == "OFF"
    assert resolve_profile("auto", MAC).name == "metal"
    assert resolve_profile("auto", LINUX).name == "blas"
    with pytest.raises(ProfileError):
        resolve_profile("metal", LINUX)
    with pytest.raises(ProfileError):
        resolve_profile("rocm", LINUX)


def test_build_dir_per_commit_profile_and_options(tmp_path: Path) -> None:
    settings = Settings(tmp_path, tmp_path / ".toolchain", tmp_path / "cache", tmp_path / "llama.lock")
    req = BuildRequest(profile=PROFILES["blas"])
    a = build_dir_for(settings, "a" * 40, req, {"X": "1"})
    assert a == build_dir_for(settings, "a" * 40, req, {"X": "1"})
    assert a != build_dir_for(settings, "b" * 40, req, {"X": "1"})
    assert a != build_dir_for(settings, "a" * 40, req, {"X": "2"})
    assert a != build_dir_for(settings, "a" * 40, BuildRequest(profile=PROFILES["cpu"]), {"X": "1"})
    assert a.name.startswith("blas-") and a.parent == settings.build_root


def test_targets_pick_the_names_each_tree_has() -> None:
    old_tree = {"llama-completion", "test-backend-ops", "export-graph-ops", "llama-quantize"}
    choices = {c.purpose: c for c in choose_targets(parse_groups("build,coverage"), old_tree)}
    assert choices["runner"].name == "llama-completion"
    assert choices["export-graph-ops"].name == "export-graph-ops"
    assert choices["archs"].name is None and not choices["archs"].required
    with pytest.raises(UsageError):
        parse_groups("build,everything")


def test_unused_variable_report_is_parsed() -> None:
    log = (
        "-- Generating done\nCMake Warning:\n  Manually-specified variables were not used by the project:\n\n"
        "    GGML_METLA\n    LLAMA_FOO\n\n\n-- Build files have been written to: /x\n"
    )
    assert _unused_variables(log) == ["GGML_METLA", "LLAMA_FOO"]
    assert _unused_variables("-- all good\n") == []
    assert user_defines(("-DGGML_METLA=ON", "-DFOO:BOOL=1")) == ["GGML_METLA", "FOO"]


def test_only_defines_pass_through() -> None:
    import argparse

    ok = argparse.Namespace(passthrough=("-DGGML_METAL_SHADER_DEBUG=ON",))
    assert passthrough_args(ok) == ("-DGGML_METAL_SHADER_DEBUG=ON",)
    with pytest.raises(UsageError):
        passthrough_args(argparse.Namespace(passthrough=("-P", "evil.cmake")))
