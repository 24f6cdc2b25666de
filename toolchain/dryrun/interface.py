"""Does the tree's Objective-C interface still match our stand-in? Named answers, never a guess.

The Metal backend's Objective-C layer (``ggml-metal-device.m``, ``ggml-metal-context.m``) sits
behind the plain C interface of ``ggml-metal-device.h`` / ``ggml-metal-context.h``. The dry run
compiles everything else from the tree and replaces exactly that layer: every function declared
in those headers and defined in those ``.m`` files (except ``ggml_metal_device_supports_op``,
which is the oracle's cut of the tree's own body) must be defined by our stand-in with the same
signature, and the stand-in must define nothing the tree no longer declares. Anything else —
a missing file, a new function, a changed signature, a removed one — is a refusal that names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core.digests import stat_key
from ..core.tree import METAL_DIR, strip_comments

OBJC_FILES = (METAL_DIR / "ggml-metal-device.m", METAL_DIR / "ggml-metal-context.m")
HEADERS = (METAL_DIR / "ggml-metal-device.h", METAL_DIR / "ggml-metal-context.h")
# the C++ half of the backend, compiled unchanged
CXX_FILES = tuple(
    METAL_DIR / name
    for name in (
        "ggml-metal.cpp",
        "ggml-metal-device.cpp",
        "ggml-metal-ops.cpp",
        "ggml-metal-fusion.cpp",
        "ggml-metal-tuning.cpp",
        "ggml-metal-common.cpp",
    )
)
CUT = "ggml_metal_device_supports_op"  # provided by the oracle's cut, not by the stand-in
STANDIN = Path(__file__).parent / "native" / "toolchain_dryrun_standin.cpp"

_DECL = re.compile(r"^\s*(?:GGML_API\s+)?([A-Za-z_][\w\s\*]*?)\b(ggml_metal_\w+)\s*\((.*)\)\s*$", re.S)
_DEF = re.compile(r"^(?!static\b)[A-Za-z_][\w\s\*]*?\b(ggml_metal_\w+)\s*\(")


@dataclass(frozen=True)
class Signature:
    name: str
    text: str  # normalised: `ret name(params)` with whitespace collapsed
    where: str  # file:line


def normalise(ret: str, name: str, params: str) -> str:
    text = f"{ret} {name}({params})"
    text = " ".join(text.split())
    return re.sub(r"\s*([\*\(\),])\s*", r"\1", text)


def header_declarations(tree: Path) -> dict[str, Signature]:
    """Every ``ggml_metal_*`` function prototype in the two headers."""
    out: dict[str, Signature] = {}
    for rel in HEADERS:
        raw = (tree / rel).read_text(encoding="utf-8", errors="replace")
        clean = "\n".join(
            "" if line.lstrip().startswith("#") else line for line in strip_comments(raw).splitlines()
        )
        pos = 0
        for chunk in re.split(r"(;)", clean):
            if chunk != ";":
                body = re.sub(r"^.*[\{\}]", "", chunk, flags=re.S)  # drop what precedes a brace
                m = _DECL.match(body)
                if m and "typedef" not in m.group(1):
                    line = clean.count("\n", 0, pos + chunk.find(m.group(2))) + 1
                    out[m.group(2)] = Signature(
                        m.group(2), normalise(m.group(1), m.group(2), m.group(3)), f"{rel}:{line}"
                    )
            pos += len(chunk)
    return out


def column0_definitions(path: Path, label: str) -> dict[str, Signature]:
    """Non-static functions defined at column 0 (the signature runs up to the ``{``)."""
    lines = strip_comments(path.read_text(encoding="utf-8", errors="replace")).splitlines()
    out: dict[str, Signature] = {}
    for i, line in enumerate(lines):
        m = _DEF.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        j, text = i, line
        while "{" not in text and ";" not in text and j + 1 < len(lines):
            j += 1
            text += " " + lines[j]
        if "{" not in text or ";" in text.split("{", 1)[0]:
            continue
        sig = text.split("{", 1)[0]
        dm = _DECL.match(sig)
        if dm:
            out[m.group(1)] = Signature(
                m.group(1), normalise(dm.group(1), dm.group(2), dm.group(3)), f"{label}:{i + 1}"
            )
    return out


def objc_interface(tree: Path) -> dict[str, Signature]:
    """What the stand-in must provide: declared in the headers, defined in the ``.m`` files."""
    declared = header_declarations(tree)
    defined: set[str] = set()
    for rel in OBJC_FILES:
        defined |= set(column0_definitions(tree / rel, str(rel)))
    return {n: s for n, s in declared.items() if n in defined and n != CUT}


def standin_interface() -> dict[str, Signature]:
    return column0_definitions(STANDIN, f"toolchain/dryrun/native/{STANDIN.name}")


_CHECKED: dict[tuple[tuple[object, ...], ...], tuple[str, ...]] = {}


def mismatches(tree: Path) -> list[str]:
    """Why the stand-in does not fit this tree, one named item each; [] when it fits. Checked once
    per process while the tree's Metal files and the stand-in are unchanged."""
    key = stat_key([STANDIN, *(tree / rel for rel in (*HEADERS, *OBJC_FILES, *CXX_FILES))])
    if key not in _CHECKED:
        _CHECKED[key] = tuple(_mismatches(tree))
    return list(_CHECKED[key])


def _mismatches(tree: Path) -> list[str]:
    problems = [
        f"missing file: {rel}" for rel in (*HEADERS, *OBJC_FILES, *CXX_FILES) if not (tree / rel).is_file()
    ]
    if any(not (tree / rel).is_file() for rel in (*HEADERS, *OBJC_FILES)):
        return problems
    tree_fns = objc_interface(tree)
    ours = standin_interface()
    for name in sorted(set(tree_fns) - set(ours)):
        problems.append(f"new function {name} ({tree_fns[name].where}): `{tree_fns[name].text}`")
    for name in sorted(set(ours) - set(tree_fns)):
        problems.append(f"{name}: the stand-in defines it, this tree's Objective-C interface does not")
    for name in sorted(set(tree_fns) & set(ours)):
        if tree_fns[name].text != ours[name].text:
            problems.append(
                f"changed signature of {name} ({tree_fns[name].where}): tree `{tree_fns[name].text}`, "
                f"stand-in `{ours[name].text}`"
            )
    return problems
