"""What a shipped Metal build can and cannot run, read from the build alone (no tree): ``static``.

The kernel library a build ships is read where the build's loader finds it:

- embedded (``__DATA,__ggml_metallib``): the Metal *source* (``GGML_METAL_EMBED_LIBRARY``), or a
  compiled library (``MTLB`` magic);
- beside the binary: ``default.metallib`` (compiled) or ``ggml-metal.metal`` (source, compiled at
  run time).

Its kernel inventory: from source, the ``host_name`` instantiations and ``kernel void`` definitions
on the lines the preprocessor keeps (``dryrun.library.names_in_text``, with the loader's defines
for a device with bfloat and a Metal language version); from a compiled library, the function
names and language version in its function list (``NAME`` / ``VERS`` tags).

It is compared with what the host code of the *same* binary asks for: the kernel-name formats in
its ``__TEXT,__cstring`` (``kernel_mul_mm_id_map0_ne20_%d``: the encoder formats a value into the
name) and, in older builds, the literal kernel names its init loads. Each family of
:data:`FAMILIES` (data, one place) turns that into a plain can / cannot-run line.

Nothing here was observed on a device: each fact says where it was read.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.binlayout import MalformedBinary, macho_sections, read_whole
from ..dryrun.library import names_in_text
from .binaries import BinarySlice

SEGMENT, SECTION = "__DATA", "__ggml_metallib"
SOURCE_FILE, COMPILED_FILE = "ggml-metal.metal", "default.metallib"
# The loader's defines for a device that reports bfloat (ggml-metal-device.m: GGML_METAL_HAS_BF16
# when props.has_bfloat), at the Metal language a run-time compile gets on macOS 15 (3.2) and at
# one below 3.1, where the sources drop bf16 (`#if __METAL_VERSION__ < 310` ... `#undef
# GGML_METAL_HAS_BF16`).
DEFINES_NEW = {"GGML_METAL_EMBED_LIBRARY": "1", "GGML_METAL_HAS_BF16": "1", "__METAL_VERSION__": "320"}
DEFINES_OLD = {**DEFINES_NEW, "__METAL_VERSION__": "300"}
BF16_MIN_LANGUAGE = (3, 1)

# ggml type names as the kernels spell them (ggml.c type_traits .type_name)
TYPES = (
    "f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 mxfp4 nvfp4 q2_K q3_K q4_K q5_K q6_K q8_K iq2_xxs iq2_xs "
    "iq3_xxs iq3_s iq2_s iq1_s iq1_m iq4_nl iq4_xs tq1_0 tq2_0 i8 i16 i32 i64"
).split()
_T = "|".join(sorted(TYPES, key=len, reverse=True))


@dataclass(frozen=True)
class Library:
    """One kernel library a build ships."""

    kind: str  # "embedded source", "embedded compiled", "source beside", "compiled beside"
    where: str  # "libggml-metal.dylib __DATA,__ggml_metallib (arm64)", "default.metallib"
    names: frozenset[str]  # kernels present (source: with DEFINES_NEW)
    names_old: frozenset[str] | None  # source only: kernels at a Metal language below 3.1
    language: tuple[int, int] | None  # compiled only: the Metal language version it was built for
    bf16_guard: bool  # source: has the `__METAL_VERSION__ < 310` bf16 guard


@dataclass(frozen=True)
class Fact:
    """One line of the can / cannot-run table."""

    file: str
    arch: str
    topic: str  # "MoE experts per token", "flash attention K/V head sizes", ...
    can: str
    cannot: str
    source: str  # where each side was read
    observed_by: str = "static"


@dataclass(frozen=True)
class Family:
    """A kernel family whose name the host code formats from a model property."""

    topic: str
    host: re.Pattern[str]  # matches the host code's format string(s) for it
    name: re.Pattern[str]  # matches a kernel name of the family; groups are the parameters
    describe: Callable[
        [list[tuple[str, ...]], list[str]], tuple[str, str]
    ]  # (params, formats) -> (can, cannot)


def _ints(values: Iterable[str]) -> list[int]:
    return sorted({int(v) for v in values})


def _moe(params: list[tuple[str, ...]], _formats: list[str]) -> tuple[str, str]:
    have = _ints(p[0] for p in params)
    if not have:
        return "", "no map kernel for any number of experts per token: every MoE prompt batch fails"
    gaps = [n for n in range(1, have[-1] + 1) if n not in have]
    can = f"{len(have)} values: {', '.join(map(str, have))} experts per token"
    cannot = (
        f"a MoE with {', '.join(map(str, gaps))} or more than {have[-1]} experts per token: no map kernel "
        "for the prompt batch (mul_mm_id path; the first batch of more than a few tokens fails with "
        "`Function kernel_mul_mm_id_map0_ne20_N was not found`)"
        if gaps
        else f"more than {have[-1]} experts per token"
    )
    return can, cannot


def _pairs(params: list[tuple[str, ...]], _formats: list[str]) -> tuple[str, str]:
    by_variant: dict[str, dict[tuple[int, int], set[str]]] = {}
    for variant, kv_type, dk, dv in params:
        by_variant.setdefault(variant.rstrip("_") or "ext", {}).setdefault((int(dk), int(dv)), set()).add(
            kv_type
        )
    can_parts, cannot_parts = [], []
    for variant, pairs in sorted(by_variant.items()):
        types = set().union(*pairs.values())
        text = ", ".join(f"{k}/{v}" for k, v in sorted(pairs))
        can_parts.append(f"{variant}: K/V head sizes {text} ({len(types)} K/V types)")
        partial = [
            f"{k}/{v} only for {', '.join(sorted(t))}" for (k, v), t in sorted(pairs.items()) if t != types
        ]
        if partial:
            cannot_parts.append(f"{variant}: {'; '.join(partial[:6])}{' …' if len(partial) > 6 else ''}")
        cannot_parts.append(f"{variant}: any other K/V head size pair")
    return "; ".join(can_parts), "; ".join(cannot_parts)


def _type_pairs(params: list[tuple[str, ...]], _formats: list[str]) -> tuple[str, str]:
    by_src1: dict[str, set[str]] = {}
    for t0, t1 in params:
        by_src1.setdefault(t1, set()).add(t0)
    every0 = set().union(*by_src1.values()) if by_src1 else set()
    can = "; ".join(f"src1 {t1}: {len(t0s)} src0 types" for t1, t0s in sorted(by_src1.items()))
    lacking = [
        f"src1 {t1} with src0 {', '.join(sorted(every0 - t0s, key=TYPES.index))}"
        for t1, t0s in sorted(by_src1.items())
        if every0 - t0s
    ]
    if not lacking:
        return can, ""
    return can, (
        "no kernel for "
        + "; ".join(lacking)
        + " (a graph that asks for one fails unless the host's supports_op declines it: not read, no tree)"
    )


FAMILIES: tuple[Family, ...] = (
    Family(
        "MoE experts per token (mul_mm_id map kernels)",
        re.compile(r"^kernel_mul_mm_id_map0_ne20_%d$"),
        re.compile(r"^kernel_mul_mm_id_map0_ne20_(\d+)$"),
        _moe,
    ),
    Family(
        "flash attention K/V head sizes",
        re.compile(r"^kernel_.*dk%d_dv%d"),
        re.compile(rf"^kernel_flash_attn_ext_(vec_|)({_T})_dk(\d+)_dv(\d+)$"),
        _pairs,
    ),
    Family(
        "mat-vec type pairs (mul_mv)",
        re.compile(r"^kernel_mul_mv_%s_%s"),
        re.compile(rf"^kernel_mul_mv_({_T})_({_T})(?:_4|_short|_1row|_l4)?$"),
        _type_pairs,
    ),
    Family(
        "mat-mat type pairs (mul_mm)",
        re.compile(r"^kernel_mul_mm_%s_%s$"),
        re.compile(rf"^kernel_mul_mm_({_T})_({_T})$"),
        _type_pairs,
    ),
    Family(
        "MoE mat-mat type pairs (mul_mm_id)",
        re.compile(r"^kernel_mul_mm_id_%s_%s$"),
        re.compile(rf"^kernel_mul_mm_id_({_T})_({_T})$"),
        _type_pairs,
    ),
)


# --- reading the libraries ----------------------------------------------------------------------
def compiled_names(data: bytes) -> tuple[frozenset[str], tuple[int, int] | None]:
    """Function names and the (newest) Metal language version of a compiled ``.metallib``: its
    function list's ``NAME`` tags and ``VERS`` tags (air major, minor, language major, minor)."""
    names = frozenset(
        m.group(1).decode() for m in re.finditer(rb"NAME..(kernel_[A-Za-z0-9_]+)\x00", data, re.S)
    )
    versions = {struct.unpack("<4H", m.group(1))[2:] for m in re.finditer(rb"VERS\x08\x00(.{8})", data, re.S)}
    return names, (max(versions) if versions else None)


