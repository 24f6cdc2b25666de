"""What a checked-out llama.cpp tree offers, read from the tree itself before configuring.

Option names drift (LLAMA_CURL → LLAMA_OPENSSL, LLAMA_BUILD_WEBUI → LLAMA_BUILD_UI,
GGML_METAL_USE_BF16 removed …), so the build passes an optional option only where the tree
declares it. Deprecated options (``llama_option_depr``) count as not offered. Which targets exist
is read after configuring, from CMake's File API (see ``cmake.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..tree import CONVERT_SCRIPT, has_metal_sources

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
