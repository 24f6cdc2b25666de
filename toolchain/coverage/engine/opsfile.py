"""The exporter's ops file, made safe for ``test-backend-ops test`` without changing what it tests.

``test-backend-ops --test-file`` rebuilds each exported op (``test_generic_op``) and fills its
sources with random values. Integer index sources of GET_ROWS get valid row numbers
(``0 … src0.ne[1]-1``), but they are written as one contiguous block of ``nelements`` values: when
the exported index is a strided view (MoE routing: the top-k columns of an argsort over all
experts, ``i32[2,256] nb[4,16,…]``) the values land in the first bytes of the backing buffer and
the rows the view reads further on stay uninitialised. The CPU reference's bounds check then
aborts on garbage (``ggml-cpu/ops.cpp: GGML_ASSERT(i01 >= 0 && i01 < ne01)``), at random.

The rewrite keeps every op, type, shape and parameter and makes only such index views contiguous
(their ``nb`` the dense strides), so every index the op reads is a valid random row — the case
the tree's own GET_ROWS tests run. The ``support`` column keeps the file as exported (support
does not depend on the index values); ``test`` runs the rewritten copy and the cell says which
cases were rewritten. Op and type ids are read from the tree's own ``ggml.h`` (they shift between
versions), found through the build's CMakeCache.txt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# ops whose integer sources test_generic_op fills as one contiguous block (test-backend-ops.cpp)
CONTIGUOUS_FILL_OPS = ("GGML_OP_GET_ROWS", "GGML_OP_GET_ROWS_BACK")
INDEX_TYPES = {"GGML_TYPE_I32": 4, "GGML_TYPE_I64": 8}


@dataclass(frozen=True)
class Rewrite:
    text: str
    rewritten: tuple[str, ...]  # "GET_ROWS(name=…)" of every case whose index view was made contiguous


def tree_of_build(build_dir: Path) -> Path | None:
    """The source tree a CMake build dir was configured from (CMAKE_HOME_DIRECTORY)."""
    cache = build_dir / "CMakeCache.txt"
    try:
        text = cache.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.+)$", text, re.M)
    return Path(m[1].strip()) if m else None


def _enum(text: str, name: str) -> dict[str, int]:
    m = re.search(rf"enum\s+{name}\s*\{{(?P<body>.*?)\}};", text, re.S)
    if not m:
        return {}
    out: dict[str, int] = {}
    value = -1
    body = re.sub(r"//[^\n]*|/\*.*?\*/", "", m["body"], flags=re.S)
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        ident, _, explicit = item.partition("=")
        ident = ident.strip()
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", ident):
            return {}  # something this reader does not understand: no ids rather than wrong ids
        if explicit.strip():
            try:
                value = int(explicit.strip(), 0)
            except ValueError:
                return {}
        else:
            value += 1
        out[ident] = value
    return out


def ggml_ids(tree: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(op name -> id, type name -> id) from the tree's ggml/include/ggml.h ({} when unreadable)."""
    try:
        text = (tree / "ggml" / "include" / "ggml.h").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}, {}
    return _enum(text, "ggml_op"), _enum(text, "ggml_type")


def contiguous_index_views(text: str, op_ids: dict[str, int], type_ids: dict[str, int]) -> Rewrite:
    """``text`` (an exported ops file) with the strided integer index views of GET_ROWS made dense."""
    wanted = {op_ids[o]: o.removeprefix("GGML_OP_") for o in CONTIGUOUS_FILL_OPS if o in op_ids}
    sizes = {type_ids[t]: size for t, size in INDEX_TYPES.items() if t in type_ids}
    if not wanted or not sizes:
        return Rewrite(text, ())
    lines_out: list[str] = []
    rewritten: list[str] = []
    for line in text.splitlines():
        tokens = line.split()
        try:
            changed = _rewrite_line(tokens, wanted, sizes)
        except (ValueError, IndexError):
            changed = None  # a line this reader does not understand stays as it is
        if changed is None:
            lines_out.append(line)
            continue
        new_tokens, name = changed
        lines_out.append(" ".join(new_tokens))
        rewritten.append(f"{wanted[int(tokens[0])]}(name={name})")
    return Rewrite("\n".join(lines_out) + ("\n" if text.endswith("\n") else ""), tuple(rewritten))


def _rewrite_line(
    tokens: list[str], wanted: dict[int, str], sizes: dict[int, int]
) -> tuple[list[str], str] | None:
    if not tokens or int(tokens[0]) not in wanted:
        return None
    pos = 6  # op, type, ne0..ne3
    n_params = int(tokens[pos])
    pos += 1 + n_params
    n_src = int(tokens[pos])
    pos += 1
    out = list(tokens)
    changed = False
    for _ in range(n_src):
        stype = int(tokens[pos])
        ne = [int(x) for x in tokens[pos + 1 : pos + 5]]
        nb = [int(x) for x in tokens[pos + 5 : pos + 9]]
        if stype in sizes:
            dense = [sizes[stype]]
            for d in range(1, 4):
                dense.append(dense[-1] * ne[d - 1])
            if nb[0] != 0 and nb != dense:
                out[pos + 5 : pos + 9] = [str(x) for x in dense]
                changed = True
        pos += 9
    name = tokens[pos] if pos < len(tokens) else "-"
    return (out, name) if changed else None
