"""The Metal library a device would load: the tree's ``.metal`` sources, preprocessed per profile.

- Sources: ``ggml/src/ggml-metal/kernels/*.metal`` (one library per file, as the loader compiles
  them) or, in older trees, the single ``ggml-metal.metal``. The embedded build (a Mac's default)
  carries the same text.
- Defines: what the tree's own loader (``ggml_metal_library_init`` in ``ggml-metal-device.m``)
  puts into ``MTLCompileOptions.preprocessorMacros``: each ``[prep setObject:@"1"
  forKey:@"NAME"]`` with the condition guarding it (a props field such as ``has_bfloat``, or a
  build define such as ``GGML_METAL_EMBED_LIBRARY``), recorded with file:line. Plus the one macro
  the Metal compiler itself defines that the sources test, ``__METAL_VERSION__``.
- Names: ``[[host_name("kernel_…")]]`` instantiations and plain ``kernel void kernel_…(``
  definitions on lines the preprocessor keeps (``#if``/``#ifdef``/``#elif``/``#else``,
  ``#define``/``#undef`` of plain names, quoted ``#include`` followed), each with file:line.

Not modelled: the Metal compiler itself (a kernel that exists by name but would not compile).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.digests import stat_key
from ..core.tree import METAL_DIR
from ..oracle.extract import DEVICE_M
from ..oracle.profiles import DeviceProfile

KERNELS_DIR = METAL_DIR / "kernels"
SINGLE_SOURCE = METAL_DIR / "ggml-metal.metal"
# The Metal language version newLibraryWithSource uses: the OS default (Metal 3.2 on macOS 15),
# 4.0 when the loader asks for the tensor API (ggml_metal_compile_options_set_lang).
METAL_VERSION_DEFAULT = 320
METAL_VERSION_TENSOR = 400
BUILD_DEFINES = {"GGML_METAL_EMBED_LIBRARY": True}  # the default Mac build: library embedded

_PREP = re.compile(r'\[\s*prep\s+setObject:\s*@"([^"]*)"\s+forKey:\s*@"(\w+)"\s*\]')
_PROP_IF = re.compile(r"if\s*\(\s*ggml_metal_device_get_props\(\s*dev\s*\)->(\w+)\s*\)")
_HASH_IF = re.compile(r"^\s*#\s*if\s+(?:defined\s*\(\s*)?(\w+)")
_HOST_NAME = re.compile(r'host_name\(\s*"(kernel_\w+)"\s*\)')
_KERNEL_FN = re.compile(r"^\s*kernel\s+void\s+(kernel_\w+)\s*\(")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


@dataclass(frozen=True)
class Define:
    name: str
    value: str
    condition: str  # "props.has_bfloat", "build GGML_METAL_EMBED_LIBRARY", "" (always), "metal compiler"
    active: bool
    where: str  # file:line (tree) or where the value comes from


@dataclass(frozen=True)
class KernelLibrary:
    profile: str
    sources: tuple[str, ...]
    defines: tuple[Define, ...]
    names: Mapping[str, str]  # kernel name -> file:line

    def has(self, name: str) -> bool:
        return name in self.names


def loader_defines(tree: Path, profile: DeviceProfile) -> tuple[Define, ...]:
    path = tree / DEVICE_M
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    props = profile.props_values()
    out: list[Define] = []
    has_tensor = False
    for i, line in enumerate(lines):
        m = _PREP.search(line)
        if not m:
            continue
        value, name = m.groups()
        prev = next((lines[j] for j in range(i - 1, max(-1, i - 4), -1) if lines[j].strip()), "")
        where = f"{DEVICE_M}:{i + 1}"
        if pm := _PROP_IF.search(prev):
            active = props.get(pm.group(1), "0") not in ("0", "", "false")
            condition = f"props.{pm.group(1)} = {props.get(pm.group(1), 'not in this profile')}"
        elif hm := _HASH_IF.match(prev):
            active = BUILD_DEFINES.get(hm.group(1), False)
            condition = f"build {hm.group(1)} ({'on' if active else 'off'}: the default Mac build)"
        else:
            active, condition = True, "always"
        if name == "GGML_METAL_HAS_TENSOR" and active:
            has_tensor = True
        out.append(Define(name, value, condition, active, where))
    version = METAL_VERSION_TENSOR if has_tensor else METAL_VERSION_DEFAULT
    out.append(
        Define(
            "__METAL_VERSION__",
            str(version),
            "metal compiler",
            True,
            "Metal language 4.0 (the loader's ggml_metal_compile_options_set_lang with the tensor API)"
            if has_tensor
            else "Metal language 3.2, newLibraryWithSource's default on macOS 15",
        )
    )
    return tuple(out)


def kernel_sources(tree: Path) -> tuple[Path, ...]:
    kernels = tree / KERNELS_DIR
    if kernels.is_dir():
        return tuple(sorted(kernels.glob("*.metal")))
    single = tree / SINGLE_SOURCE
    return (single,) if single.is_file() else ()


_BINARY: dict[str, Callable[[int, int], bool]] = {
    "||": lambda a, b: bool(a) or bool(b),
    "&&": lambda a, b: bool(a) and bool(b),
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


class _Expr:
    """A C preprocessor ``#if`` expression: defined(), integers, identifiers (0 when not defined),
    ! && || and comparisons."""

    _TOKEN = re.compile(r"\s*(defined|\d+[uUlL]*|[A-Za-z_]\w*|&&|\|\||==|!=|<=|>=|[<>!()])")

    def __init__(self, text: str, macros: Mapping[str, str]) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if not m:
                raise ValueError(f"cannot evaluate #if {text!r}")
            self.tokens.append(m.group(1))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.macros = macros
        self.i = 0

    def _peek(self) -> str:
        return self.tokens[self.i] if self.i < len(self.tokens) else ""

    def _take(self) -> str:
        tok = self._peek()
        self.i += 1
        return tok

    def value(self) -> int:
        v = self._or()
        if self.i != len(self.tokens):
            raise ValueError(f"trailing tokens in #if: {self.tokens[self.i :]}")
        return v

    def _or(self) -> int:
        return self._binary(("||",), self._and)

    def _and(self) -> int:
        return self._binary(("&&",), self._cmp)

    def _cmp(self) -> int:
        return self._binary(("==", "!=", "<", ">", "<=", ">="), self._unary)

    def _binary(self, ops: tuple[str, ...], operand: Callable[[], int]) -> int:
        """``operand (op operand)*`` for one precedence level, left to right (both sides always parsed)."""
        v = operand()
        while self._peek() in ops:
            op = self._take()
            v = int(_BINARY[op](v, operand()))
        return v

    def _unary(self) -> int:
        tok = self._take()
        if tok == "!":
            return int(not self._unary())
        if tok == "(":
            v = self._or()
            if self._take() != ")":
                raise ValueError("unbalanced parentheses in #if")
            return v
        if tok == "defined":
            paren = self._peek() == "("
            if paren:
                self._take()
            name = self._take()
            if paren and self._take() != ")":
                raise ValueError("unbalanced defined( in #if")
            return int(name in self.macros)
        if tok[:1].isdigit():
            return int(tok.rstrip("uUlL"))
        if tok in self.macros:
            val = self.macros[tok].strip() or "0"
            return int(val) if val.isdigit() else 0
        return 0  # an identifier that is not a macro is 0 in #if


def _scan(
    path: Path,
    root: Path,
    macros: dict[str, str],
    include_dirs: Sequence[Path],
    names: dict[str, str],
    seen: set[Path],
) -> None:
    if path in seen:
        return
    seen.add(path)
    stack: list[tuple[bool, bool]] = []  # (this branch active, some branch already taken)
    active = True
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    i = 0
    while i < len(lines):
        line = lines[i]
        n = i + 1
        while line.endswith("\\") and n < len(lines):  # continued lines: one logical line
            line = line[:-1] + " " + lines[n]
            n += 1
        stripped = line.strip()
        directive = re.match(r"#\s*(\w+)\s*(.*)", stripped)
        if directive:
            kw, rest = directive.groups()
            rest = re.sub(r"//.*$|/\*.*?\*/", "", rest).strip()
            if kw in ("if", "ifdef", "ifndef"):
                if kw == "if":
                    cond = bool(_Expr(rest, macros).value()) if active else False
                elif kw == "ifdef":
                    cond = rest.split()[0] in macros
                else:
                    cond = rest.split()[0] not in macros
                stack.append((active, cond))
                active = active and cond
            elif kw == "elif":
                outer, taken = stack[-1]
                cond = (not taken) and outer and bool(_Expr(rest, macros).value())
                stack[-1] = (outer, taken or cond)
                active = cond
            elif kw == "else":
                outer, taken = stack[-1]
                active = outer and not taken
                stack[-1] = (outer, True)
            elif kw == "endif":
                active = stack.pop()[0] if stack else True
                # restore: the enclosing branch's activity is the outer flag
            elif active and kw == "define":
                parts = rest.split(None, 1)
                if parts and "(" not in parts[0]:
                    macros[parts[0]] = parts[1] if len(parts) > 1 else ""
            elif active and kw == "undef":
                macros.pop(rest.split()[0], None)
            elif active and kw == "include":
                inc = _INCLUDE.match(stripped)
                if inc:
                    for d in (path.parent, *include_dirs):
                        cand = d / inc.group(1)
                        if cand.is_file():
                            _scan(cand.resolve(), root, macros, include_dirs, names, seen)
                            break
        elif active:
            for m in _HOST_NAME.finditer(line):
                names.setdefault(m.group(1), f"{rel}:{i + 1}")
            km = _KERNEL_FN.match(line)
            if km:
                names.setdefault(km.group(1), f"{rel}:{i + 1}")
        i = n


_LIBRARIES: dict[tuple[object, ...], KernelLibrary] = {}


def kernel_library(tree: Path, profile: DeviceProfile) -> KernelLibrary:
    """Every kernel name the device's library would hold, with where each is instantiated. Scanned
    once per process and profile while the Metal sources and ggml's headers are unchanged (the
    matrix asks once per model)."""
    tree = tree.resolve()
    files = sorted([*(tree / METAL_DIR).rglob("*"), *(tree / "ggml" / "src").glob("*.h")])
    key = (profile, stat_key(files))
    if key not in _LIBRARIES:
        _LIBRARIES[key] = _kernel_library(tree, profile)
    return _LIBRARIES[key]


def _kernel_library(tree: Path, profile: DeviceProfile) -> KernelLibrary:
    defines = loader_defines(tree, profile)
    base = {d.name: d.value for d in defines if d.active}
    include_dirs = [tree / METAL_DIR, tree / "ggml" / "src", tree / KERNELS_DIR]
    names: dict[str, str] = {}
    sources = kernel_sources(tree)
    for src in sources:
        # each source is its own library (its own translation unit): fresh macros and includes
        _scan(src.resolve(), tree, dict(base), include_dirs, names, set())
    return KernelLibrary(profile.name, tuple(str(s.relative_to(tree)) for s in sources), defines, names)


def names_in_text(text: str, defines: Mapping[str, str]) -> set[str]:
    """Kernel names in one Metal source text (e.g. read out of a binary), with these defines."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "library.metal"
        path.write_text(text, encoding="utf-8")
        names: dict[str, str] = {}
        _scan(path, Path(tmp), dict(defines), [], names, set())
    return set(names)
