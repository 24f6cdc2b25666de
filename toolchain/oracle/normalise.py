"""Case strings of test-backend-ops drift; these rules make two captures comparable.

A case is ``(op_name, op_params)`` where op_params is the test case's ``vars()`` string, e.g.
``type_a=f16,type_b=f32,m=16,n=1,k=256,bs=[1,1],nr=[1,1],per=[0,1,2,3],k_v=0,o=1``. A CSV
captured by upstream some commits before the tree's code uses older names and lacks parameters
added since. The rules, applied in this order to every source of a join:

1. **Split** on top-level commas (brackets kept): ``[("type_a", "f16"), …]``.
2. **Renames** (``RENAMES``, data, each with its reason): an old parameter becomes the new one(s)
   in place, e.g. FLASH_ATTN_EXT ``type_KV=X`` -> ``type_K=X,type_V=X``.
3. **Defaults**: a parameter that not every source of the join has for that op is dropped where
   its value is the parameter's default in test-backend-ops.cpp (constructor and helper-lambda
   default arguments, read from the trees involved: ``bool src_overlap = false`` -> ``0``). A
   case where such a parameter has another value cannot exist in the source without it: it stays
   unmatched, counted with that reason.
4. **Duplicates**: identical normalised cases with the same answer are one case; with different
   answers they are ambiguous and left unmatched.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Rename:
    op: str
    old: str
    new: tuple[tuple[str, str], ...]  # (name, value template; "{v}" = the old value)
    reason: str


RENAMES: tuple[Rename, ...] = (
    Rename(
        "FLASH_ATTN_EXT",
        "type_KV",
        (("type_K", "{v}"), ("type_V", "{v}")),
        "one type for K and V became separate type_K / type_V",
    ),
    Rename("CPY", "ne", (("ne_src", "{v}"),), "ne became ne_src when ne_dst was added"),
    Rename(
        "SET_ROWS",
        "type",
        (("type_src", "f32"), ("type_dst", "{v}")),
        "the destination type `type` became type_dst; the source, always f32 before, became type_src",
    ),
)


_DELIMS = re.compile(r"[\[\]\(\),]")


@functools.lru_cache(maxsize=1 << 18)
def split_case(text: str) -> Params:
    """``a=1,ne=[1,2],b=x`` -> (("a","1"),("ne","[1,2]"),("b","x")); bracket-aware. Cached: a
    validation splits the same ~20k case strings once per profile and side (~900k calls)."""
    out: list[tuple[str, str]] = []
    depth = 0
    start = 0
    for m in _DELIMS.finditer(text + ","):
        ch = m.group()
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif depth == 0:
            part = text[start : m.start()]
            start = m.start() + 1
            if part:
                key, _, value = part.partition("=")
                out.append((key.strip(), value.strip()))
    return tuple(out)


def join_case(params: Params) -> str:
    return ",".join(f"{k}={v}" for k, v in params)


def apply_renames(op: str, params: Params, renames: Sequence[Rename] = RENAMES) -> Params:
    rules = _rules(tuple(renames))
    out: list[tuple[str, str]] = []
    for key, value in params:
        rule = rules.get((op, key))
        if rule is None:
            out.append((key, value))
        else:
            out.extend((name, template.replace("{v}", value)) for name, template in rule.new)
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _rules(renames: tuple[Rename, ...]) -> Mapping[tuple[str, str], Rename]:
    """(op, old name) -> the first rule for it (the order of ``renames`` decides)."""
    out: dict[tuple[str, str], Rename] = {}
    for rule in renames:
        out.setdefault((rule.op, rule.old), rule)
    return MappingProxyType(out)


@functools.lru_cache(maxsize=1 << 18)
def renamed(op: str, case: str) -> Params:
    """``case`` split and renamed with ``RENAMES`` (cached, like :func:`split_case`)."""
    return apply_renames(op, split_case(case))


# C++ default-argument literal -> how test-backend-ops prints that value (var_to_str)
_TYPE = re.compile(r"^GGML_TYPE_(\w+)$")
_PREC = {"GGML_PREC_DEFAULT": "def", "GGML_PREC_F32": "f32"}
_DEFAULT_ARG = re.compile(
    r"\b(?:bool|int|int32_t|int64_t|uint32_t|size_t|float|double|ggml_type|ggml_prec)\s+"
    r"(\w+)\s*=\s*([A-Za-z0-9_.+\-]+)\s*[,)]"
)


def literal_to_var(literal: str) -> str | None:
    lit = literal.strip()
    if lit in ("false", "true"):
        return "1" if lit == "true" else "0"
    if lit in _PREC:
        return _PREC[lit]
    m = _TYPE.match(lit)
    if m:
        name = m.group(1).lower()
        return re.sub(r"_k$", "_K", name)  # ggml_type_name: q4_K, q6_K …
    num = lit.rstrip("fFuUlL")
    try:
        if re.fullmatch(r"[+-]?\d+", num):
            return str(int(num))
        return f"{float(num):.6f}"
    except ValueError:
        return None


def tree_defaults(sources: Iterable[str]) -> Mapping[str, frozenset[str]]:
    """Parameter name -> the printed default values it has in test-backend-ops.cpp sources."""
    found: dict[str, set[str]] = {}
    for text in sources:
        for name, literal in _DEFAULT_ARG.findall(text):
            value = literal_to_var(literal)
            if value is not None:
                found.setdefault(name, set()).add(value)
    return MappingProxyType({k: frozenset(v) for k, v in found.items()})


@dataclass(frozen=True)
class Normaliser:
    """Canonical form of cases for one join: renames, then defaults against the common keys."""

    defaults: Mapping[str, frozenset[str]]
    common: Mapping[str, frozenset[str]]  # op -> parameter names every source has for it
    # the answers so far: each side's cases come once per profile
    _seen: dict[tuple[str, str], tuple[str, str | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def canonical(self, op: str, case: str) -> tuple[str, str | None]:
        """(key, why-unmatchable): the normalised case, and a reason when it cannot be joined."""
        seen = self._seen.get((op, case))
        if seen is None:
            seen = self._seen[(op, case)] = self._canonical(op, case)
        return seen

    def _canonical(self, op: str, case: str) -> tuple[str, str | None]:
        params = renamed(op, case)
        common = self.common.get(op, frozenset())
        kept: list[tuple[str, str]] = []
        blocker: str | None = None
        for key, value in params:
            if key in common:
                kept.append((key, value))
            elif value in self.defaults.get(key, frozenset()):
                continue
            else:
                kept.append((key, value))
                blocker = blocker or f"{key}={value} (a parameter the other side lacks, not at its default)"
        return join_case(tuple(kept)), blocker


def key_sets(rows: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """op -> every parameter name (after renames) that appears in its cases."""
    sets: dict[str, set[str]] = {}
    for op, case in rows:
        sets.setdefault(op, set()).update(k for k, _ in renamed(op, case))
    return {op: frozenset(keys) for op, keys in sets.items()}


def make_normaliser(sides: Sequence[Iterable[tuple[str, str]]], default_sources: Iterable[str]) -> Normaliser:
    """A normaliser for joining ``sides`` (each an iterable of (op, case))."""
    per_side = [key_sets(side) for side in sides]
    ops = set().union(*(s.keys() for s in per_side)) if per_side else set()
    # an op some side lacks cannot match anyway: its cases are left as they are (nothing dropped)
    common = {
        op: (
            frozenset.intersection(*(s[op] for s in per_side))
            if all(op in s for s in per_side)
            else frozenset().union(*(s.get(op, frozenset()) for s in per_side))
        )
        for op in ops
    }
    return Normaliser(tree_defaults(default_sources), MappingProxyType(common))
