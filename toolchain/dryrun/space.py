"""The space the sweep covers, read from the tree: what its Metal encoders branch on.

- **Types**: every ``ggml_type`` with a block size in the tree's ``ggml.c`` type-traits table
  (removed and deprecated types have block size 0 and are left out: ggml itself cannot size them).
- **Thresholds**: the integer constants the encoder functions of ``ggml-metal-ops.cpp`` compare
  a tensor dimension with (``ne11 >= 2 && ne11 <= 8``, ``ne00 % 128 == 0``, ``ne11 > ne11_mm_min``
  with ``const int ne11_mm_min = 8``…), per function, with file:line. The sweep takes each
  constant and its neighbours, so each side of every branch is encoded.
- **Head sizes and experts per token**: the values the kernel library instantiates
  (``host_name("kernel_flash_attn_ext_…_dk96_dv96")``, ``kernel_mul_mm_id_map0_ne20_8``), the
  values the tree's ``supports_op`` names, and the range models use (experts per token 1…32,
  expert counts up to 512), so what is *not* instantiated is encoded too.
- **Kernel-name formats**: the ``snprintf(base, …, "kernel_…%s…%d")`` formats the pipeline lookups
  of ``ggml-metal-device.cpp`` use; a finding's missing kernel is matched to its format, which is
  how findings are grouped into classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.tree import METAL_DIR, strip_comments
from .library import KernelLibrary

GGML_C = Path("ggml/src/ggml.c")
GGML_COMMON = Path("ggml/src/ggml-common.h")
OPS_CPP = METAL_DIR / "ggml-metal-ops.cpp"
DEVICE_CPP = METAL_DIR / "ggml-metal-device.cpp"
DEVICE_M = METAL_DIR / "ggml-metal-device.m"

# the ranges real models use (config.json: num_experts_per_tok, num_experts; head_dim): the sweep
# covers them whole, whatever the library instantiates
EXPERTS_PER_TOKEN = tuple(range(1, 33))
EXPERT_COUNTS = (8, 32, 64, 128, 256, 512)
COMMON_HEAD_SIZES = (32, 40, 48, 64, 72, 80, 96, 112, 128, 192, 256, 512, 576)

_TRAIT = re.compile(r"\[\s*GGML_TYPE_(\w+)\s*\]\s*=\s*\{(.*?)\n\s*\}", re.S)
_TYPE_NAME = re.compile(r'\.type_name\s*=\s*"([^"]*)"')
_BLCK = re.compile(r"\.blck_size\s*=\s*(\w+)")
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+\(?\s*(\d+)\s*\)?\s*(?://.*)?$", re.M)
_FUNC = re.compile(r"^[A-Za-z_][\w\s\*]*?\b(ggml_metal_op_\w+)\s*\([^;{]*\)\s*\{", re.M)
_CONST = re.compile(
    r"\bconst(?:expr)?\s+(?:int|int32_t|int64_t|uint32_t|short|size_t)\s+(\w+)\s*=\s*(\d+)\s*;"
)
_CMP = re.compile(r"\b(ne\d{1,2}|nb\d{1,2}|\w+)\s*(<=|>=|<|>|==|!=|%)\s*(\w+)")
_CMP_REV = re.compile(r"\b(\d+)\s*(<=|>=|<|>)\s*(ne\d{1,2})\b")
_FORMAT = re.compile(r'snprintf\(\s*base\s*,\s*[^,]+,\s*"(kernel_[^"]*)"')
_FA_SIZES = re.compile(r"_dk(\d+)_dv(\d+)")
_MAP0 = re.compile(r"^kernel_mul_mm_id_map0_ne20_(\d+)$")
_SUPPORTS_HEAD = re.compile(r"op->src\[[012]\]->ne\[0\]\s*!=\s*(\d+)")


@dataclass(frozen=True)
class TypeInfo:
    name: str  # ggml_type_name: "q8_0", "bf16"
    block: int  # elements per block


@dataclass(frozen=True)
class Threshold:
    function: str  # the encoder function, e.g. ggml_metal_op_mul_mat
    variable: str  # ne00, ne11, ne20 …
    relation: str  # <, <=, %, == …
    value: int
    where: str  # file:line


@dataclass(frozen=True)
class KernelFormat:
    text: str  # "kernel_mul_mm_id_map0_ne20_%d"
    where: str  # file:line


@dataclass(frozen=True)
class Space:
    types: tuple[TypeInfo, ...]
    thresholds: tuple[Threshold, ...]
    formats: tuple[KernelFormat, ...]
    head_sizes: tuple[int, ...]  # K and V head sizes the sweep pairs
    head_sizes_from: str  # where those came from
    experts_per_token: tuple[int, ...]
    instantiated_experts_per_token: tuple[int, ...]  # kernel_mul_mm_id_map0_ne20_N in the library
    expert_counts: tuple[int, ...]

    def type_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    def values(
        self, functions: Iterable[str], variable: str, *, floor: int = 1, cap: int = 1 << 20
    ) -> set[int]:
        """Each constant ``variable`` is compared with in ``functions`` (prefixes), and its
        neighbours: both sides of every branch. For ``%``: the modulus and a non-multiple."""
        prefixes = tuple(functions)
        out: set[int] = set()
        for t in self.thresholds:
            if t.variable != variable or not t.function.startswith(prefixes):
                continue
            if t.relation == "%":
                out.update((t.value, t.value + max(1, t.value // 2)))
            else:
                out.update((t.value - 1, t.value, t.value + 1))
        return {v for v in out if floor <= v <= cap}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def types_of(tree: Path) -> tuple[TypeInfo, ...]:
    """The tree's types with a block size (ggml.c ``type_traits``), in enum order of appearance."""
    macros = {m.group(1): int(m.group(2)) for m in _DEFINE.finditer(_read(tree / GGML_COMMON))}
    out: list[TypeInfo] = []
    for m in _TRAIT.finditer(_read(tree / GGML_C)):
        body = m.group(2)
        name, blck = _TYPE_NAME.search(body), _BLCK.search(body)
        if not name or not blck:
            continue
        raw = blck.group(1)
        block = int(raw) if raw.isdigit() else macros.get(raw, 0)
        if block <= 0 or not re.fullmatch(r"[a-z0-9_]+", name.group(1), re.I):
            continue
        out.append(TypeInfo(name.group(1), block))
    return tuple(out)


