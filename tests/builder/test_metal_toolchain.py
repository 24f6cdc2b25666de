"""Xcode 26's separate Metal Toolchain: `build` finds it missing before configuring a Metal build
that compiles shaders (a fake `xcrun` on PATH gives the real messages; the platform and the
options come from the profile)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from toolchain.builder.capabilities import check_metal_compiler, compiles_metal_shaders, needs_metal_compiler
from toolchain.builder.stage import BuildRequest, run_build
from toolchain.config import Settings
from toolchain.errors import MissingToolError
from toolchain.profiles import PROFILES
from toolchain.source.checkout import Checkout
from toolchain.source.lock import ResolvedSource

ROOT = Path(__file__).resolve().parents[2]
METAL = PROFILES["metal"]


def _reported(pattern_id: str) -> str:
    """The real message, as the doctor fixture quotes it from a report."""
    text = (ROOT / "fixtures" / "logs" / "doctor" / "pattern-lines.txt").read_text(encoding="utf-8")
    return re.search(rf"^# {re.escape(pattern_id)}: .*\n(.*)$", text, re.M)[1]  # type: ignore[index]


def _fake_xcrun(bin_dir: Path, *, find: str, find_rc: int, version: str, version_rc: int) -> dict[str, str]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "xcrun"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-f" ]; then printf "%s\\n" "$FIND_SAYS" >&2; exit {find_rc}; fi\n'
        f'printf "%s\\n" "$METAL_SAYS" >&2; exit {version_rc}\n'
    )
    script.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FIND_SAYS": find,
        "METAL_SAYS": version,
    }


_XCODE_METAL = "/Applications/Xcode.app/Contents/Developer/Toolchains/XcodeDefault.xctoolchain/usr/bin/metal"


def _xcode26_without_metal_toolchain(bin_dir: Path) -> dict[str, str]:
    """xcrun finds the metal stub; running it says the component is missing."""
    said = _reported("build-toolchain.missing-metal-toolchain")
    return _fake_xcrun(bin_dir, find=_XCODE_METAL, find_rc=0, version=said, version_rc=1)


def test_only_a_non_embedded_metal_build_needs_the_compiler(tree_0336: Path) -> None:
    assert compiles_metal_shaders(tree_0336)  # the tree still runs `xcrun -sdk … metal`
    defines = dict(METAL.defines)
    assert not needs_metal_compiler(METAL, defines, (), tree_0336)  # the profile embeds the library
    off = ("-DGGML_METAL_EMBED_LIBRARY:BOOL=OFF",)
    assert needs_metal_compiler(METAL, defines, off, tree_0336)
    assert not needs_metal_compiler(METAL, defines, (*off, "-DGGML_METAL_EMBED_LIBRARY=ON"), tree_0336)
    assert not needs_metal_compiler(METAL, defines, (*off, "-DGGML_METAL=OFF"), tree_0336)
    assert not needs_metal_compiler(PROFILES["cpu"], {}, off, tree_0336)


def test_missing_metal_toolchain_is_named_with_the_download(tmp_path: Path) -> None:
    env = _xcode26_without_metal_toolchain(tmp_path / "bin")
    with pytest.raises(MissingToolError) as err:
        check_metal_compiler(env, tmp_path / "check.log", "GGML_METAL_EMBED_LIBRARY")
    assert "Metal Toolchain component is not installed" in str(err.value)
    assert "xcodebuild -downloadComponent MetalToolchain" in err.value.hint
    assert "-DGGML_METAL_EMBED_LIBRARY=ON" in err.value.hint
    assert "xcrun -f metal" in (tmp_path / "check.log").read_text()


def test_command_line_tools_only_is_named(tmp_path: Path) -> None:
    said = 'xcrun: error: unable to find utility "metal", not a developer tool or in PATH'
    env = _fake_xcrun(tmp_path / "bin", find=said, find_rc=72, version=said, version_rc=72)
    with pytest.raises(MissingToolError) as err:
        check_metal_compiler(env, tmp_path / "check.log", "GGML_METAL_EMBED_LIBRARY")
    assert said in str(err.value) and "xcode-select --switch" in err.value.hint


def test_a_working_compiler_passes(tmp_path: Path) -> None:
    env = _fake_xcrun(
        tmp_path / "bin",
        find=_XCODE_METAL,
        find_rc=0,
        version="Apple metal version 32023.830 (metalfe-32023.830.2)",
        version_rc=0,
    )
    check_metal_compiler(env, tmp_path / "check.log", "GGML_METAL_EMBED_LIBRARY")


def test_build_stops_before_configuring(
    tree_0336: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _xcode26_without_metal_toolchain(tmp_path / "bin")
    for key in ("PATH", "FIND_SAYS", "METAL_SAYS"):
        monkeypatch.setenv(key, env[key])
    settings = Settings(tmp_path, tmp_path / ".toolchain", tmp_path / "cache", tmp_path / "lock")
    source = ResolvedSource("sdist", "llama-cpp-python", "0.3.36", "0" * 40, "2026-01-01T00:00:00Z")
    request = BuildRequest(METAL, extra_cmake_args=("-DGGML_METAL_EMBED_LIBRARY=OFF",))
    with pytest.raises(MissingToolError, match="Metal Toolchain"):
        run_build(settings, Checkout(source, tree_0336, "0" * 40), request)
    assert not list(settings.build_root.glob("*/CMakeCache.txt"))  # never configured
