"""doctor's kernel-missing and encoder-limit classes on logs written from each era's own format
strings: the llama-cpp-python sdists 0.1.85, 0.2.76, 0.2.90, 0.3.16, 0.3.20 and 0.3.36 (downloaded
once into the tests' cache). 0.2.76 is the 2024 tree whose ggml.h still printed
``GGML_ASSERT: %s:%d: %s`` while its ggml-metal.m asserted ``smem <= …``; 0.3.20's ggml-metal-ops.cpp
has im2col's ``KH*KW <= …threads per threadgroup`` assert (gone from 0.3.24). The pipeline-error format, the GGML_ASSERT macro and the threadgroup-memory assert's
expression are read out of each tree's sources; a tree that rewords them fails here (the drift
guard). The NSError description is Metal's own format (`Error Domain=%@ Code=%ld "%@"`), the
kernel names are the real ones of public crash reports (llama.cpp PR #26212, ferranpons/Llamatik
#120) and of b11739's missing MoE map kernels."""

from __future__ import annotations

import re
import tarfile

import pytest

from fixtures.upstream.build_upstream import fetch_sdists
from tests.conftest import test_cache_dir as cache_dir
from toolchain.core.locking import exclusive
from toolchain.doctor.classify import classify_text
from toolchain.doctor.findings import Finding, sort_findings

ERAS = ("0.1.85", "0.2.76", "0.2.90", "0.3.16", "0.3.20", "0.3.36")
# how each era reports a pipeline whose function is missing (tree file, format regex)
_PIPELINE_FORMATS = (
    re.compile(r'"(%s: failed to compile pipeline: base = \'%s\', name = \'%s\'\\n)"'),
    re.compile(r'"(%s: (?:error: )?load pipeline error: %s\\n)"'),
)
_ERROR_LINE = re.compile(r'GGML_(?:METAL_)?LOG_ERROR\("(%s: %s\\n)"|metal_printf\("(%s: %s\\n)"')
_ASSERT_MACRO = re.compile(r'#define GGML_ASSERT\(x\).*?"(GGML_ASSERT\(%s\) failed)"')
# 2023-2024 ggml.h: fprintf(stderr, "GGML_ASSERT: %s:%d: %s\n", __FILE__, __LINE__, #x)
_LEGACY_MACRO = re.compile(r'#define GGML_ASSERT\(x\)[^#]*?"(GGML_ASSERT: %s:%d: %s)\\n"', re.S)
_THREADS = re.compile(
    r"GGML_ASSERT\(((?:KH\*KW|d_state|ne02|nsg\*32|nth) <= "
    r"(?:ggml_metal_pipeline_max_theads_per_threadgroup\(pipeline\)|\(int64_t\)pipeline\.maxTotalThreadsPerThreadgroup))\);"
)
_SMEM = re.compile(r"GGML_ASSERT\(((?:pipeline\.)?smem <= [\w.>-]+)\);")


def _sources(version: str) -> dict[str, str]:
    cache = cache_dir()
    with exclusive(cache / ".sdists.lock", wait=1800):
        sdist = fetch_sdists((version,), cache)[version]
    out: dict[str, str] = {}
    with tarfile.open(sdist) as tf:
        for m in tf.getmembers():
            name = m.name.split("/vendor/llama.cpp/", 1)[-1]
            if m.isfile() and (
                re.search(r"ggml-metal[\w-]*\.(?:m|cpp)$", name)
                or name.endswith(("ggml/include/ggml.h", "/ggml.h"))
                or name == "ggml.h"
            ):
                f = tf.extractfile(m)
                assert f is not None
                out[name] = f.read().decode("utf-8", "replace")
    return out


def _render(fmt: str, *values: str) -> str:
    out = fmt.replace("\\n", "")
    for v in values:
        out = out.replace("%s", v, 1)
    return out


def _nserror(kernel: str) -> str:
    text = f"Function {kernel} was not found in the library"
    return f'Error Domain=MTLLibraryErrorDomain Code=5 "{text}" UserInfo={{NSLocalizedDescription={text}}}'


def _first(findings: list[Finding]) -> Finding:
    return next(f for f in sort_findings(findings) if f.is_problem and f.severity == "error")


