"""Replay a real upstream Metal crash (fixtures/real_crashes/corpus.toml) with the dry run.

Each replayable case gives the op, the output type, each source's type and shape and the op's
parameters. It becomes one line of the tree's own test-file format (``test-backend-ops
--test-file``: ``test_generic_op``, the format test-export-graph-ops writes), with op and type ids
read from that tree's ``ggml.h`` (they shift between versions) and the sources contiguous
(``nb`` = 0, which test_generic_op takes as dense in every tree since the C++ Metal backend).
The dry run encodes it per profile; on the tree before the fix it must name the crash (the
missing kernel by name, the abort, or the limit), on the tree after the fix it must not.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.tree import ggml_ids
from .contradict import CANNOT_ENCODE, detail
from .records import DryRun

GGML_PREC = {"default": 0, "f32": 10}

# What a replay spec may hold (spec_problem): it may come from a file someone else wrote
# (`dryrun history CASES`), and each number ends up in a test-file line the dry run allocates for.
MAX_SRCS = 10  # GGML_MAX_SRC
MAX_DIM = 1 << 24
MAX_ELEMENTS = 1 << 28  # per tensor: 1 GiB of f32; the corpus's largest case has 1.3 M
MAX_PARAMS = 64
_NAME = re.compile(r"^[A-Za-z0-9_]{1,40}$")


class NotReplayable(Exception):
    """The case cannot be written for this tree (named reason: an op or type the tree lacks…)."""


def _shape_problem(ne: Any, what: str) -> str | None:
    if not isinstance(ne, list) or not 1 <= len(ne) <= 4:
        return f"{what}: ne must be a list of 1 to 4 sizes"
    if not all(type(x) is int and 1 <= x <= MAX_DIM for x in ne):
        return f"{what}: every size in ne must be a whole number from 1 to {MAX_DIM}, got {str(ne)[:80]}"
    if math.prod(ne) > MAX_ELEMENTS:
        return f"{what}: {math.prod(ne)} elements, more than the {MAX_ELEMENTS} a replay case may have"
    return None


def spec_problem(replay: Any) -> str | None:
    """What is wrong with a replay spec (``case_line``'s input), or None: an op name, 1 to
    ``MAX_SRCS`` sources each with a type name and a shape of whole sizes within bounds, scalar
    finite parameters. Checked before anything is computed from it."""
    if not isinstance(replay, Mapping):
        return "the replay spec must be a table"
    if not isinstance(replay.get("op"), str) or not _NAME.match(replay["op"]):
        return "op must be a ggml op name such as MUL_MAT"
    srcs = replay.get("srcs")
    if not isinstance(srcs, list) or not 1 <= len(srcs) <= MAX_SRCS:
        return f"srcs must be a list of 1 to {MAX_SRCS} sources"
    for i, s in enumerate(srcs):
        if not isinstance(s, Mapping) or not isinstance(s.get("type"), str) or not _NAME.match(s["type"]):
            return f"srcs[{i}] must have a type name such as f16"
        if problem := _shape_problem(s.get("ne"), f"srcs[{i}]"):
            return problem
    if "dst_type" in replay and (
        not isinstance(replay["dst_type"], str) or not _NAME.match(replay["dst_type"])
    ):
        return "dst_type must be a type name such as f32"
    if replay.get("ne") and (problem := _shape_problem(replay["ne"], "ne")):
        return problem
    params = replay.get("params", {})
    if not isinstance(params, Mapping) or len(params) > MAX_PARAMS:
        return f"params must be a table of at most {MAX_PARAMS} values"
    for key, value in params.items():
        values = value if key == "op_params" and isinstance(value, list) else [value]
        if key == "op_params" and (not isinstance(value, list) or len(value) > MAX_PARAMS):
            return f"params.op_params must be a list of at most {MAX_PARAMS} whole numbers"
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                return f"params.{key} is not a finite number"
            if not isinstance(v, bool | int | float | str) or (isinstance(v, str) and len(v) > 40):
                return f"params.{key} must be a number or a short name"
            if type(v) is int and not -(1 << 31) <= v < (1 << 32):
                return f"params.{key} is out of the range of a 32-bit op parameter"
    return None


@dataclass(frozen=True)
class Outcome:
    profile: str
    verdict: str  # the dry run's verdict of the case on this profile
    detail: str  # kernel names / abort / limit
    missing: tuple[str, ...]  # base names of the missing kernels


def _f32_bits(x: float) -> int:
    if not math.isfinite(float(x)):
        raise ValueError(f"{x} is not a finite number")
    return int(struct.unpack("<i", struct.pack("<f", float(x)))[0])


def dst_shape(op: str, srcs: Sequence[Mapping[str, Any]]) -> list[int]:
    ne = [list(map(int, s["ne"])) for s in srcs]
    if op == "MUL_MAT":
        return [ne[0][1], ne[1][1], ne[1][2], ne[1][3]]
    if op == "MUL_MAT_ID":  # as [k, m, n_expert], b [k, n_used|1, n_tokens], ids [n_used, n_tokens]
        return [ne[0][1], ne[2][0], ne[1][2], 1]
    if op == "FLASH_ATTN_EXT":  # q [hsk, n_batch, n_head, ne3], v [hsv, …] -> [hsv, n_head, n_batch, ne3]
        return [ne[2][0], ne[0][2], ne[0][1], ne[0][3]]
    return ne[0]


def _im2col(params: Mapping[str, Any], srcs: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
    """ggml_im2col: op_params [s0, s1, p0, p1, d0, d1, is_2D] and the output shape (ggml.c)."""
    k = [int(x) for x in srcs[0]["ne"]]
    x = [int(v) for v in srcs[1]["ne"]]
    g = {
        key: int(params.get(key, d))
        for key, d in (("s0", 1), ("s1", 1), ("p0", 0), ("p1", 0), ("d0", 1), ("d1", 1))
    }
    is_2d = int(params.get("is_2D", 1))
    kw, kh = k[0], (k[1] if is_2d else 1)
    ic = x[2] if is_2d else x[1]
    ow = (x[0] + 2 * g["p0"] - g["d0"] * (kw - 1) - 1) // g["s0"] + 1
    oh = (x[1] + 2 * g["p1"] - g["d1"] * (kh - 1) - 1) // g["s1"] + 1 if is_2d else 1
    ne = [ic * kh * kw, ow, oh, x[3]] if is_2d else [ic * kw, ow, x[2], 1]
    return [g["s0"], g["s1"], g["p0"], g["p1"], g["d0"], g["d1"], is_2d], ne


def flash_attn_spec(
    dk: int, dv: int, kv: str, n_batch: int, *, n_kv: int, heads: int, kv_heads: int, mask_rows: int
) -> dict[str, Any]:
    """A FLASH_ATTN_EXT case (``case_line``'s input): q f32 [dk, n_batch, heads], k/v ``kv``
    [dk|dv, n_kv, kv_heads], an f16 mask [n_kv, mask_rows], precision F32."""
    return {
        "op": "FLASH_ATTN_EXT",
        "dst_type": "f32",
        "srcs": [
            {"type": "f32", "ne": [dk, n_batch, heads, 1]},
            {"type": kv, "ne": [dk, n_kv, kv_heads, 1]},
            {"type": kv, "ne": [dv, n_kv, kv_heads, 1]},
            {"type": "f16", "ne": [n_kv, mask_rows, 1, 1]},
        ],
        "params": {"prec": "f32"},
    }


def op_params(op: str, params: Mapping[str, Any], srcs: Sequence[Mapping[str, Any]]) -> list[int]:
    if "op_params" in params:
        return [int(x) for x in params["op_params"]]
    if op == "FLASH_ATTN_EXT":
        hsk = int(srcs[0]["ne"][0])
        scale = float(params.get("scale", 1.0 / math.sqrt(hsk)))
        prec = GGML_PREC[str(params.get("prec", "default"))]
        return [
            _f32_bits(scale),
            _f32_bits(float(params.get("max_bias", 0.0))),
            _f32_bits(float(params.get("logit_softcap", 0.0))),
            prec,
        ]
    return []


def case_line(tree: Path, replay: Mapping[str, Any], name: str = "-") -> str:
    """The replay case as one test-file line of ``tree`` (raises :class:`NotReplayable`)."""
    if problem := spec_problem(replay):
        raise NotReplayable(f"malformed replay spec: {problem}")
    ops, types = ggml_ids(tree)
    op = str(replay["op"])
    srcs = list(replay["srcs"])
    if f"GGML_OP_{op}" not in ops:
        raise NotReplayable(f"this tree has no GGML_OP_{op}")
    out: list[str] = []

    def type_id(t: str) -> str:
        key = f"GGML_TYPE_{t.upper()}"
        if key not in types:
            raise NotReplayable(f"this tree has no {key}")
        return str(types[key])

    try:
        if op == "IM2COL":
            params, shape = _im2col(replay.get("params", {}), srcs)
        else:
            params, shape = op_params(op, replay.get("params", {}), srcs), dst_shape(op, srcs)
    except (
        KeyError,
        IndexError,
        ValueError,
        ZeroDivisionError,
        OverflowError,
    ) as exc:  # sources or params the op lacks
        raise NotReplayable(f"malformed replay spec for {op}: {type(exc).__name__} {exc}") from None
    if problem := _shape_problem(shape, f"{op}'s output"):
        raise NotReplayable(f"malformed replay spec: {problem}")
    ne = [int(x) for x in replay.get("ne") or shape]
    out += [str(ops[f"GGML_OP_{op}"]), type_id(str(replay.get("dst_type", "f32"))), *map(str, ne)]
    out += [str(len(params)), *map(str, params), str(len(srcs))]
    for s in srcs:
        out += [type_id(str(s["type"])), *(str(int(x)) for x in s["ne"]), "0", "0", "0", "0"]
    out.append(name or "-")
    return " ".join(out)


def outcomes(run: DryRun) -> dict[str, Outcome]:
    """profile -> the replayed case's verdict (the run holds exactly one case)."""
    out: dict[str, Outcome] = {}
    for batch in run.runs:
        for p in batch.results:
            f = next(iter(p.findings), None) or next(iter(p.unsupported), None)
            if f is None:
                out[p.profile] = Outcome(p.profile, "pass", "", ())
            else:
                out[p.profile] = Outcome(
                    p.profile,
                    f.verdict,
                    detail(f) if f.verdict in CANNOT_ENCODE else f.rejected_node or f.abort,
                    tuple(m.base for m in f.missing),
                )
    return out


def named(o: Outcome, failure: str, kernel: str, text: str = "") -> bool:
    """Does the dry run name the crash: the failure class and, for a missing kernel, that kernel
    (base name), for an abort or a limit the given text when there is one."""
    if o.verdict != failure:
        return False
    if failure == "missing-kernel":
        return not kernel or kernel in o.missing
    inner = text.removeprefix("GGML_ASSERT(").removesuffix(")") if text.startswith("GGML_ASSERT(") else text
    return not inner or inner in o.detail


def silent(o: Outcome) -> bool:
    return o.verdict not in CANNOT_ENCODE
