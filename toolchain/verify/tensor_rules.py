"""When a llama.cpp tree lets its Metal backend use the Metal 4 tensor API, read from the tree.

Nothing here is a copy of ours: every condition is found in the checked-out tree and carries its
``file:line``. What is read (the 0.3.36 layout; an older tree simply lacks some of it):

- ``ggml-metal-device.m``: the ``props.has_tensor = [… supportsFamily:<family>]`` line (the
  family constant's value from its ``static const NSInteger`` line), the device-name test that
  turns it off (``containsString:@"M5"`` …), any ``__MAC_OS_X_VERSION_MAX_ALLOWED`` (SDK) /
  ``__MAC_OS_X_VERSION_MIN_REQUIRED`` (deployment target) preprocessor guard around that line and
  any ``@available`` / ``__builtin_available`` block holding it, and the separate tensor metallib a
  non-embedded build loads (``ggml_metal_find_metallib(bundle, @"ggml-tensor")``);
- ``ggml-metal/CMakeLists.txt``: the SDK version below which that metallib is not built
  (``METAL_SDK_VERSION VERSION_GREATER_EQUAL 26.0`` -> ``GGML_METAL_HAS_TENSOR_LIB``) and the OS
  its kernels target (``-mtargetos=…26.0``).

A tree without ``props.has_tensor`` has no tensor API: that is a fact about the tree, not a failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..core.tree import METAL_DIR
from ..errors import VerifyError

DEVICE_M = METAL_DIR / "ggml-metal-device.m"
METAL_CMAKE = METAL_DIR / "CMakeLists.txt"

# sdk: the SDK the binary was built with (LC_BUILD_VERSION sdk); minos: its deployment target;
# runtime-os: the macOS an M5 must run; family / device-name: what the device must report;
# metallib: a file that must sit beside the programs (non-embedded builds).
What = Literal["sdk", "minos", "runtime-os", "family", "device-name", "metallib"]
Applies = Literal["all", "embedded", "not-embedded"]

# dev->props.has_tensor = [dev->mtl_device supportsFamily:MTLGPUFamilyMetal4_GGML];
_FAMILY = re.compile(r"props\.has_tensor\s*=\s*\[.*supportsFamily:\s*(\w+)\s*\]")
# static const NSInteger MTLGPUFamilyMetal4_GGML = 5002;
_CONST = r"^\s*static\s+const\s+NSInteger\s+{name}\s*=\s*(\d+)\s*;"
# ![[dev->mtl_device name] containsString:@"M5"] &&
_NAME_TEST = re.compile(r'!\s*\[\[[^\]]*\bname\]\s+containsString:\s*@"([^"]+)"\]')
# NSString * path_mm = ggml_metal_find_metallib(bundle, @"ggml-tensor");
_TENSOR_LIB = re.compile(r'ggml_metal_find_metallib\s*\(\s*\w+\s*,\s*@"([^"]+)"\s*\)')
# #if … __MAC_OS_X_VERSION_MAX_ALLOWED >= 260000 (the SDK) / _MIN_REQUIRED (the deployment target)
_GUARDS = (
    ("sdk", re.compile(r"__MAC_OS_X_VERSION_MAX_ALLOWED\s*>=\s*(\d+)")),
    ("minos", re.compile(r"__MAC_OS_X_VERSION_MIN_REQUIRED\s*>=\s*(\d+)")),
)
# if (@available(macOS 26.0, …)) / if (__builtin_available(macOS 26.0, …))
_AVAILABLE = re.compile(r"(?:@available|__builtin_available)\s*\(\s*macOS\s+([\d.]+)")
# CMakeLists.txt: the SDK below which ggml-tensor.metallib is not built
# (if (METAL_SDK_VERSION VERSION_GREATER_EQUAL 26.0) set(GGML_METAL_HAS_TENSOR_LIB ON)), and the
# OS its kernels are compiled for (-mtargetos=${GGML_METAL_TARGET_OS}26.0)
_CMAKE: tuple[tuple[What, re.Pattern[str], Applies], ...] = (
    ("sdk", re.compile(r"METAL_SDK_VERSION\s+VERSION_GREATER_EQUAL\s+([\d.]+)"), "not-embedded"),
    ("runtime-os", re.compile(r"-mtargetos=\$\{GGML_METAL_TARGET_OS\}([\d.]+)"), "all"),
)


@dataclass(frozen=True)
class Condition:
    """One thing the tree requires before its Metal backend uses the tensor API."""

    what: What
    value: str  # "26.0", "MTLGPUFamilyMetal4_GGML (5002)", "M5", "ggml-tensor.metallib"
    source: str  # "ggml/src/ggml-metal/ggml-metal-device.m:1145"
    applies: Applies = "all"


@dataclass(frozen=True)
class TensorRules:
    tree: Path
    has_tensor_api: bool
    conditions: tuple[Condition, ...] = ()
    why_none: str = ""  # when has_tensor_api is False: what the tree lacks

    def of(self, what: What, embedded: bool | None) -> tuple[Condition, ...]:
        """The conditions of one kind that apply to a build (embedded or not; None: unknown)."""
        skip = {"not-embedded": embedded is True, "embedded": embedded is False}
        return tuple(c for c in self.conditions if c.what == what and not skip.get(c.applies, False))


def _macro_version(number: str) -> str:
    """__MAC_OS_X_VERSION_* numbers: 150000 -> "15.0", 101500 -> "10.15", 1015 -> "10.15"."""
    n = int(number)
    if n < 10000:  # the old four-digit form (1015)
        return f"{n // 100}.{n % 100}"
    major, minor = n // 10000, (n // 100) % 100
    return f"{major}.{minor}"


def _active_guards(lines: list[str], upto: int) -> list[tuple[int, str]]:
    """(1-based line, text) of every preprocessor conditional still open at line ``upto``
    (0-based), continued lines joined."""
    stack: list[tuple[int, str]] = []
    i = 0
    while i < upto:
        text, start = lines[i], i
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i]
        stripped = text.strip()
        if re.match(r"#\s*if", stripped):
            stack.append((start + 1, stripped))
        elif re.match(r"#\s*elif", stripped) and stack:
            stack[-1] = (start + 1, stripped)
        elif re.match(r"#\s*else", stripped) and stack:
            stack[-1] = (stack[-1][0], "#else of " + stack[-1][1])
        elif re.match(r"#\s*endif", stripped) and stack:
            stack.pop()
        i += 1
    return stack


def _block_end(lines: list[str], start: int) -> int:
    """0-based line where the ``{`` block opened on or after ``start`` closes (brace count)."""
    depth, opened = 0, False
    for i in range(start, len(lines)):
        for ch in lines[i]:
            if ch == "{":
                depth, opened = depth + 1, True
            elif ch == "}":
                depth -= 1
                if opened and depth == 0:
                    return i
    return len(lines) - 1


def _statement(lines: list[str], start: int) -> tuple[str, int]:
    """An ``if (…)`` condition from ``start`` up to the line holding its ``{``, and that line."""
    text, i = lines[start], start
    while "{" not in lines[i] and i + 1 < len(lines) and i - start < 20:
        i += 1
        text += " " + lines[i]
    return text, i


def read_tensor_rules(tree: Path) -> TensorRules:
    """The tensor API's conditions in ``tree`` (see the module docstring)."""
    device_m = tree / DEVICE_M
    if not device_m.is_file():
        return TensorRules(
            tree, False, why_none=f"this tree has no {DEVICE_M} (no Metal backend of this layout)"
        )
    lines = device_m.read_text(encoding="utf-8", errors="replace").splitlines()
    src = str(DEVICE_M)
    fam_at = next((i for i, line in enumerate(lines) if _FAMILY.search(line)), None)
    if fam_at is None:
        return TensorRules(
            tree,
            False,
            why_none=f"this tree has no tensor API (no props.has_tensor = … supportsFamily in {src})",
        )
    conds: list[Condition] = []
    family = _FAMILY.search(lines[fam_at])
    assert family is not None
    name = family.group(1)
    value = next(
        (m.group(1) for line in lines if (m := re.match(_CONST.format(name=re.escape(name)), line))), None
    )
    conds.append(Condition("family", f"{name} ({value})" if value else name, f"{src}:{fam_at + 1}"))
    for line_no, text in _active_guards(lines, fam_at):
        for what, pattern in _GUARDS:
            for m in pattern.finditer(text):
                if not text.startswith("#else"):
                    conds.append(Condition(what, _macro_version(m.group(1)), f"{src}:{line_no}"))  # type: ignore[arg-type]
    for i in range(fam_at):
        m = _AVAILABLE.search(lines[i])
        if m and _block_end(lines, i) >= fam_at:
            conds.append(Condition("runtime-os", m.group(1), f"{src}:{i + 1}"))
    # the device-name test after the family line: if (…!containsString:@"M5"… ) { has_tensor = false; }
    for i in range(fam_at + 1, min(len(lines), fam_at + 80)):
        if not re.match(r"\s*if\s*\(", lines[i]):
            continue
        cond, brace = _statement(lines, i)
        names = _NAME_TEST.findall(cond)
        body = "\n".join(lines[brace : _block_end(lines, brace) + 1])
        if names and re.search(r"props\.has_tensor\s*=\s*false", body):
            conds.extend(Condition("device-name", n, f"{src}:{i + 1}") for n in names)
            break
    for i, line in enumerate(lines):
        m = _TENSOR_LIB.search(line)
        if m and "tensor" in m.group(1):
            conds.append(Condition("metallib", f"{m.group(1)}.metallib", f"{src}:{i + 1}", "not-embedded"))
    cmake = tree / METAL_CMAKE
    if cmake.is_file():
        clines = cmake.read_text(encoding="utf-8", errors="replace").splitlines()
        for i, line in enumerate(clines):
            for what, pattern, applies in _CMAKE:
                m = pattern.search(line)
                sets_lib = any("GGML_METAL_HAS_TENSOR_LIB" in nxt for nxt in clines[i + 1 : i + 3])
                if m and (what != "sdk" or sets_lib):
                    conds.append(Condition(what, m.group(1), f"{METAL_CMAKE}:{i + 1}", applies))
    return TensorRules(tree, True, tuple(dict.fromkeys(conds)))


def tree_of(cache: Mapping[str, str], given: Path | None) -> Path | None:
    """The tree to read: the one given, else the build dir's source (CMakeCache CMAKE_HOME_DIRECTORY)."""
    if given is not None:
        if not given.expanduser().is_dir():
            raise VerifyError(
                f"--tree {given} is not a folder", "give the llama.cpp checkout the build was made from"
            )
        return given.expanduser()
    home = cache.get("CMAKE_HOME_DIRECTORY")
    return Path(home) if home and (Path(home) / METAL_DIR).is_dir() else None
