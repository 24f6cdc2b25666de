"""Cut ``ggml_metal_device_supports_op`` and the helpers it calls out of a checked-out tree.

Never from a copy of ours: the oracle must follow the pinned tree exactly. The cut is textual and
deliberately strict, so that it breaks loudly instead of silently:

- a function definition starts at column 0 (its name followed by ``(`` on that line, the line not
  ending in ``;``) and ends at the first ``}`` at column 0;
- every identifier called in a cut body that is *defined* in the Metal backend's own sources
  (``ggml-metal-device.m``, ``ggml-metal-common.cpp``) is cut too, transitively; everything else
  must come from the tree's headers and libggml-base (the compile proves it);
- bodies from the ``.m`` are compiled as C (Objective-C is a superset of C; the body must not use
  what C lacks), bodies from ``ggml-metal-common.cpp`` as C++; each keeps its file's quoted
  includes only (no Foundation/Metal);
- refused, each with its reason: the function missing or renamed, a ``dev->`` access other than
  ``dev->props.<field>``, Objective-C in a body (``@``, ``[obj msg]`` sends, ``nil``, ``id<``),
  ``getenv`` (a run-time switch the oracle could not know), a preprocessor conditional inside a
  body, a macro or file-scope constant defined in the ``.m`` itself and used in a body, or a
  ``dev->props`` field the props struct in ``ggml-metal-device.h`` does not declare.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.digests import stat_key
from ..core.tree import METAL_DIR, strip_comments

ENTRY = "ggml_metal_device_supports_op"
DEVICE_M = METAL_DIR / "ggml-metal-device.m"
DEVICE_H = METAL_DIR / "ggml-metal-device.h"
# Where helpers may be defined, and the language their bodies are compiled as.
HELPER_SOURCES: tuple[tuple[Path, str], ...] = (
    (DEVICE_M, "c"),
    (METAL_DIR / "ggml-metal-common.cpp", "cxx"),
)

_C_KEYWORDS = frozenset(
    "if for while switch return sizeof case default break continue do else goto typedef struct enum "
    "union static const volatile inline extern bool int char float double void long short unsigned "
    "signed size_t int64_t int32_t uint64_t uint32_t _Static_assert static_assert defined".split()
)
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)", re.M)
_FILE_SCOPE_CONST = re.compile(r"^static\s+const\s+[\w\s\*]+?\b([A-Za-z_]\w*)\s*=", re.M)
_INCLUDE = re.compile(r'^\s*#\s*(?:include|import)\s+"([^"]+)"', re.M)
_PROPS_FIELD = re.compile(r"\bdev->props\.(\w+)")
_DEV_ACCESS = re.compile(r"\bdev->(\w+)")


class ExtractionFailed(Exception):
    """The tree's supports_op cannot be cut out faithfully; ``reason`` says exactly why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CutFunction:
    name: str
    file: str  # relative to the tree
    first_line: int  # 1-based
    last_line: int
    language: str  # "c" or "cxx"
    text: str


@dataclass(frozen=True)
class PropsField:
    name: str
    c_type: str


@dataclass(frozen=True)
class Extraction:
    """What was cut, from where, and the sources to compile (written by the probe builder)."""

    tree: Path
    functions: tuple[CutFunction, ...]  # in source order per file
    includes: dict[str, tuple[str, ...]]  # language -> quoted includes kept
    props_fields: tuple[PropsField, ...]  # struct ggml_metal_device_props, in declaration order
    props_used: tuple[str, ...]  # fields the cut bodies read
    digest: str  # sha256 of the generated sources: the probe cache key (with the tree commit)

    def source(self, language: str) -> str:
        """The translation unit for one language: quoted includes, the shim, the cut bodies."""
        lines = ["// cut from the llama.cpp tree by toolchain.oracle.extract: do not edit", ""]
        lines += [f'#include "{inc}"' for inc in self.includes[language]]
        if language == "c":
            lines.append('#include "toolchain_device.h"')
        lines.append("")
        for fn in self.functions:
            if fn.language == language:
                lines.append(f'#line {fn.first_line} "{fn.file}"')
                lines.append(fn.text)
                lines.append("")
        return "\n".join(lines) + "\n"


def _find_definition(lines: list[str], name: str) -> tuple[int, int] | None:
    """(first, last) 0-based line indices of the column-0 definition of ``name``, if any."""
    pattern = re.compile(rf"^[A-Za-z_][\w\s\*]*?\b{re.escape(name)}\s*\(")
    for i, line in enumerate(lines):
        if not pattern.match(line) or line.rstrip().endswith(";"):
            continue
        # a prototype may span lines: it is a definition only if a `{` comes before a `;`
        j = i
        while j < len(lines) and "{" not in lines[j] and ";" not in lines[j]:
            j += 1
        if j >= len(lines) or ";" in lines[j].split("{", 1)[0]:
            continue
        for k in range(j, len(lines)):
            if lines[k].rstrip() == "}" or lines[k].startswith("};"):
                return i, k
        return None
    return None


def _props_struct(header: str) -> tuple[PropsField, ...]:
    match = re.search(r"struct\s+ggml_metal_device_props\s*\{(.*?)\};", strip_comments(header), re.S)
    if not match:
        raise ExtractionFailed(
            f"{DEVICE_H}: no `struct ggml_metal_device_props {{ … }};` to build the shim from"
        )
    fields: list[PropsField] = []
    for decl in match.group(1).split(";"):
        decl = " ".join(decl.split())
        if not decl:
            continue
        m = re.fullmatch(r"(.+?)\s*\b(\w+)\s*(\[\s*\w+\s*\])?", decl)
        if not m:
            raise ExtractionFailed(f"{DEVICE_H}: cannot read the props field declaration {decl!r}")
        c_type = m.group(1).strip() + (m.group(3) or "")
        fields.append(PropsField(m.group(2), c_type))
    return tuple(fields)