def _functions(text: str) -> list[tuple[str, int, str]]:
    """(name, first line, body) of each ``ggml_metal_op_*`` function definition."""
    out: list[tuple[str, int, str]] = []
    for m in _FUNC.finditer(text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out.append((m.group(1), text.count("\n", 0, m.start()) + 1, text[m.end() : i]))
    return out


def thresholds_of(tree: Path) -> tuple[Threshold, ...]:
    text = strip_comments(_read(tree / OPS_CPP))
    out: list[Threshold] = []
    for name, line0, body in _functions(text):
        consts = {m.group(1): int(m.group(2)) for m in _CONST.finditer(body)}
        for lineno, line in enumerate(body.splitlines(), start=line0):
            where = f"{OPS_CPP}:{lineno}"
            for m in _CMP.finditer(line):
                var, rel, rhs = m.groups()
                if not re.fullmatch(r"ne\d{1,2}", var):
                    continue
                value = int(rhs) if rhs.isdigit() else consts.get(rhs)
                if value is not None:
                    out.append(Threshold(name, var, rel, value, where))
            for m in _CMP_REV.finditer(line):
                out.append(Threshold(name, m.group(3), m.group(2), int(m.group(1)), where))
    return tuple(dict.fromkeys(out))


def formats_of(tree: Path) -> tuple[KernelFormat, ...]:
    out: list[KernelFormat] = []
    for rel in (DEVICE_CPP, OPS_CPP):
        for lineno, line in enumerate(_read(tree / rel).splitlines(), start=1):
            for m in _FORMAT.finditer(line):
                out.append(KernelFormat(m.group(1), f"{rel}:{lineno}"))
    return tuple(out)


def space_of(tree: Path, libraries: Mapping[str, KernelLibrary]) -> Space:
    names = {n for lib in libraries.values() for n in lib.names}
    fa = {int(v) for n in names for pair in _FA_SIZES.findall(n) for v in pair}
    supports = {int(v) for v in _SUPPORTS_HEAD.findall(_read(tree / DEVICE_M))}
    heads = tuple(sorted(fa | supports | set(COMMON_HEAD_SIZES)))
    map0 = tuple(sorted({int(m.group(1)) for n in names if (m := _MAP0.match(n))}))
    return Space(
        types_of(tree),
        thresholds_of(tree),
        formats_of(tree),
        heads,
        "the library's kernel_flash_attn_ext_*_dk*_dv* instantiations, the head sizes supports_op "
        "names (ggml-metal-device.m) and the common model head sizes",
        EXPERTS_PER_TOKEN,
        map0,
        EXPERT_COUNTS,
    )
