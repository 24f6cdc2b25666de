"""What a tree offers and what the build passes to CMake: both trees, every profile."""

import os
from pathlib import Path

import pytest

from toolchain.builder.capabilities import read_capabilities
from toolchain.builder.cli import passthrough_args
from toolchain.builder.identity import changes_since, toolchain_identity
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


def test_build_dir_per_commit_profile_options_and_toolchain(tmp_path: Path) -> None:
    settings = Settings(tmp_path, tmp_path / ".toolchain", tmp_path / "cache", tmp_path / "llama.lock")
    req = BuildRequest(profile=PROFILES["blas"])
    tc = {"CC": "/usr/bin/gcc-12 gcc 12.2.0", "CXX": "/usr/bin/g++-12 g++ 12.2.0"}
    a = build_dir_for(settings, "a" * 40, req, {"X": "1"}, tc)
    assert a == build_dir_for(settings, "a" * 40, req, {"X": "1"}, dict(tc))
    assert a != build_dir_for(settings, "b" * 40, req, {"X": "1"}, tc)
    assert a != build_dir_for(settings, "a" * 40, req, {"X": "2"}, tc)
    assert a != build_dir_for(settings, "a" * 40, BuildRequest(profile=PROFILES["cpu"]), {"X": "1"}, tc)
    # an Xcode / SDK / compiler update: a new build dir, never the old toolchain's objects
    assert a != build_dir_for(settings, "a" * 40, req, {"X": "1"}, {**tc, "CC": "/usr/bin/gcc-13 gcc 13.1.0"})
    assert a != build_dir_for(settings, "a" * 40, req, {"X": "1"}, {**tc, "sdk-version": "26.1"})
    assert a.name.startswith("blas-") and a.parent == settings.build_root


def _fake_compiler(tmp_path: Path, version: str) -> Path:
    """A real executable that reports a version and compiles with the system compiler."""
    path = tmp_path / f"cc-{version}"
    path.write_text(
        f'#!/bin/sh\nif [ "$1" = --version ]; then echo "fakecc {version}"; exit 0; fi\nexec cc "$@"\n'
    )
    path.chmod(0o755)
    return path


def test_toolchain_identity_reads_each_compiler_and_changes_with_it(tmp_path: Path) -> None:
    one = toolchain_identity({"CC": str(_fake_compiler(tmp_path, "1.0"))}, os.environ)
    two = toolchain_identity({"CC": str(_fake_compiler(tmp_path, "2.0"))}, os.environ)
    assert one["CC"].endswith("fakecc 1.0") and two["CC"].endswith("fakecc 2.0") and one != two
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    assert toolchain_identity({"CC": str(broken)}, os.environ)["CC"].endswith("unknown (exit 3)")
    missing = toolchain_identity({"CC": str(tmp_path / "nope")}, os.environ)["CC"]
    assert "unknown (" in missing


def test_changes_since_the_last_build_name_the_pin_and_the_toolchain() -> None:
    previous = {"source": {"commit": "a" * 40}, "toolchain_identity": {"CC": "gcc 12", "sdk-version": "15.5"}}
    changes = changes_since(previous, commit="b" * 40, identity={"CC": "gcc 12", "sdk-version": "26.1"})
    assert changes == ["pin: aaaaaaaaaaaa -> bbbbbbbbbbbb", "sdk-version: 15.5 -> 26.1"]
    assert changes_since(previous, commit="a" * 40, identity=previous["toolchain_identity"]) == []  # type: ignore[arg-type]
    assert changes_since(None, commit="a" * 40, identity={}) == []


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