def _from_source(kind: str, where: str, text: str) -> Library:
    return Library(
        kind,
        where,
        frozenset(names_in_text(text, DEFINES_NEW)),
        frozenset(names_in_text(text, DEFINES_OLD)),
        None,
        bool(re.search(r"__METAL_VERSION__\s*<\s*310", text)),
    )


def _from_compiled(kind: str, where: str, data: bytes) -> Library:
    names, language = compiled_names(data)
    return Library(kind, where, names, None, language, False)


def libraries(carrier: BinarySlice, data: bytes, resource_dirs: Iterable[Path]) -> list[Library]:
    """The kernel libraries the build's loader would find for this slice (embedded first)."""
    out: list[Library] = []
    for arch, raw in macho_sections(data, SEGMENT, SECTION):
        if arch != carrier.arch:
            continue
        where = f"{carrier.path.name} {SEGMENT},{SECTION}"
        if raw.startswith(b"MTLB"):
            out.append(_from_compiled("embedded compiled library", where, raw))
        else:
            out.append(_from_source("embedded source library", where, raw.decode("utf-8", "replace")))
    if out:
        return out
    for d in resource_dirs:
        if (d / COMPILED_FILE).is_file():
            return [
                _from_compiled(
                    "compiled library beside the binary",
                    str(d / COMPILED_FILE),
                    (d / COMPILED_FILE).read_bytes(),
                )
            ]
        if (d / SOURCE_FILE).is_file():
            text = (d / SOURCE_FILE).read_text(encoding="utf-8", errors="replace")
            return [
                _from_source(
                    "source library beside the binary (compiled at run time)", str(d / SOURCE_FILE), text
                )
            ]
    return out


