"""doctor's dry run of a missing-kernel case: the op the log's missing kernel belongs to, with the
GGUF's own types and sizes, encoded by the Metal dry run of a tree (``dry-run``).

From the kernel's name (the host code formats model properties into it) and the GGUF:

- ``kernel_mul_mm_id_map0_ne20_N``: MUL_MAT_ID at a prompt batch (512 tokens) with N experts per
  token (the GGUF's ``<arch>.expert_used_count`` must say N), ``<arch>.expert_count`` experts, the
  first ``*_exps`` tensor's type and [k, m];
- ``kernel_flash_attn_ext_[vec_]T_dkK_dvV``: FLASH_ATTN_EXT with K / V head sizes K, V (the GGUF's
  ``<arch>.attention.key_length`` / ``value_length`` must say so), its head counts, a T cache,
  one token (vec) or a 32-token batch;
- ``kernel_mul_mv_T0_T1*`` / ``kernel_mul_mm_T0_T1``: MUL_MAT of a T0 weight tensor of the GGUF
  (the first one of that type: its [k, m]) by a T1 activation of one token (mv) or 32 (mm);
- ``kernel_mul_mv_id_T0_T1*`` / ``kernel_mul_mm_id_T0_T1``: MUL_MAT_ID of the first T0 ``*_exps``
  tensor, with the GGUF's expert counts.

Without a GGUF the case is not derived (no shape is invented): doctor says so. The case is one line
of the tree's own test-file format (:func:`toolchain.dryrun.replay.case_line`, ids from that tree's
``ggml.h``) and the dry run's verdict per profile names the kernel missing, or not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.tree import ggml_ids
from ..dryrun.replay import NotReplayable, case_line, flash_attn_spec, outcomes
from ..dryrun.run import dry_run
from ..errors import DiskFullError, ToolchainError
from .gguf_reader import GGUFInfo, TensorInfo

PROMPT_TOKENS = 512  # the prompt batch (-ub 512): the mat-mat paths
MM_TOKENS = 32
PROFILES = ("apple7", "apple9", "apple10")

_MAP0 = re.compile(r"^kernel_mul_mm_id_map0_ne20_(\d+)$")
_FA = re.compile(r"^kernel_flash_attn_ext_(vec_)?([a-z0-9_]+?)_dk(\d+)_dv(\d+)$")
_MM = re.compile(r"^kernel_mul_(mv|mm)(_id)?_([a-z0-9]+(?:_[0-9]|_K|_xxs|_xs|_s|_m|_nl)?)_([a-z0-9]+)")


class NotDerived(Exception):
    """The case cannot be derived from the kernel name and the GGUF (the message says why)."""


@dataclass(frozen=True)
class KernelCase:
    kernel: str
    spec: dict[str, Any]  # the replay spec (op, srcs, params)
    from_gguf: tuple[str, ...]  # which GGUF facts gave the sizes


@dataclass(frozen=True)
class KernelDryRun:
    kernel: str
    tree: str
    line: str  # the test-file line that was encoded
    verdicts: Mapping[str, str]  # profile -> "missing-kernel: kernel_x" / "pass" / other verdict
    named: bool  # the dry run named this kernel missing on some profile
    from_gguf: tuple[str, ...]


def _type_names(tree: Path) -> dict[int, str]:
    _ops, types = ggml_ids(tree)
    return {v: k.removeprefix("GGML_TYPE_").lower() for k, v in types.items()}


def _meta(info: GGUFInfo, key: str) -> int | None:
    value = info.metadata.get(f"{info.architecture}.{key}")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _first(info: GGUFInfo, names: Mapping[int, str], want: str, *, experts: bool) -> TensorInfo:
    for t in info.tensors:
        if names.get(t.ggml_type) == want and (
            t.name.endswith("_exps.weight") if experts else len(t.shape) == 2
        ):
            return t
    kind = "expert (*_exps)" if experts else "2-D"
    raise NotDerived(
        f"the GGUF has no {kind} tensor of type {want}: the kernel's weights are not this model's"
    )


def derive(kernel: str, info: GGUFInfo | None, tree: Path) -> KernelCase:
    """The op the missing kernel encodes, sized from the GGUF (raises :class:`NotDerived`)."""
    if info is None:
        raise NotDerived("no GGUF given (--gguf): the op's sizes would have to be invented")
    if not info.tensors:
        raise NotDerived(f"{info.path}: no tensor infos could be read")
    names = _type_names(tree)
    used, count = _meta(info, "expert_used_count"), _meta(info, "expert_count")
    if m := _MAP0.match(kernel):
        n = int(m.group(1))
        if used != n:
            raise NotDerived(
                f"{kernel} is asked for with {n} experts per token; the GGUF's {info.architecture}."
                f"expert_used_count is {used}: this model does not ask for it"
            )
        t = next((t for t in info.tensors if t.name.endswith("_exps.weight") and len(t.shape) == 3), None)
        if t is None or not count:
            raise NotDerived("the GGUF has no 3-D *_exps tensor / expert_count: not a MoE model")
        k, rows = t.shape[0], t.shape[1]
        spec = _mmid(names[t.ggml_type], "f32", k, rows, count, n, PROMPT_TOKENS)
        return KernelCase(
            kernel,
            spec,
            (f"{info.architecture}.expert_used_count = {n}", f"expert_count = {count}", _tdesc(t, names)),
        )
    if m := _FA.match(kernel):
        vec, kv_type, dk, dv = bool(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        key_len, val_len = _meta(info, "attention.key_length"), _meta(info, "attention.value_length")
        heads = _meta(info, "attention.head_count")
        if heads is None:
            raise NotDerived(f"the GGUF has no {info.architecture}.attention.head_count")
        kv_heads = _meta(info, "attention.head_count_kv") or heads
        if (key_len, val_len) != (dk, dv):
            raise NotDerived(
                f"{kernel} is asked for with K/V head sizes {dk}/{dv}; the GGUF says "
                f"key_length {key_len} / value_length {val_len}: this model does not ask for it"
            )
        batch, n_kv = (1 if vec else MM_TOKENS), 512
        spec = flash_attn_spec(
            dk, dv, kv_type, batch, n_kv=n_kv, heads=heads, kv_heads=kv_heads, mask_rows=batch
        )
        return KernelCase(
            kernel,
            spec,
            (
                f"{info.architecture}.attention.key_length = {dk}",
                f"value_length = {dv}",
                f"head_count = {heads}",
                f"head_count_kv = {kv_heads}",
                f"{kv_type} K/V cache (the kernel's name)",
            ),
        )
    if m := _MM.match(kernel):
        path, is_id, t0, t1 = m.group(1), bool(m.group(2)), m.group(3), m.group(4)
        tokens = 1 if path == "mv" else MM_TOKENS
        if is_id:
            if not used or not count:
                raise NotDerived("the GGUF has no expert_used_count / expert_count: not a MoE model")
            t = _first(info, names, t0, experts=True)
            spec = _mmid(t0, t1, t.shape[0], t.shape[1], count, used, tokens)
            return KernelCase(
                kernel, spec, (_tdesc(t, names), f"expert_used_count = {used}", f"{t1} activations")
            )
        t = _first(info, names, t0, experts=False)
        k, rows = t.shape[0], t.shape[1]
        spec = {
            "op": "MUL_MAT",
            "dst_type": "f32",
            "srcs": [{"type": t0, "ne": [k, rows, 1, 1]}, {"type": t1, "ne": [k, tokens, 1, 1]}],
        }
        return KernelCase(
            kernel, spec, (_tdesc(t, names), f"{t1} activations of {tokens} token(s) (the kernel's name)")
        )
    raise NotDerived(
        f"{kernel}: no op is derived from this kernel's name (only mul_mv / mul_mm / map0 / flash_attn_ext)"
    )


def _mmid(t0: str, t1: str, k: int, rows: int, n_expert: int, n_used: int, tokens: int) -> dict[str, Any]:
    return {
        "op": "MUL_MAT_ID",
        "dst_type": "f32",
        "srcs": [
            {"type": t0, "ne": [k, rows, n_expert, 1]},
            {"type": t1, "ne": [k, n_used, tokens, 1]},
            {"type": "i32", "ne": [n_used, tokens, 1, 1]},
        ],
    }


def _tdesc(t: TensorInfo, names: Mapping[int, str]) -> str:
    return f"tensor {t.name} ({names.get(t.ggml_type, t.ggml_type)}, {list(t.shape)})"


def run_case(case: KernelCase, tree: Path, cache_dir: Path, work: Path) -> KernelDryRun:
    """Encode the case with the dry run of ``tree`` (raises NotDerived / ToolchainError)."""
    try:
        line = case_line(tree, case.spec, f"doctor:{case.kernel}")
    except NotReplayable as exc:
        raise NotDerived(f"the case cannot be written for {tree}: {exc}") from exc
    work.mkdir(parents=True, exist_ok=True)
    ops = work / "kernel-case.ops"
    ops.write_text(line + "\n", encoding="utf-8")
    run = dry_run(tree, cache_dir, work, batches=[("doctor-case", ops)], profiles=list(PROFILES))
    verdicts: dict[str, str] = {}
    named = False
    for profile, o in sorted(outcomes(run).items()):
        verdicts[profile] = f"{o.verdict}: {', '.join(o.missing)}" if o.missing else o.verdict
        named = named or (o.verdict == "missing-kernel" and case.kernel in o.missing)
    return KernelDryRun(case.kernel, str(tree), line, verdicts, named, case.from_gguf)


def dry_run_kernel(
    kernel: str, info: GGUFInfo | None, tree: Path | None, cache_dir: Path, work: Path
) -> KernelDryRun | str:
    """The dry run's verdict on the log's missing kernel, or why there is none (a sentence)."""
    if tree is None:
        return "no tree to dry-run with (give --tree, or --build of a build dir whose CMakeCache.txt names its checkout)"
    try:
        return run_case(derive(kernel, info, tree), tree, cache_dir, work)
    except NotDerived as exc:
        return f"{kernel}: the case cannot be derived: {exc}"
    except DiskFullError:
        raise  # the disk's problem, not the case's
    except ToolchainError as exc:
        return f"{kernel}: the dry run cannot be made for {tree}: {exc.message}"
