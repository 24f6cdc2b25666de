"""What a missing Metal kernel means: the model feature that asks for it, whose gap it is, the fix.

"Function kernel_X was not found in the library" (MTLLibraryErrorDomain Code=5) says the library
*loaded* and lacks one kernel. The kernel's name tells why (the host code formats model
properties into it); each rule below is data: a name pattern, what asks for it, whose it is, the
fix for that cause, and where the fact comes from (public upstream threads, the trees' sources).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KernelRule:
    name: re.Pattern[str]
    feature: str  # what in the model / run asks for it ({0}, {1}: the name's groups)
    whose: str
    fix: str
    source: str


RULES: tuple[KernelRule, ...] = (
    KernelRule(
        re.compile(r"^kernel_\w*bf16\w*$"),
        "bf16 weights or activations (a bf16 matmul / op)",
        "bf16 compiled out: the library was compiled from source below Metal language 3.1, where ggml's "
        "Metal source drops every bf16 kernel (`#if __METAL_VERSION__ < 310` ... `#undef "
        "GGML_METAL_HAS_BF16`), while the device still reports bfloat and supports_op accepts BF16; the "
        "language a run-time compile gets follows how the host process was built (its SDK / deployment target)",
        "set GGML_METAL_BF16_DISABLE=1 where the build reads it (bf16 then runs elsewhere), or use f16 "
        "weights (convert with --outtype f16), or rebuild the host program with a current SDK / an embedded "
        "library compiled at build time; `llama-toolchain verify` on the build shows whether its library "
        "has the guard",
        "ggml Metal source (`__METAL_VERSION__ < 310` guard); xorbitsai/xllamacpp #173 / PR #174, "
        "LocalAI #11530, ferranpons/Llamatik #120, llama.cpp #21381",
    ),
    KernelRule(
        re.compile(r"^kernel_mul_mm_id_map0_ne20_(\d+)$"),
        "a mixture-of-experts model with {0} experts per token (the prompt batch's mul_mm_id path)",
        "an upstream gap: the host code formats the experts-per-token count into the kernel name and the "
        "library has no instantiation for {0} (llama.cpp added 5 in PR #18667 and 10 in PR #15799)",
        "update llama.cpp to a release whose library instantiates ne20_{0} (`llama-toolchain verify` on a "
        "build lists the values its library has); meanwhile run this model with -ngl 0 or a batch size of 1 "
        "(-ub 1 keeps to the mat-vec path)",
        "kernel_mul_mm_id_map0_ne20_%d in ggml-metal's host code; llama.cpp PR #18667, PR #15799",
    ),
    KernelRule(
        re.compile(r"^kernel_flash_attn_ext_(?:vec_)?(\w+?)_dk(\d+)_dv(\d+)$"),
        "flash attention with a K head size of {1} and a V head size of {2} ({0} K/V cache)",
        "an upstream gap: the encoder formats a head-size pair the library does not instantiate "
        "(supports_op checked K's head size but not V's; llama.cpp #28602 / PR #28599)",
        "run without flash attention (-fa off) or update llama.cpp to a release that instantiates "
        "dk{1}_dv{2}",
        "kernel_%s_%s_dk%d_dv%d in ggml-metal's host code; llama.cpp #28602, PR #28599",
    ),
    KernelRule(
        re.compile(
            r"^kernel_mul_(?:mv|mm)(?:_id)?_([a-z0-9]+(?:_[0-9]|_K|_xxs|_xs|_s|_m|_nl)?)_([a-z0-9]+)\w*$"
        ),
        "a matrix multiply of {0} weights by {1} activations",
        "an upstream gap: supports_op accepts a type pair the library has no kernel for (it checked src0's "
        "type but not src1's; llama.cpp PR #26212, #27949 / PR #25648)",
        "update llama.cpp to a release with the kernel or whose supports_op declines the pair; meanwhile "
        "use another cache / weight type (e.g. -ctk f16 -ctv f16, or f16 / q8_0 weights)",
        "kernel_mul_mv_%s_%s%s / kernel_mul_mm_%s_%s in ggml-metal's host code; llama.cpp PR #26212, #27949",
    ),
)

FALLBACK = KernelRule(
    re.compile(r"^kernel_\w+$"),
    "the op that kernel runs",
    "a library older (or newer) than its host code: the host asks for a kernel its library never had",
    "rebuild so that the library and the host code come from one tree (GGML_METAL_EMBED_LIBRARY=ON, or "
    "replace default.metallib with the one from the same build)",
    "the host code and its library disagree",
)


def explain(kernel: str) -> tuple[str, str, str, str]:
    """(feature, whose, fix, source) for a kernel the library lacks."""
    for rule in (*RULES, FALLBACK):
        m = rule.name.match(kernel)
        if m:
            groups = m.groups()
            return (
                rule.feature.format(*groups),
                rule.whose.format(*groups),
                rule.fix.format(*groups),
                rule.source,
            )
    return FALLBACK.feature, FALLBACK.whose, FALLBACK.fix, FALLBACK.source