def host_strings(carrier: BinarySlice, data: bytes) -> tuple[list[str], set[str]]:
    """The kernel-name formats (with ``%``) and literal kernel names in the carrier's own
    ``__TEXT,__cstring`` for its architecture."""
    formats: list[str] = []
    literals: set[str] = set()
    for arch, raw in macho_sections(data, "__TEXT", "__cstring"):
        if arch != carrier.arch:
            continue
        for s in raw.split(b"\0"):
            if not s.startswith(b"kernel_") or len(s) > 200:
                continue
            text = s.decode("ascii", "replace")
            if "%" in text:
                formats.append(text)
            elif re.fullmatch(r"kernel_\w+", text):
                literals.add(text)
    return list(dict.fromkeys(formats)), literals


# --- the table --------------------------------------------------------------------------------------
def facts(carrier: BinarySlice, resource_dirs: Iterable[Path]) -> list[Fact]:
    """The can / cannot-run lines for one Metal carrier slice ([] when it ships no library we can read)."""
    try:
        data = read_whole(carrier.path)
        libs = libraries(carrier, data, resource_dirs)
        formats, literals = host_strings(carrier, data)
    except (OSError, MalformedBinary):  # the readable check reports a damaged file
        return []
    out: list[Fact] = []
    file, arch = carrier.path.name, carrier.arch
    host_src = f"{file} __TEXT,__cstring ({arch})"
    for lib in libs:
        lib_src = f"{lib.kind}: {lib.where}"
        out.append(
            Fact(
                file,
                arch,
                "kernel inventory",
                f"{len(lib.names)} kernels ({lib.kind}"
                + (f", Metal language {lib.language[0]}.{lib.language[1]}" if lib.language else "")
                + ")",
                "",
                lib_src,
            )
        )
        for fam in FAMILIES:
            asked = [f for f in formats if fam.host.search(f)]
            params = [m.groups() for n in lib.names if (m := fam.name.match(n))]
            if not asked and not params:
                continue
            can, cannot = fam.describe(params, asked)
            how = (
                f"the host formats {', '.join(repr(a) for a in asked[:2])} ({host_src})"
                if asked
                else f"no such format in {host_src}: the host may not ask for these by that name"
            )
            out.append(Fact(file, arch, fam.topic, can, cannot, f"{lib_src}; {how}"))
        out.append(_bf16(file, arch, lib, lib_src, carrier))
        if literals:
            missing = sorted(literals - lib.names)
            out.append(
                Fact(
                    file,
                    arch,
                    "kernels the host code loads by name",
                    f"{len(literals) - len(missing)} of {len(literals)} in the library",
                    (
                        f"missing: {', '.join(missing[:12])}{' …' if len(missing) > 12 else ''}"
                        if missing
                        else ""
                    ),
                    f"{lib_src}; literal kernel names in {host_src}",
                )
            )
    return out