def _refusals(fn: CutFunction, body: str, local_names: set[str], fields: set[str]) -> list[str]:
    where = f"{fn.name} ({fn.file}:{fn.first_line})"
    problems: list[str] = []
    for m in _DEV_ACCESS.finditer(body):
        if m.group(1) != "props":
            problems.append(f"{where} reads dev->{m.group(1)}, outside the props the shim can supply")
    for m in _PROPS_FIELD.finditer(body):
        if m.group(1) not in fields:
            problems.append(f"{where} reads dev->props.{m.group(1)}, not declared in {DEVICE_H}")
    if fn.language == "c":
        objc = re.search(r"@\w+|\[\s*[A-Za-z_][\w>\-\.]*\s+[A-Za-z_]\w*\s*[:\]]|\bnil\b|\bid\s*<", body)
        if objc:
            problems.append(f"{where} contains Objective-C ({objc.group(0)!r})")
    if re.search(r"\bgetenv\s*\(", body):
        problems.append(f"{where} reads an environment variable at run time (getenv)")
    cond = re.search(r"^\s*#\s*(if|ifdef|ifndef|elif)\b.*$", body, re.M)
    if cond:
        problems.append(f"{where} has a preprocessor conditional inside ({cond.group(0).strip()!r})")
    used_local = sorted(n for n in local_names if re.search(rf"\b{re.escape(n)}\b", body))
    if used_local:
        problems.append(
            f"{where} uses macro(s) or constant(s) defined in {fn.file} itself: {', '.join(used_local)}"
        )
    return problems


_EXTRACTED: dict[tuple[tuple[object, ...], ...], Extraction] = {}


def extract(tree: Path) -> Extraction:
    """Cut the entry function and its helpers out of ``tree``; raise ExtractionFailed with why not.
    Done once per process while the files it reads are unchanged (the matrix asks once per model)."""
    key = stat_key([tree / DEVICE_M, tree / DEVICE_H, *(tree / rel for rel, _language in HELPER_SOURCES)])
    if key not in _EXTRACTED:
        _EXTRACTED[key] = _extract(tree)
    return _EXTRACTED[key]


def _extract(tree: Path) -> Extraction:
    device_m = tree / DEVICE_M
    if not device_m.is_file():
        raise ExtractionFailed(
            f"{DEVICE_M} is missing: this tree has no (or a differently laid out) Metal backend"
        )
    header = tree / DEVICE_H
    if not header.is_file():
        raise ExtractionFailed(f"{DEVICE_H} is missing: no props struct to build the shim from")
    fields = _props_struct(header.read_text(encoding="utf-8", errors="replace"))
    field_names = {f.name for f in fields}

    sources: dict[Path, tuple[str, list[str], list[str]]] = {}  # path -> (language, raw lines, clean lines)
    for rel, language in HELPER_SOURCES:
        path = tree / rel
        if path.is_file():
            raw = path.read_text(encoding="utf-8", errors="replace")
            sources[rel] = (language, raw.splitlines(), strip_comments(raw).splitlines())

    m_clean = "\n".join(sources[DEVICE_M][2])
    local_names = set(_DEFINE.findall(m_clean)) | set(_FILE_SCOPE_CONST.findall(m_clean))

    found: dict[str, CutFunction] = {}
    bodies: dict[str, str] = {}
    pending = [ENTRY]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        hit: tuple[Path, int, int] | None = None
        for rel, (_lang, _raw, clean_lines) in sources.items():
            span = _find_definition(clean_lines, name)
            if span:
                hit = (rel, *span)
                break
        if hit is None:
            if name == ENTRY:
                raise ExtractionFailed(
                    f"{ENTRY} is not defined at column 0 in {DEVICE_M} or the other Metal sources: "
                    "renamed or moved upstream"
                )
            continue  # from the ggml headers / libggml-base: the compile will prove it
        rel, first, last = hit
        language, raw_lines, clean_lines = sources[rel]
        fn = CutFunction(
            name, str(rel), first + 1, last + 1, language, "\n".join(raw_lines[first : last + 1])
        )
        found[name] = fn
        bodies[name] = "\n".join(clean_lines[first : last + 1])
        for call in _CALL.findall(bodies[name]):
            if call not in _C_KEYWORDS and call not in found and call != name:
                pending.append(call)

    problems: list[str] = []
    for name, fn in found.items():
        problems += _refusals(
            fn, bodies[name], local_names if fn.file == str(DEVICE_M) else set(), field_names
        )
    if problems:
        raise ExtractionFailed("; ".join(problems))

    order = {str(rel): i for i, (rel, _l) in enumerate(HELPER_SOURCES)}
    functions = tuple(sorted(found.values(), key=lambda f: (order[f.file], f.first_line)))
    includes: dict[str, tuple[str, ...]] = {}
    for language, raw_lines, _clean in sources.values():
        if language not in includes:
            includes[language] = tuple(dict.fromkeys(_INCLUDE.findall("\n".join(raw_lines))))
    includes.setdefault("cxx", ())
    used = tuple(sorted({f for b in bodies.values() for f in _PROPS_FIELD.findall(b)}))
    draft = Extraction(tree, functions, includes, fields, used, "")
    digest = hashlib.sha256((draft.source("c") + draft.source("cxx") + repr(fields)).encode()).hexdigest()
    return Extraction(tree, functions, includes, fields, used, digest)
