"""The sweep: encode what ``supports_op`` accepts over the space the tree's Metal encoders branch on,
and group every case the encoders cannot encode into classes a person reads once.

Cases come from the tree (``space.py``): its types, the thresholds its encoder functions compare
dimensions with, the head sizes and experts per token its library instantiates and the ranges
models use around them. Each case is one line of the tree's own test-file format
(``replay.case_line``), so a class's minimal case runs as it is with ``test-backend-ops
--test-file`` on that tree. The dry run (``run.dry_run``) encodes them per profile; a case that
``supports_op`` rejects runs on the CPU on a Mac and is not a finding.

A finding is a latent crash: ``supports_op`` says yes, the encoder cannot encode. Findings are
grouped by what fails: the missing kernel's name format from the tree's pipeline lookups
(``kernel_mul_mm_id_map0_ne20_%d``) with the values that are missing, the encoder's assert, or the
limit and its kernel. Asserts outside the Metal backend mean the sweep wrote a case ggml itself
refuses: those are the sweep's own defect and are reported apart, never as a crash.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.digests import toolchain_digest
from ..core.git import tree_commit
from ..core.jsonio import atomic_write_text, from_jsonable, to_jsonable
from ..core.opsinput import MAX_OPS_LINES
from ..core.tree import GGML_HEADER, ggml_ids
from ..errors import UsageError
from ..log import LOG
from .contradict import CANNOT_ENCODE
from .library import KernelLibrary, kernel_library
from .records import OBSERVED_BY, BatchRun, CaseResult
from .replay import NotReplayable, case_line, flash_attn_spec
from .run import dry_run, profiles_for, program
from .space import KernelFormat, Space, space_of

SWEEP_STATEMENT = (
    "Dry-run sweep: op cases generated over the space this tree's Metal encoders branch on, each "
    "encoded by the tree's own Metal backend over a stand-in for its Objective-C layer, per GPU-"
    "family profile. A class is a set of cases supports_op accepts that the encoder cannot encode: "
    "a crash at the first token on a Mac, predicted by the dry run, not observed on a device."
)
FAMILIES = {
    "mul_mat": "matrix multiplication: weight type x activation type, by tokens in the batch",
    "mul_mat_id": "mixture of experts: experts per token, expert count, weight type, tokens",
    "flash_attn_ext": "flash attention: K and V head sizes, KV-cache type, tokens",
    "rows": "long rows and kernel sizes: softmax, argsort, im2col (threadgroup limits)",
    "copy": "type conversions: copies, get_rows, set_rows",
}
SECOND_TYPES = ("f32", "f16", "bf16")  # activation types the mat-mul paths are selected by
FA_KV_TYPES = ("f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "f32")
GGML_SORT_ASC = 0
KQ_MASK_PAD = re.compile(r"#\s*define\s+GGML_KQ_MASK_PAD\s+(\d+)")


@dataclass(frozen=True)
class SweepCase:
    family: str
    axes: dict[str, str]  # what this case varies, e.g. {"weights": "q8_0", "tokens": "1"}
    spec: dict[str, Any]  # op, dst_type, srcs [{type, ne}], params: replay.case_line's input


@dataclass(frozen=True)
class MinimalCase:
    line: str  # one line of the tree's test-file format (test-backend-ops --test-file)
    spec: dict[str, Any]
    axes: dict[str, str]


@dataclass(frozen=True)
class SweepClass:
    verdict: str  # missing-kernel | encoder-abort | over-limit | error | invalid-case
    blame: str  # "upstream (Metal backend)", "our harness", "our sweep's spec"
    family: str
    what: str  # the kernel name pattern (format filled with what is missing), the assert, or the limit
    format: str  # the tree's kernel-name format (snprintf) the missing kernels are of; "" otherwise
    where: str  # file:line of the format or assert in the tree
    values: tuple[str, ...]  # the format's arguments that are missing (e.g. experts per token)
    profiles: tuple[str, ...]
    cases: int  # cases x profiles in the class
    axes: dict[str, tuple[str, ...]]  # each axis and the values the class's cases have
    summary: str  # one sentence a person reads
    fix: str
    minimal: MinimalCase


@dataclass(frozen=True)
class SweepBatch:
    family: str
    cases: int
    counts: dict[str, dict[str, int]]  # profile -> verdict -> cases
    seconds: float


@dataclass(frozen=True)
class SweepChange:
    verdict: str
    name: str  # a missing kernel's name, or the class's assert / limit
    profiles: tuple[str, ...]  # the GPU families of its class


@dataclass(frozen=True)
class SweepDiff:
    """Against an earlier sweep (``--baseline``, e.g. the previous pin's): what the update fixes and
    what it breaks, by missing kernel name or assert/limit, with the GPU families."""

    baseline: str  # the earlier dryrun-sweep.json
    baseline_commit: str
    fixed: tuple[SweepChange, ...]  # crashes of the baseline this tree no longer has
    new: tuple[SweepChange, ...]  # crashes this tree has that the baseline did not
    summary: str


@dataclass(frozen=True)
class Sweep:
    observed_by: str
    statement: str
    tree: str
    commit: str
    program: str
    key: str  # content key of the sweep: the program, the toolchain, the profiles, the cases
    profiles: tuple[str, ...]
    space: Space
    batches: tuple[SweepBatch, ...]
    classes: tuple[SweepClass, ...]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> generated cases not writable
    seconds: float = 0.0
    cached: bool = False
    baseline: SweepDiff | None = None

    def crash_classes(self) -> tuple[SweepClass, ...]:
        return tuple(c for c in self.classes if c.verdict in CANNOT_ENCODE)


def crash_names(
    s: Sweep, families: set[str] | None = None, profiles: set[str] | None = None
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each latent crash by name: a missing kernel (its class's format filled with each missing
    value), or a class's assert or limit -> (verdict, GPU families); only of ``families`` and
    ``profiles`` when given."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for c in s.crash_classes():
        if families is not None and c.family not in families:
            continue
        profs = tuple(p for p in c.profiles if profiles is None or p in profiles)
        if not profs:
            continue
        if c.verdict == "missing-kernel" and c.format and c.values:
            fmt = _SPEC.sub("%s", c.format)
            for v in c.values:
                parts = tuple(v.split("/"))
                if len(parts) == fmt.count("%s"):
                    out[fmt % parts] = (c.verdict, profs)
        else:
            out[f"{c.family}: {c.what}"] = (c.verdict, profs)
    return out


def diff(s: Sweep, base: Sweep, path: Path) -> SweepDiff:
    """What ``base``'s latent crashes became in ``s``: compared over the families and profiles both
    swept (a family or profile only one of them swept says nothing either way)."""
    families = {b.family for b in s.batches} & {b.family for b in base.batches}
    profiles = set(s.profiles) & set(base.profiles)
    now, before = crash_names(s, families, profiles), crash_names(base, families, profiles)
    fixed = tuple(SweepChange(v, n, p) for n, (v, p) in sorted(before.items()) if n not in now)
    new = tuple(SweepChange(v, n, p) for n, (v, p) in sorted(now.items()) if n not in before)
    fams = sorted({p for c in (*fixed, *new) for p in c.profiles})
    left_out = sorted(({b.family for b in s.batches} | {b.family for b in base.batches}) - families)
    summary = (
        f"against the sweep of {base.commit[:12]} ({path}): {len(fixed)} of its latent crash(es) no longer "
        f"crash here (encoded now, or declined by supports_op: the CPU runs them), {len(new)} new"
        + (f" (on {', '.join(fams)})" if fams else "")
        + (f"; not compared (swept by one of the two only): {', '.join(left_out)}" if left_out else "")
    )
    return SweepDiff(str(path), base.commit, fixed, new, summary)


# --- generating the cases ------------------------------------------------------------------------
def _f32(x: float) -> int:
    return int(struct.unpack("<i", struct.pack("<f", float(x)))[0])


def _tokens(space: Space, functions: Sequence[str], variable: str) -> list[int]:
    found = space.values(functions, variable, cap=4096)
    return sorted({1, 2, 8, 9, 16, 64} | found)[:16]


def _widths(space: Space, block: int) -> list[int]:
    """K (ne00) values: 256 for every type, and for 1-element types the thresholds' sides."""
    if block > 1:
        return [256] if 256 % block == 0 else [block * 2]
    found = space.values(("ggml_metal_op_mul_mat",), "ne00", floor=2, cap=4096)
    return sorted({256, 64, 60, 16} | found)[:10]


# integer and f64 tensors are never a model's weights, nor are q8_1 and q8_K (the CPU's
# activation formats for its dot products; no converter or llama-quantize writes them): one probe
# each (K 256, 1 token, f32 activations) tells whether supports_op accepts them, without sweeping
# every branch for them (each encoder abort costs a restart of the dry run)
PROBE_ONLY = ("i8", "i16", "i32", "i64", "f64", "q8_1", "q8_K")


def mul_mat_cases(space: Space) -> Iterator[SweepCase]:
    tokens = _tokens(space, ("ggml_metal_op_mul_mat",), "ne11")
    second = [t for t in SECOND_TYPES if t in space.type_names()]
    for t in space.types:
        probe = t.name in PROBE_ONLY
        for t1 in second[:1] if probe else second:
            for k in [256] if probe else _widths(space, t.block):
                for n in tokens[:1] if probe else tokens:
                    yield SweepCase(
                        "mul_mat",
                        {"weights": t.name, "activations": t1, "K": str(k), "tokens": str(n)},
                        {
                            "op": "MUL_MAT",
                            "srcs": [{"type": t.name, "ne": [k, 64, 1, 1]}, {"type": t1, "ne": [k, n, 1, 1]}],
                        },
                    )


def _moe(t: str, t1: str, used: int, experts: int, n: int, k: int) -> SweepCase:
    return SweepCase(
        "mul_mat_id",
        {
            "weights": t,
            "activations": t1,
            "experts per token": str(used),
            "experts": str(experts),
            "tokens": str(n),
        },
        {
            "op": "MUL_MAT_ID",
            "srcs": [
                {"type": t, "ne": [k, 64, experts, 1]},
                {"type": t1, "ne": [k, used, n, 1]},
                {"type": "i32", "ne": [used, n, 1, 1]},
            ],
        },
    )


def mul_mat_id_cases(space: Space) -> Iterator[SweepCase]:
    tokens = sorted({1, 64} | space.values(("ggml_metal_op_mul_mat_id",), "ne21", cap=256))[:8]
    names = space.type_names()
    # experts per token over the whole range, on one float and one quantised weight type
    for t in [x for x in ("f16", "q4_0") if x in names]:
        for used in space.experts_per_token:
            for experts in space.expert_counts:
                if experts < used:
                    continue
                for n in tokens:
                    yield _moe(t, "f32", used, experts, n, 256)
    # every weight type and activation type, at a few experts per token
    for ti in space.types:
        probe = ti.name in PROBE_ONLY
        for t1 in [x for x in ("f32", "f16") if x in names][: 1 if probe else 2]:
            for used in (1,) if probe else (1, 4, 8):
                for n in tokens[:1] if probe else tokens:
                    k = 256 if 256 % ti.block == 0 else ti.block * 2
                    yield _moe(ti.name, t1, used, 16, n, k)


def flash_attn_cases(space: Space, mask_pad: int) -> Iterator[SweepCase]:
    names = space.type_names()
    batches = sorted({1, 8, 32} | space.values(("ggml_metal_op_flash_attn_ext",), "ne01", cap=128))[:8]
    n_kv, n_head = 256, 4
    heads = list(space.head_sizes)
    # a V head wider than K: one probe per neighbouring pair (f16, 1 token); each is an encoder
    # abort on trees that assert ne10 >= ne20, and every abort costs a restart
    wider = {(a, b) for a, b in zip(heads, heads[1:], strict=False)}
    for kv in [t for t in FA_KV_TYPES if t in names]:
        for dk in heads:
            for dv in heads:
                if dv > dk and (kv != "f16" or (dk, dv) not in wider):
                    continue
                for n in batches if dv <= dk else batches[:1]:
                    padded = -(-n // mask_pad) * mask_pad if mask_pad > 1 else n
                    yield SweepCase(
                        "flash_attn_ext",
                        {"K head size": str(dk), "V head size": str(dv), "KV type": kv, "tokens": str(n)},
                        flash_attn_spec(
                            dk, dv, kv, n, n_kv=n_kv, heads=n_head, kv_heads=n_head, mask_rows=padded
                        ),
                    )


ROW_LENGTHS = (256, 1024, 1025, 2048, 4096, 8192, 32768, 65536, 262144)
KERNEL_SIDES = (3, 16, 31, 32, 33, 64)


def rows_cases(space: Space) -> Iterator[SweepCase]:
    names = space.type_names()
    for n in sorted(set(ROW_LENGTHS) | space.values(("ggml_metal_op_soft_max",), "ne00", cap=1 << 20)):
        for mask in ("none", "f16", "f32"):
            srcs = [{"type": "f32", "ne": [n, 4, 1, 1]}]
            if mask != "none":
                srcs.append({"type": mask, "ne": [n, 4, 1, 1]})
            yield SweepCase(
                "rows",
                {"op": "SOFT_MAX", "row length": str(n), "mask": mask},
                {"op": "SOFT_MAX", "srcs": srcs, "params": {"op_params": [_f32(1.0), _f32(0.0)]}},
            )
    for n in sorted(set(ROW_LENGTHS) | space.values(("ggml_metal_op_argsort",), "ne00", cap=1 << 20)):
        yield SweepCase(
            "rows",
            {"op": "ARGSORT", "row length": str(n)},
            {
                "op": "ARGSORT",
                "dst_type": "i32",
                "srcs": [{"type": "f32", "ne": [n, 2, 1, 1]}],
                "params": {"op_params": [GGML_SORT_ASC]},
            },
        )
    for side in KERNEL_SIDES:
        for out in [t for t in ("f16", "f32") if t in names]:
            yield SweepCase(
                "rows",
                {"op": "IM2COL", "kernel": f"{side}x{side}", "out": out},
                {
                    "op": "IM2COL",
                    "dst_type": out,
                    "srcs": [
                        {"type": "f16", "ne": [side, side, 2, 2]},
                        {"type": "f32", "ne": [side + 8, side + 8, 2, 1]},
                    ],
                    "params": {"s0": 1, "s1": 1, "p0": 0, "p1": 0, "d0": 1, "d1": 1, "is_2D": 1},
                },
            )


def copy_cases(space: Space, ops: Mapping[str, int]) -> Iterator[SweepCase]:
    for a in space.types:
        for b in space.types:
            k = max(a.block, b.block, 32) * 8
            yield SweepCase(
                "copy",
                {"op": "CPY", "from": a.name, "to": b.name},
                {
                    "op": "CPY",
                    "dst_type": b.name,
                    "srcs": [{"type": a.name, "ne": [k, 4, 1, 1]}, {"type": b.name, "ne": [k, 4, 1, 1]}],
                },
            )
    for t in space.types:
        k = max(t.block, 32) * 8
        yield SweepCase(
            "copy",
            {"op": "GET_ROWS", "from": t.name, "to": "f32"},
            {
                "op": "GET_ROWS",
                "dst_type": "f32",
                "ne": [k, 4, 1, 1],
                "srcs": [{"type": t.name, "ne": [k, 16, 1, 1]}, {"type": "i32", "ne": [4, 1, 1, 1]}],
            },
        )
        if "GGML_OP_SET_ROWS" in ops:
            yield SweepCase(
                "copy",
                {"op": "SET_ROWS", "from": "f32", "to": t.name},
                {
                    "op": "SET_ROWS",
                    "dst_type": t.name,
                    "ne": [k, 16, 1, 1],
                    "srcs": [{"type": "f32", "ne": [k, 4, 1, 1]}, {"type": "i64", "ne": [4, 1, 1, 1]}],
                },
            )


def generate(tree: Path, space: Space) -> dict[str, list[SweepCase]]:
    ops, _types = ggml_ids(tree)
    header = (tree / GGML_HEADER).read_text(encoding="utf-8", errors="replace")
    pad = KQ_MASK_PAD.search(header)
    return {
        "mul_mat": list(mul_mat_cases(space)),
        "mul_mat_id": list(mul_mat_id_cases(space)),
        "flash_attn_ext": list(flash_attn_cases(space, int(pad.group(1)) if pad else 1)),
        "rows": list(rows_cases(space)),
        "copy": list(copy_cases(space, ops)),
    }


CHUNK = 400  # cases per dry-run process: an encoder abort reruns its process past it, so the
# cost of an abort grows with the cases before it in the same file


def write_batches(
    tree: Path, families: Mapping[str, list[SweepCase]], folder: Path
) -> tuple[list[tuple[str, list[tuple[Path, list[SweepCase], list[str]]]]], dict[str, int]]:
    """Each family's cases as test-file lines, in files of at most CHUNK lines: (family, its files)."""
    out: list[tuple[str, list[tuple[Path, list[SweepCase], list[str]]]]] = []
    skipped: dict[str, int] = defaultdict(int)
    folder.mkdir(parents=True, exist_ok=True)
    for family, cases in families.items():
        kept: list[tuple[SweepCase, str]] = []
        for case in cases:
            try:
                kept.append((case, case_line(tree, case.spec, "sweep")))
            except NotReplayable as exc:
                skipped[f"{family}: {exc}"] += 1
        files = []
        for part, start in enumerate(range(0, len(kept), min(CHUNK, MAX_OPS_LINES))):
            chunk = kept[start : start + CHUNK]
            path = folder / f"sweep-{family}-{part + 1}.txt"
            lines = [line for _c, line in chunk]
            atomic_write_text(path, "\n".join(lines) + "\n")
            files.append((path, [c for c, _l in chunk], lines))
        out.append((family, files))
    return out, dict(skipped)


# --- grouping the findings into classes ----------------------------------------------------------
_WORD = re.compile(r"[A-Za-z0-9_]*")
_INT = re.compile(r"-?\d+")


def _tokens_of(fmt: str) -> list[tuple[str, str]]:
    """``kernel_%s_%s_dk%d`` -> [("lit", "kernel_"), ("s", ""), ("lit", "_"), …]."""
    out: list[tuple[str, str]] = []
    i = 0
    for m in re.finditer(r"%(?:\d*)(s|d|u|ld|lld|i)", fmt):
        out.append(("lit", fmt[i : m.start()]))
        out.append(("s" if m.group(1) == "s" else "d", ""))
        i = m.end()
    out.append(("lit", fmt[i:]))
    return [t for t in out if t != ("lit", "")]


def _parses(tokens: list[tuple[str, str]], name: str, at: int = 0) -> Iterator[tuple[str, ...]]:
    """Every way ``name[at:]`` is the format's tokens (%s: a word, %d: an integer)."""
    if not tokens:
        if at == len(name):
            yield ()
        return
    kind, text = tokens[0]
    if kind == "lit":
        if name.startswith(text, at):
            yield from _parses(tokens[1:], name, at + len(text))
        return
    m = (_WORD if kind == "s" else _INT).match(name, at)
    end = m.end() if m else at
    for stop in range(end, at - 1, -1):
        if kind == "d" and not _INT.fullmatch(name[at:stop]):
            continue
        for rest in _parses(tokens[1:], name, stop):
            yield (name[at:stop], *rest)


class Formats:
    """Match a kernel name to the most specific of the tree's name formats; of the ways a name
    fits a format, the one with the most ``%s`` values that are type names wins
    (``kernel_flash_attn_ext_f16_dk96_dv64`` is ``kernel_%s_%s_dk%d_dv%d`` with
    flash_attn_ext and f16, not flash and attn_ext_f16)."""

    def __init__(self, formats: Sequence[KernelFormat], types: Sequence[str]) -> None:
        ranked = sorted(formats, key=lambda f: -len(re.sub(r"%\w", "", f.text)))
        self._formats = [(f, _tokens_of(f.text)) for f in ranked]
        self.types = frozenset(types)

    def _best(self, tokens: list[tuple[str, str]], name: str) -> tuple[str, ...] | None:
        kinds = [k for k, _t in tokens if k != "lit"]
        best: tuple[int, tuple[str, ...]] | None = None
        for values in _parses(tokens, name):
            score = sum(1 for k, v in zip(kinds, values, strict=True) if k == "s" and v in self.types)
            if best is None or score > best[0]:
                best = (score, values)
        return best[1] if best else None

    def match(self, name: str) -> tuple[KernelFormat, tuple[str, ...]] | None:
        for f, tokens in self._formats:
            values = self._best(tokens, name)
            if values is not None:
                return f, values
        return None

    def instances(self, fmt: KernelFormat, names: Iterable[str]) -> list[tuple[str, ...]]:
        tokens = _tokens_of(fmt.text)
        prefix = tokens[0][1] if tokens and tokens[0][0] == "lit" else ""
        return [v for n in names if n.startswith(prefix) and (v := self._best(tokens, n)) is not None]


Key = tuple[str, str, str, str, str]  # verdict, family, what, where, split


def pattern(fmt: str, values: Sequence[tuple[str, ...]], limit: int = 8) -> str:
    """``kernel_mul_mv_%s_%s%s`` with its missing values: ``kernel_mul_mv_{f32,q8_0}_f16{,_4}``."""
    specs = list(re.finditer(r"%(?:\d*)(s|d|u|ld|lld|i)", fmt))
    out, i = "", 0
    for pos, m in enumerate(specs):
        seen = _ranges(v[pos] for v in values if pos < len(v))
        shown = ",".join(seen[:limit]) + (f",…{len(seen) - limit} more" if len(seen) > limit else "")
        out += fmt[i : m.start()] + (seen[0] if len(seen) == 1 else "{" + shown + "}")
        i = m.end()
    return out + fmt[i:]


def exact_names(fmt: str, values: Sequence[tuple[str, ...]], types: frozenset[str], limit: int = 12) -> str:
    """The missing names exactly, when ``pattern``'s one set per position overstates them: a
    pattern per value of the first position (not a type) whose values vary, each of which is
    exact: ``kernel_fa_{f16,q8_0}_dk64_dv{32,40}; kernel_fa_{f16,q8_0}_dk96_dv{32,72}``. ""
    when the single pattern is already exact, or when no such split is (then the JSON's values
    are the exact list)."""
    tuples = list(dict.fromkeys(values))
    if not tuples or len({len(t) for t in tuples}) != 1:
        return ""

    def grid(ts: Sequence[tuple[str, ...]]) -> int:
        return math.prod(len({t[i] for t in ts}) for i in range(len(ts[0])))

    if grid(tuples) == len(tuples):
        return ""
    for pos in range(len(tuples[0])):
        leads = list(dict.fromkeys(t[pos] for t in tuples))
        if len(leads) < 2 or any(v in types for v in leads):
            continue
        groups = [[t for t in tuples if t[pos] == lead] for lead in _ranges(leads)]
        if all(grid(g) == len(g) for g in groups):
            shown = [pattern(fmt, g, limit=32) for g in groups[:limit]]
            return "; ".join(shown) + (f"; … {len(groups) - limit} more" if len(groups) > limit else "")
    return ""


_ASSERT_AT = re.compile(r"([\w./-]+\.(?:cpp|c|m|h)):(\d+)")


def _abort_key(text: str) -> tuple[str, str, bool]:
    """(message, file:line, inside the Metal backend) of an abort record's first line."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    m = _ASSERT_AT.search(first)
    where = f"{m.group(1)}:{m.group(2)}" if m else ""
    message = first[m.end() :].lstrip(": ") if m else first
    return message[:300] or first[:300], where, "ggml-metal" in where


def _size(spec: Mapping[str, Any]) -> int:
    total = 0
    for s in spec["srcs"]:
        n = 1
        for x in s["ne"]:
            n *= int(x)
        total += n
    return total


def _ranges(values: Iterable[str]) -> tuple[str, ...]:
    vals = list(dict.fromkeys(values))
    if vals and all(re.fullmatch(r"-?\d+", v) for v in vals):
        return tuple(str(v) for v in sorted({int(v) for v in vals}))
    return tuple(sorted(vals))


def _compact(values: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(values[:limit])
    return "{" + shown + (f", … {len(values) - limit} more" if len(values) > limit else "") + "}"


def _fix(verdict: str, fmt: KernelFormat | None, others: int) -> str:
    if verdict == "missing-kernel":
        if others:
            return (
                f"add the missing instantiations (the library instantiates {others} other kernels of "
                "this name format), or have supports_op decline these cases"
            )
        return "have supports_op decline these cases (the library has no kernel of this name format)"
    if verdict == "encoder-abort":
        return "have supports_op decline what the encoder asserts on, or lift the encoder's limit"
    if verdict == "over-limit":
        return "have supports_op decline these sizes, or split the dispatch below the device limit"
    if verdict == "invalid-case":
        return (
            "the sweep wrote a case ggml itself refuses: fix the case generator (toolchain/dryrun/sweep.py)"
        )
    return "rerun the minimal case with `llama-toolchain dryrun run --ops`; report it as a harness bug"


def classify(
    space: Space,
    batches: Sequence[tuple[str, list[SweepCase], list[str], BatchRun]],
    libraries: Mapping[str, KernelLibrary],
) -> tuple[SweepClass, ...]:
    formats = Formats(space.formats, space.type_names())
    groups: dict[Key, list[tuple[str, SweepCase, str, tuple[str, ...]]]] = defaultdict(list)
    fmt_of: dict[Key, KernelFormat | None] = {}
    for family, cases, lines, batch in batches:
        for p in batch.results:
            for f in p.findings:
                case, line = cases[f.index - 1], lines[f.index - 1]
                for key, fmt, values in _keys(f, family, formats):
                    groups[key].append((p.profile, case, line, values))
                    fmt_of[key] = fmt
    out: list[SweepClass] = []
    all_names = {n for lib in libraries.values() for n in lib.names}
    for key, members in groups.items():
        verdict, family, what, where, _split = key
        fmt = fmt_of[key]
        tuples = list(dict.fromkeys(vs for _p, _c, _l, vs in members if vs))
        values = tuple("/".join(vs) for vs in tuples)
        if fmt is not None and tuples:
            filled = pattern(fmt.text, tuples)
            what = f"{what} in {filled}" if verdict == "over-limit" else filled
        axes: dict[str, list[str]] = defaultdict(list)
        for _p, case, _l, _v in members:
            for a, v in case.axes.items():
                axes[a].append(v)
        axes_out = {a: _ranges(v) for a, v in axes.items()}
        profiles = tuple(sorted({p for p, _c, _l, _v in members}))
        _p, small, line, _v = min(members, key=lambda m: (_size(m[1].spec), m[2]))
        others = len(formats.instances(fmt, all_names)) if fmt else 0
        blame = {
            "invalid-case": "our sweep's spec",
            "error": "our harness (until shown otherwise)",
        }.get(verdict, "upstream (Metal backend)")
        exact = exact_names(fmt.text, tuples, formats.types) if fmt is not None else ""
        summary = _summary(verdict, family, what, values, axes_out, profiles, exact)
        out.append(
            SweepClass(
                verdict,
                blame,
                family,
                what,
                fmt.text if fmt else "",
                where,
                _ranges(values),
                profiles,
                len(members),
                axes_out,
                summary,
                _fix(verdict, fmt, others),
                MinimalCase(line, small.spec, small.axes),
            )
        )
    order = {v: i for i, v in enumerate((*CANNOT_ENCODE, "error", "invalid-case"))}
    return tuple(sorted(out, key=lambda c: (order.get(c.verdict, 9), c.family, c.what)))


_SPEC = re.compile(r"%(?:\d*)(s|d|u|ld|lld|i)")
_SPECIALISED = re.compile(r"(_[A-Za-z0-9]+=[^_]*)+$")  # function constants: _mask=1_sinks=0…


def _split(fmt: KernelFormat, values: tuple[str, ...], types: frozenset[str]) -> str:
    """What separates one class from another of the same format: a leading kernel family
    (``kernel_%s_…``: flash_attn_ext or flash_attn_ext_vec) and, for a type pair, the second type
    (activations, target): the types of the first position are what the class lists."""
    kinds = [m.group(1) for m in _SPEC.finditer(fmt.text)]
    parts = []
    if kinds and kinds[0] == "s" and values and values[0] not in types:
        parts.append(values[0])
    typed = [i for i, k in enumerate(kinds) if k == "s" and i < len(values) and values[i] in types]
    if len(typed) >= 2:
        parts.append(values[typed[-1]])
    return "/".join(parts)


def _keys(
    f: CaseResult, family: str, formats: Formats
) -> list[tuple[Key, KernelFormat | None, tuple[str, ...]]]:
    out: list[tuple[Key, KernelFormat | None, tuple[str, ...]]] = []
    if f.verdict == "missing-kernel":
        for m in dict.fromkeys(x.base for x in f.missing):
            hit = formats.match(m)
            if hit:
                fmt, values = hit
                split = _split(fmt, values, formats.types)
                out.append((("missing-kernel", family, fmt.text, fmt.where, split), fmt, values))
            else:
                out.append((("missing-kernel", family, m, "", ""), None, ()))
        return out
    if f.verdict == "encoder-abort":
        message, where, metal = _abort_key(f.abort)
        return [(("encoder-abort" if metal else "invalid-case", family, message, where, ""), None, ())]
    if f.verdict == "over-limit":
        for lim in dict.fromkeys(f.limits):
            base = _SPECIALISED.sub("", lim.kernel)
            hit = formats.match(base)
            what = f"{lim.what} > {lim.limit}"
            if hit:
                fmt, values = hit
                split = _split(fmt, values, formats.types)
                out.append((("over-limit", family, what, fmt.where, split), fmt, values))
            else:
                out.append((("over-limit", family, f"{what} in {base}", "", ""), None, ()))
        return out
    message, where, _metal = _abort_key(f.abort)
    return [(("error", family, message or f.verdict, where, ""), None, ())]


def _summary(
    verdict: str,
    family: str,
    what: str,
    values: Sequence[str],
    axes: Mapping[str, Sequence[str]],
    profiles: Sequence[str],
    exact: str = "",
) -> str:
    varying = "; ".join(f"{a} {_compact(list(v), 6)}" for a, v in axes.items())
    on = "/".join(profiles)
    if verdict == "missing-kernel" and exact:
        head = f"not in the library ({len(values)} names), exactly: {exact}"
    elif verdict == "missing-kernel":
        shown = ", ".join(values[:6]) + (f", … {len(values) - 6} more" if len(values) > 6 else "")
        head = f"`{what}`: not in the library ({len(values) or 1} name(s){': ' + shown if values else ''})"
    elif verdict == "over-limit":
        head = f"{what} (exactly: {exact})" if exact else what
    elif verdict == "invalid-case":
        head = f"the sweep's own case refused by ggml ({what})"
    else:
        head = f"encoder abort: {what}"
    crash = "would crash at the first token" if verdict in CANNOT_ENCODE else "could not be judged"
    return f"{head}: {FAMILIES.get(family, family)} with {varying} {crash} on {on}"


# --- the whole sweep -----------------------------------------------------------------------------
def _key(
    program_key: str,
    profiles: Sequence[str],
    batches: Sequence[tuple[str, list[tuple[Path, list[SweepCase], list[str]]]]],
) -> str:
    h = hashlib.sha256()
    h.update(f"sweep\0{program_key}\0{toolchain_digest()}\0{','.join(profiles)}\0".encode())
    for family, files in batches:
        for _p, _c, lines in files:
            h.update(family.encode() + b"\0" + "\n".join(lines).encode())
    return h.hexdigest()[:24]


def sweep(
    tree: Path,
    cache_dir: Path,
    work: Path,
    *,
    profiles: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
) -> Sweep:
    """Generate, encode and classify; cached per tree content (the dry-run program's key), the
    toolchain and the cases, so an unchanged tree is not swept again."""
    start = time.monotonic()
    tree = tree.resolve()
    prog = program(tree, cache_dir)
    profs = profiles_for(tree, prog, profiles)
    libraries = {p.name: kernel_library(tree, p) for p in profs}
    space = space_of(tree, libraries)
    generated = generate(tree, space)
    if families:
        unknown = sorted(set(families) - set(generated))
        if unknown:
            raise UsageError(
                f"unknown sweep families: {', '.join(unknown)}", f"families: {', '.join(generated)}"
            )
        generated = {k: v for k, v in generated.items() if k in families}
    folder = work / "sweep"
    files, skipped = write_batches(tree, generated, folder)
    names = tuple(p.name for p in profs)
    key = _key(prog.key, names, files)
    cached = cache_dir / "dryrun" / "sweep" / f"{key}.json"
    if cached.is_file():
        try:
            found: Sweep = from_jsonable(Sweep, json.loads(cached.read_text(encoding="utf-8")))
            LOG.info(f"sweep: the result for this tree content is cached ({cached})")
            return replace(found, cached=True)
        except (ValueError, TypeError, OSError) as exc:
            LOG.warn(f"sweep cache {cached} unreadable ({exc}); sweeping again")
    runs: list[tuple[str, list[SweepCase], list[str], BatchRun]] = []
    batches: list[SweepBatch] = []
    total = sum(len(c) for _f, fl in files for _p, c, _l in fl)
    done = 0
    for family, chunks in files:
        n = sum(len(c) for _p, c, _l in chunks)
        LOG.info(f"sweep {family}: {n} cases x {len(profs)} profiles ({done}/{total} done)")
        run = dry_run(
            tree,
            cache_dir,
            work,
            batches=[(f"sweep-{family}-{i}", path) for i, (path, _c, _l) in enumerate(chunks, start=1)],
            profiles=names,
        )
        done += n
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for (_path, cases, lines), batch in zip(chunks, run.runs, strict=True):
            runs.append((family, cases, lines, batch))
            for p in batch.results:
                for v, k in p.counts.items():
                    counts[p.profile][v] += k
        batches.append(
            SweepBatch(
                family,
                n,
                {prof: dict(c) for prof, c in counts.items()},
                round(sum(b.seconds for b in run.runs), 2),
            )
        )
    result = Sweep(
        OBSERVED_BY,
        SWEEP_STATEMENT,
        str(tree),
        tree_commit(tree),
        prog.key,
        key,
        names,
        space,
        tuple(batches),
        classify(space, runs, libraries),
        skipped,
        round(time.monotonic() - start, 2),
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cached, json.dumps(to_jsonable(result), indent=1))
    return result
