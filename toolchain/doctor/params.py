"""The run's parameters as doctor takes them (``-c -ngl -ub -ctk -ctv``), checked up front.

The same rules apply to doctor's own options and to the flags read from ``doctor run``'s
command: a value llama.cpp would not take (a negative context, an unknown cache type, a
number of 400 digits) is a UsageError naming the option and the accepted values, whether or
not a GGUF is given to plan with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError
from .classify import RunParams
from .memory import KV_TYPE_BYTES

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1  # llama.cpp's n_ctx is a uint32_t


@dataclass(frozen=True)
class IntRule:
    option: str
    low: int
    high: int
    accepted: str


RULES: dict[str, IntRule] = {
    "n_ctx": IntRule("-c", 0, UINT32_MAX, f"0 (the model's training context) to {UINT32_MAX}"),
    "n_gpu_layers": IntRule("-ngl", -1, INT32_MAX, f"-1 or auto (llama.cpp decides), all, 0 to {INT32_MAX}"),
    "n_ubatch": IntRule("-ub", 1, INT32_MAX, f"1 to {INT32_MAX}"),
}
NGL_WORDS = {"auto": None, "all": 999}
_INT = re.compile(r"[+-]?\d+")


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 24 else f"{text[:12]!r}… ({len(text)} characters)"


def looks_numeric(field: str, text: str) -> bool:
    """Whether ``text`` is meant as a value of the integer option ``field`` (right or wrong)."""
    return bool(_INT.fullmatch(text.strip())) or (field == "n_gpu_layers" and text.lower() in NGL_WORDS)


def parse_int(field: str, text: str | None, where: str = "") -> int | None:
    """``text`` as the integer option ``field`` (a key of RULES); None when not given."""
    if text is None:
        return None
    rule = RULES[field]
    if field == "n_gpu_layers" and text.lower() in NGL_WORDS:
        return NGL_WORDS[text.lower()]
    value = text.strip()
    if not _INT.fullmatch(value):
        raise UsageError(
            f"{rule.option} {_shown(text)}{where}: not a number", f"{rule.option} takes {rule.accepted}"
        )
    # compare as text first: a 400-digit number is refused without converting it
    digits = value.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 12 or not rule.low <= int(value) <= rule.high:
        raise UsageError(
            f"{rule.option} {_shown(text)}{where}: out of range", f"{rule.option} takes {rule.accepted}"
        )
    return int(value)


def cache_type(option: str, value: str | None, where: str = "") -> str | None:
    if value is None:
        return None
    if value not in KV_TYPE_BYTES:
        raise UsageError(
            f"{option} {_shown(value)}{where}: not a KV cache type llama.cpp takes",
            f"{option} takes one of: {', '.join(KV_TYPE_BYTES)}",
        )
    return value


def run_params(
    *,
    ctx: str | None = None,
    ngl: str | None = None,
    ub: str | None = None,
    ctk: str | None = None,
    ctv: str | None = None,
    flash_attn: bool | None = None,
    where: str = "",
) -> RunParams:
    """Checked RunParams from option values as given (strings); UsageError for any bad one."""
    return RunParams(
        n_ctx=parse_int("n_ctx", ctx, where),
        n_gpu_layers=parse_int("n_gpu_layers", ngl, where),
        cache_type_k=cache_type("-ctk", ctk, where),
        cache_type_v=cache_type("-ctv", ctv, where),
        n_ubatch=parse_int("n_ubatch", ub, where),
        flash_attn=flash_attn,
    )
