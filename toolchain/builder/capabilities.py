"""What a checked-out llama.cpp tree offers, read from the tree itself before configuring.

Option names drift (LLAMA_CURL → LLAMA_OPENSSL, LLAMA_BUILD_WEBUI → LLAMA_BUILD_UI,
GGML_METAL_USE_BF16 removed …), so the build passes an optional option only where the tree
declares it. Deprecated options (``llama_option_depr``) count as not offered. Which targets exist
is read after configuring, from CMake's File API (see ``cmake.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..core.proc import stream
from ..core.tree import CONVERT_SCRIPT, METAL_DIR, has_metal_sources
from ..doctor.catalog import BY_ID, PATTERNS
from ..errors import MissingToolError
from ..profiles import BackendProfile

_OPTION = re.compile(r"^\s*option\s*\(\s*([A-Za-z0-9_]+)", re.M)
_CACHE_SET = re.compile(r"^\s*set\s*\(\s*([A-Za-z0-9_]+)\s+[^)]*\bCACHE\b", re.M)
_DEPRECATED = re.compile(r"^\s*llama_option_depr\s*\(\s*\w+\s+([A-Za-z0-9_]+)", re.M)
_IDENTIFIER = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b")
_MIN_VERSION = re.compile(r"cmake_minimum_required\s*\(\s*VERSION\s+([0-9.]+)", re.I)
# Directories whose CMake files are not the project's (vendored code, docs).
_SKIP_PARTS = {".git", "build", "docs", "examples/llama.android", ".devops"}


@dataclass(frozen=True)
class TreeCapabilities:
    options: frozenset[str]
    deprecated_options: frozenset[str]
    # Every upper-case identifier the tree's CMake files mention (options read with if(DEFINED …) too).
    mentioned: frozenset[str]
    cmake_minimum: str
    has_metal_sources: bool
    has_convert_script: bool

    def offers(self, option: str) -> bool:
        return option in self.options and option not in self.deprecated_options

    def knows(self, variable: str) -> bool:
        """Whether a -D variable means anything to this tree (or to CMake itself)."""
        return variable.startswith("CMAKE_") or variable in self.options or variable in self.mentioned


def _cmake_files(tree: Path) -> list[Path]:
    files = []
    for pattern in ("CMakeLists.txt", "*.cmake"):
        for path in tree.rglob(pattern):
            rel = path.relative_to(tree).as_posix()
            if not any(rel == skip or rel.startswith(skip + "/") for skip in _SKIP_PARTS):
                files.append(path)
    return sorted(files)


def read_capabilities(tree: Path) -> TreeCapabilities:
    options: set[str] = set()
    deprecated: set[str] = set()
    mentioned: set[str] = set()
    for path in _cmake_files(tree):
        text = path.read_text(encoding="utf-8", errors="replace")
        mentioned.update(_IDENTIFIER.findall(text))
        options.update(_OPTION.findall(text))
        options.update(_CACHE_SET.findall(text))
        deprecated.update(_DEPRECATED.findall(text))
    minimum = "3.14"
    top = tree / "CMakeLists.txt"
    if top.is_file():
        match = _MIN_VERSION.search(top.read_text(encoding="utf-8", errors="replace"))
        if match:
            try:
                minimum = str(Version(match[1]))
            except InvalidVersion:
                pass
    return TreeCapabilities(
        options=frozenset(options),
        deprecated_options=frozenset(deprecated),
        mentioned=frozenset(mentioned),
        cmake_minimum=minimum,
        has_metal_sources=has_metal_sources(tree),
        has_convert_script=(tree / CONVERT_SCRIPT).is_file(),
    )


# --- the Metal shader compiler ---------------------------------------------------------------------
# A non-embedded Metal build compiles the kernels with `xcrun -sdk … metal` (ggml-metal's
# CMakeLists.txt); since Xcode 26 that compiler is a separate download (the Metal Toolchain
# component), and Command Line Tools alone have none. The embedded library needs no compiler.
_METAL_CMAKE = METAL_DIR / "CMakeLists.txt"
_XCRUN_METAL = re.compile(r"\bxcrun\b[^\n]*\smetal\s")
_CMAKE_FALSE = frozenset({"", "0", "OFF", "NO", "FALSE", "N", "IGNORE", "NOTFOUND"})


def compiles_metal_shaders(tree: Path) -> bool:
    """Whether the tree's non-embedded Metal build runs the ``metal`` compiler through xcrun."""
    path = tree / _METAL_CMAKE
    return path.is_file() and bool(_XCRUN_METAL.search(path.read_text(encoding="utf-8", errors="replace")))


def effective_define(name: str, defines: Mapping[str, str], extra_args: Sequence[str]) -> str | None:
    """The value CMake gets for ``name``: the user's last ``-DNAME[:TYPE]=VALUE`` wins over ours."""
    value = defines.get(name)
    for arg in extra_args:
        if arg.startswith("-D") and "=" in arg:
            key, _, val = arg[2:].partition("=")
            if key.split(":", 1)[0] == name:
                value = val
    return value


def _cmake_true(value: str | None) -> bool:
    return value is not None and value.upper() not in _CMAKE_FALSE and not value.upper().endswith("-NOTFOUND")


def needs_metal_compiler(
    profile: BackendProfile, defines: Mapping[str, str], extra_args: Sequence[str], tree: Path
) -> bool:
    """A build of this profile with these options compiles Metal shaders (not the embedded library)."""
    exp = profile.expectations
    if not exp.embed_option or not exp.enable_option:
        return False
    enabled = _cmake_true(effective_define(exp.enable_option, defines, extra_args))
    embedded = _cmake_true(effective_define(exp.embed_option, defines, extra_args))
    return enabled and not embedded and compiles_metal_shaders(tree)


def check_metal_compiler(env: Mapping[str, str], log_path: Path, embed_option: str) -> None:
    """Raise MissingToolError when ``xcrun`` finds no working ``metal`` (the reason in its words)."""
    fix = f"or build with the embedded library (-D{embed_option}=ON, the profile's default)"
    try:
        found = stream(["xcrun", "-f", "metal"], log_path=log_path, env=env, timeout=120)
        version = stream(["xcrun", "metal", "-v"], log_path=log_path, env=env, timeout=120)
    except FileNotFoundError:
        raise MissingToolError(
            "xcrun is not installed: a non-embedded Metal build needs Xcode's metal compiler",
            f"install Xcode (xcode-select --install gives no metal compiler), {fix}",
        ) from None
    said = "\n".join((*found.tail, *version.tail))
    if PATTERNS["build-toolchain.missing-metal-toolchain"].compiled.search(said):
        raise MissingToolError(
            "Xcode's Metal Toolchain component is not installed; `xcrun metal -v` says: "
            + (version.tail[-1] if version.tail else said),
            f"run `xcodebuild -downloadComponent MetalToolchain` (Xcode 26 ships it separately), {fix}",
        )
    if found.returncode != 0 or version.returncode != 0:
        last = next((line for line in reversed(said.splitlines()) if line.strip()), "no output")
        raise MissingToolError(
            f"no working metal compiler; xcrun says: {last} (log: {log_path})",
            f"{BY_ID['build-toolchain'].fix}; {fix}",
        )