def _bf16(file: str, arch: str, lib: Library, lib_src: str, carrier: BinarySlice) -> Fact:
    topic = "bf16 kernels"
    new = sorted(n for n in lib.names if "bf16" in n)
    if lib.names_old is not None:  # source: compiled on the user's Mac, at the host process's language
        old = sorted(n for n in lib.names_old if "bf16" in n)
        if lib.bf16_guard and len(old) < len(new):
            return Fact(
                file,
                arch,
                topic,
                f"{len(new)} bf16 kernels when the source is compiled at Metal language >= 3.1",
                f"compiled below Metal 3.1 the source drops {len(new) - len(old)} of them (`#if __METAL_VERSION__ "
                "< 310` ... `#undef GGML_METAL_HAS_BF16`) while the device still reports bfloat: the first bf16 "
                "matmul has no kernel (`Function kernel_mul_mm_bf16_f32 was not found`). The language a "
                "run-time compile gets follows the host process (its SDK / deployment target): set "
                "GGML_METAL_BF16_DISABLE=1 where the tree reads it, use f16 weights, or rebuild the host "
                "with a current SDK",
                f"{lib_src} (the `__METAL_VERSION__ < 310` guard in its text); this binary's LC_BUILD_VERSION: "
                f"SDK {carrier.sdk or 'not recorded'}, minos {carrier.minos or 'not recorded'} (the host "
                "process that loads it decides the language: verify that program too)",
            )
        return Fact(
            file, arch, topic, f"{len(new)} bf16 kernels", "" if new else "bf16 weights: no kernel", lib_src
        )
    if lib.language is not None and lib.language < BF16_MIN_LANGUAGE:
        return Fact(
            file,
            arch,
            topic,
            f"{len(new)} bf16 kernels",
            f"bf16 kernels need Metal language 3.1 (bfloat); this library was compiled for "
            f"{lib.language[0]}.{lib.language[1]}: bf16 weights have no kernel here: use f16 weights",
            f"{lib_src} (VERS tags of its function list)",
        )
    return Fact(
        file, arch, topic, f"{len(new)} bf16 kernels", "" if new else "bf16 weights: no kernel", lib_src
    )