@pytest.fixture(scope="module", params=ERAS)
def era(request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    return request.param, _sources(request.param)


def _missing_log(src: dict[str, str], kernel: str) -> str:
    text = "\n".join(src.values())
    fmt = next((m.group(1) for p in _PIPELINE_FORMATS if (m := p.search(text))), None)
    assert fmt is not None, "the tree no longer reports a failed pipeline in a known format"
    if "base = " in fmt:  # 0.3.36: the pipeline line, then "%s: %s" with the error description
        err = next(m.group(1) or m.group(2) for m in _ERROR_LINE.finditer(text))
        lines = [
            _render(fmt, "ggml_metal_library_compile_pipeline", kernel, kernel),
            _render(err, "ggml_metal_library_compile_pipeline", _nserror(kernel)),
        ]
    else:
        lines = [_render(fmt, "ggml_metal_init", _nserror(kernel))]
    return "\n".join(["ggml_metal_init: GPU name:   Apple M2 Pro", *lines])


@pytest.mark.parametrize(
    ("kernel", "feature", "fix"),
    [
        ("kernel_mul_mm_bf16_f32", "bf16 weights", "GGML_METAL_BF16_DISABLE=1"),
        ("kernel_mul_mv_f32_f16_4", "f32 weights by f16 activations", "another cache / weight type"),
        ("kernel_mul_mm_id_map0_ne20_3", "3 experts per token", "instantiates ne20_3"),
        ("kernel_flash_attn_ext_f16_dk96_dv64", "K head size of 96 and a V head size of 64", "-fa off"),
    ],
)
def test_function_not_found_is_its_own_class(
    era: tuple[str, dict[str, str]], kernel: str, feature: str, fix: str
) -> None:
    _version, src = era
    _scan, findings = classify_text(_missing_log(src, kernel), observed_by="fixture")
    top = _first(findings)
    assert top.class_id == "kernel-missing", [(f.class_id, f.summary) for f in findings]
    assert kernel in top.summary and feature in top.summary and fix in top.fix
    assert "GGML_METAL_EMBED_LIBRARY=ON (the metal profile does)" not in top.fix
    assert "metal-library" not in {f.class_id for f in findings if f.severity == "error"}


def _assert_line(src: dict[str, str], expr: str) -> str:
    """The line the tree's own GGML_ASSERT prints for ``expr`` (in the file that asserts it)."""
    text = "\n".join(src.values())
    file = next(n for n, t in src.items() if expr in t).rsplit("/", 1)[-1]
    where = f"/Users/ci/llama.cpp/ggml/src/{file}"
    if macro := _ASSERT_MACRO.search(text):
        return f"{where}:1234: " + _render(macro.group(1), expr)
    legacy = _LEGACY_MACRO.search(text)
    assert legacy is not None, "the tree's GGML_ASSERT prints in no known format"
    return legacy.group(1).replace("%s", where, 1).replace("%d", "1234", 1).replace("%s", expr, 1)


def _top_of(line: str) -> Finding:
    _scan, findings = classify_text(
        f"ggml_metal_init: GPU name:   Apple M1\n{line}\nzsh: abort      ./llama-cli", observed_by="fixture"
    )
    top = _first(findings)
    assert top.class_id == "encoder-limit", [(f.class_id, f.summary) for f in findings]
    assert "smaller -ub" in top.fix
    return top


def test_threadgroup_memory_assert_is_its_own_class(era: tuple[str, dict[str, str]]) -> None:
    version, src = era
    exprs = _SMEM.findall("\n".join(src.values()))
    if not exprs:
        assert version == "0.1.85"  # the first Metal backend had no such assert
        return
    line = _assert_line(src, exprs[0])
    if version == "0.2.76":  # the 2024 wording: "GGML_ASSERT: file:line: expr"
        assert line.startswith("GGML_ASSERT: /Users/ci/llama.cpp/ggml/src/ggml-metal.m:1234: smem <= ")
    _top_of(line)


def test_threads_per_threadgroup_asserts_are_encoder_limits(era: tuple[str, dict[str, str]]) -> None:
    version, src = era
    exprs = sorted(set(_THREADS.findall("\n".join(src.values()))))
    expected = {
        "0.1.85": set(),
        "0.2.76": set(),
        "0.2.90": set(),
        "0.3.16": {"d_state"},
        "0.3.20": {"KH*KW", "d_state", "ne02", "nsg*32", "nth"},
        "0.3.36": {"ne02", "nsg*32", "nth"},
    }[version]
    # im2col's KH*KW: 0.3.17-0.3.23 only; none while ggml.h printed "GGML_ASSERT: %s:%d: %s"
    assert {e.split(" <= ")[0] for e in exprs} == expected
    for expr in exprs:
        _top_of(_assert_line(src, expr))
