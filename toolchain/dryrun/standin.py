"""The stand-in for a tree's Objective-C layer, generated from the tree's own interface.

The Metal backend's Objective-C files (``ggml-metal-device.m``, ``ggml-metal-context.m``) sit behind
the plain C interface of ``ggml-metal-device.h`` / ``ggml-metal-context.h``; that interface changes
every few weeks upstream. The stand-in follows it instead of matching one commit:

- **Derived from the declarations**: the set of functions (declared in the headers, defined in the
  ``.m`` files, except the oracle's cut ``ggml_metal_device_supports_op``) and each one's signature,
  taken from the tree's header; the C++ sources compiled, as the tree's own
  ``ggml/src/ggml-metal/CMakeLists.txt`` lists them (``ggml-metal-fusion.cpp`` and
  ``-tuning.cpp`` only where it lists them); ``ggml_metal_op_init``'s arguments matched by
  parameter name (``ggml-metal-ops.h``); which props fields exist.
- **Modelled by hand** (``native/toolchain_dryrun_standin.cpp``): what decides a verdict —
  device properties per profile, the library and pipeline lookup by name, encoder dispatch and
  its limits, buffers, the graph-compute loop — plus harmless bodies for the rest. A model body is
  used under the tree's signature when the two agree or differ only in parameters the body does
  not use (``(void) x;``), or a parameter the tree lacks has a stand-in (``MISSING_PARAMS``): a
  single-device tree's ``ggml_metal_device_init(void)`` (ggml 2025-09-20 … 2026-02-02) takes the
  process's one profile, and the dry run runs one process per profile (``StandIn.single_device``).
- **Modelled by default**: a function the model has no body for (new upstream), or whose model
  body cannot follow the tree's signature, and that decides no verdict, is emitted as
  ``return {};`` (zero, false, NULL, an empty struct) and listed in the report.
- **Refused** (exit 72), naming the function: a verdict-deciding function (``VERDICT_DECIDING``,
  or a new function whose name says it dispatches, compiles or looks up pipelines or sets
  threadgroup memory) that changed in a way the model cannot follow, a ``ggml_metal_op_init``
  parameter the stand-in cannot supply, a source the tree's CMakeLists lists but does not have.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.tree import METAL_DIR, strip_comments
from .interface import CUT, HEADERS, OBJC_FILES, STANDIN, Signature, column0_definitions, objc_interface

GENERATED_NAME = "toolchain_dryrun_standin_tree.cpp"
METAL_CMAKE = METAL_DIR / "CMakeLists.txt"
OPS_HEADER = METAL_DIR / "ggml-metal-ops.h"
FUSION_HEADER = METAL_DIR / "ggml-metal-fusion.h"

# What decides a verdict (missing kernel, abort, over a limit, or whether a case is encoded at all),
# and why. A change the model cannot follow in one of these refuses the tree.
VERDICT_DECIDING: dict[str, str] = {
    "ggml_metal_device_init": "device properties per profile",
    "ggml_metal_device_get_props": "device properties per profile",
    "ggml_metal_device_get_library": "the library the pipelines are looked up in",
    "ggml_metal_device_get_memory": "the memory test-backend-ops sizes its cases by",
    "ggml_metal_library_init": "the library the pipelines are looked up in",
    "ggml_metal_library_get_pipeline": "pipeline lookup by name",
    "ggml_metal_library_compile_pipeline": "pipeline lookup by name (records the kernel asked for)",
    "ggml_metal_pipeline_init": "pipeline lookup by name",
    "ggml_metal_pipeline_max_theads_per_threadgroup": "the threads-per-threadgroup limit",
    "ggml_metal_encoder_init": "encoder dispatch",
    "ggml_metal_encoder_set_pipeline": "encoder dispatch (a nil pipeline aborts)",
    "ggml_metal_encoder_set_threadgroup_memory_size": "the threadgroup-memory limit",
    "ggml_metal_encoder_dispatch_threadgroups": "encoder dispatch (records grid and threads)",
    "ggml_metal_buffer_init": "buffers (tensor addresses)",
    "ggml_metal_buffer_map": "buffers (tensor addresses)",
    "ggml_metal_buffer_get_base": "buffers (tensor addresses)",
    "ggml_metal_buffer_get_id": "buffers (tensor addresses bound to a dispatch)",
    "ggml_metal_init": "the context the graph is encoded in",
    "ggml_metal_graph_compute": "the encode loop over ggml_metal_op_encode",
}
# a function the model does not know whose name says it takes part in dispatch decides verdicts;
# so does a per-pipeline parameter (ggml before c72a006f, 2025-12-04: ggml_metal_pipeline_get_nsg,
# _nr0, _nr1, _smem: threads per threadgroup, grid and threadgroup memory of each dispatch)
_VERDICT_NAME = re.compile(
    r"dispatch|set_pipeline|compile_pipeline|get_pipeline\b|threadgroup|library_init|pipeline_[gs]et_"
)
# a parameter a tree's signature lacks that the model body uses, and what stands for it there (the
# expression, why). ggml_metal_device_init(void): ggml before its virtual devices (ggml-org/ggml
# e1fda9de, 2026-02-02; the C++ backend since 2025-09-20) makes one device per process, a singleton
# (ggml_metal_device_get, ggml-metal-device.cpp): the dry run then runs one process per profile.
MISSING_PARAMS: dict[tuple[str, str], tuple[str, str]] = {
    ("ggml_metal_device_init", "device"): (
        "toolchain_dryrun_single_device()",
        "one device per process (the profile of the process: one dry-run process per profile)",
    ),
}
# model bodies that need a props field (else the default: listed)
NEEDS_PROPS = {"ggml_metal_supports_family": "gpu_family"}
# ggml_metal_op_init's parameters (by name) -> what the stand-in's graph compute passes, as the
# tree's ggml-metal-context.m does with its environment switches unset
OP_INIT_ARGS = {
    "dev": "(ctx)->dev",
    "cmd_buf": "nullptr",
    "gf": "(gf)",
    "finfo": "(ctx)->finfo",
    "idx_start": "0",
    "idx_end": "(gf)->n_nodes",
    "use_fusion": "(ctx)->use_fusion",
    "use_concurrency": "(ctx)->use_concurrency",
    "use_capture": "false",
    "debug_graph": "(ctx)->debug_graph",
    "debug_fusion": "0",
}


class StandInRefused(Exception):
    """The stand-in cannot follow this tree; ``problems`` names each function or file."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Param:
    type: str
    name: str


@dataclass(frozen=True)
class StandIn:
    source: str  # the generated C++ file
    metal_sources: tuple[Path, ...]  # the tree's C++ Metal files, relative, as its CMakeLists lists them
    modelled: tuple[str, ...]  # model body under the tree's signature
    adapted: tuple[str, ...]  # "name: how" (model body, signature differs in unused parameters)
    defaults: tuple[str, ...]  # "name: why" (modelled by default)
    not_in_tree: tuple[str, ...]  # model functions this tree does not declare (left out)
    # the tree's ggml_metal_device_init takes no device: one device per process, one process per profile
    single_device: bool = False

    def report_lines(self) -> list[str]:
        lines = [
            f"stand-in: {len(self.modelled)} functions modelled, {len(self.defaults)} modelled by default"
        ]
        if self.single_device:
            lines.append(
                "  one device per process (ggml_metal_device_init(void)): one dry-run process per profile"
            )
        lines += [f"  adapted: {a}" for a in self.adapted]
        lines += [f"  modelled by default: {d}" for d in self.defaults]
        return lines


def split_signature(sig: Signature) -> tuple[str, list[Param]]:
    """``ret`` and the parameters of a normalised signature text."""
    text = sig.text
    open_ = text.index(sig.name + "(")
    ret = text[:open_].strip()
    inner = text[open_ + len(sig.name) + 1 : text.rindex(")")]
    params: list[Param] = []
    if inner.strip() not in ("", "void"):
        for part in inner.split(","):
            m = re.match(r"^(.*?)(\w+)$", part.strip())
            if not m or not m.group(1).strip():
                raise ValueError(f"cannot read parameter {part!r} of {sig.text}")
            params.append(Param(" ".join(m.group(1).split()), m.group(2)))
    return ret, params


def _decl(ret: str, name: str, params: Sequence[Param]) -> str:
    plist = ", ".join(f"{p.type} {p.name}".replace("* ", "*").replace("*", "* ") for p in params) or "void"
    return f"{ret} {name}({plist})"


@dataclass(frozen=True)
class _ModelFn:
    name: str
    sig: Signature
    start: int  # line index of the signature
    end: int  # line index of the closing brace
    body: str  # between the braces


def _model_functions(lines: list[str]) -> list[_ModelFn]:
    sigs = column0_definitions(STANDIN, str(STANDIN.name))
    out: list[_ModelFn] = []
    for name, sig in sigs.items():
        start = int(sig.where.rsplit(":", 1)[1]) - 1
        end = next(j for j in range(start, len(lines)) if lines[j].rstrip() == "}")
        block = "\n".join(lines[start : end + 1])
        body = block[block.index("{") + 1 : block.rindex("}")]
        out.append(_ModelFn(name, sig, start, end, body))
    return sorted(out, key=lambda f: f.start)


def backend_sources(tree: Path) -> tuple[Path, ...]:
    """The C++ files of the tree's ggml-metal target, as its CMakeLists lists them."""
    path = tree / METAL_CMAKE
    if not path.is_file():
        raise StandInRefused([f"missing file: {METAL_CMAKE}"])
    text = re.sub(r"#.*", "", path.read_text(encoding="utf-8", errors="replace"))
    m = re.search(r"ggml_add_backend_library\s*\(\s*ggml-metal\s+([^)]*)\)", text)
    if not m:
        raise StandInRefused(
            [f"{METAL_CMAKE}: no ggml_add_backend_library(ggml-metal …) to read the sources from"]
        )
    files = m.group(1).split()
    cpp = tuple(METAL_DIR / f for f in files if f.endswith(".cpp"))
    missing = [f"missing file: {p} (listed in {METAL_CMAKE})" for p in cpp if not (tree / p).is_file()]
    if missing:
        raise StandInRefused(missing)
    return cpp


def op_init_macro(tree: Path) -> str:
    text = strip_comments((tree / OPS_HEADER).read_text(encoding="utf-8", errors="replace"))
    m = re.search(r"ggml_metal_op_init\s*\(([^)]*)\)\s*;", text)
    if not m:
        raise StandInRefused([f"ggml_metal_graph_compute: no ggml_metal_op_init declaration in {OPS_HEADER}"])
    args = []
    for part in m.group(1).split(","):
        pm = re.search(r"(\w+)\s*$", part.strip())
        name = pm.group(1) if pm else part.strip()
        if name not in OP_INIT_ARGS:
            raise StandInRefused(
                [
                    f"ggml_metal_graph_compute: ggml_metal_op_init ({OPS_HEADER}) takes `{' '.join(part.split())}`, "
                    "which the stand-in cannot supply"
                ]
            )
        args.append(OP_INIT_ARGS[name])
    return "#define TOOLCHAIN_OP_INIT(ctx, gf) ggml_metal_op_init(" + ", ".join(args) + ")"


_ASSERT = re.compile(r"^\s*(GGML_ASSERT\s*\((.*)\)\s*;)")
_C_WORDS = {"true", "false", "NULL", "nil", "nullptr", "sizeof"}


def tree_asserts(tree: Path, sig: Signature, params: Sequence[Param]) -> list[str]:
    """The tree's own ``GGML_ASSERT``s on the arguments, from the function's body in its ``.m``
    file (those reading nothing but the parameters), each with file:line."""
    rel, _, line = sig.where.rpartition(":")
    names = {p.name for p in params}
    for path in (tree / r for r in OBJC_FILES):
        defs = column0_definitions(path, str(path.relative_to(tree)))
        d = defs.get(sig.name)
        if d is None:
            continue
        lines = strip_comments(path.read_text(encoding="utf-8", errors="replace")).splitlines()
        start = int(d.where.rsplit(":", 1)[1]) - 1
        out = []
        for j in range(start, len(lines)):
            if j > start and lines[j].rstrip() == "}":
                break
            m = _ASSERT.match(lines[j])
            if m and set(re.findall(r"[A-Za-z_]\w*", m.group(2))) <= names | _C_WORDS:
                out.append(f"{m.group(1)}  // {d.where.rsplit(':', 1)[0]}:{j + 1}")
        return out
    return []


def _adapt(model: _ModelFn, tree_sig: Signature) -> tuple[str | None, str, tuple[str, ...]]:
    """(body under the tree's signature, how, the parameters stood in for (``MISSING_PARAMS``)) or
    (None, why not, ())."""
    m_ret, m_params = split_signature(model.sig)
    t_ret, t_params = split_signature(tree_sig)
    if m_ret != t_ret:
        return None, f"return type {t_ret} (model {m_ret})", ()
    body = model.body
    t_by = {p.name: p for p in t_params}
    m_by = {p.name: p for p in m_params}
    how = []
    stood_in: list[str] = []
    for p in m_params:
        if p.name in t_by and t_by[p.name].type != p.type:
            return None, f"parameter {p.name} is `{t_by[p.name].type}` (model `{p.type}`)", ()
        if p.name not in t_by:
            body = re.sub(rf"\(void\)\s*{p.name}\s*;\s?", "", body)
            if re.search(rf"\b{p.name}\b", body):
                stand = MISSING_PARAMS.get((model.name, p.name))
                if stand is None:
                    return None, f"the model uses parameter {p.name}, which this tree's signature lacks", ()
                body = f"\n    const {p.type} {p.name} = {stand[0]};  // {stand[1]}" + body
                stood_in.append(p.name)
                how.append(f"without {p.name}: {stand[1]}")
                continue
            how.append(f"without {p.name}")
    extra = [p.name for p in t_params if p.name not in m_by]
    if extra:
        body = "\n    " + " ".join(f"(void) {n};" for n in extra) + body
        how.append("with unused " + ", ".join(extra))
    return body, ", ".join(how), tuple(stood_in)


def generate(tree: Path, props_fields: Iterable[str]) -> StandIn:
    """The stand-in for ``tree`` (raises :class:`StandInRefused` naming what it cannot follow)."""
    missing = [
        f"missing file: {rel}" for rel in (*HEADERS, *OBJC_FILES, OPS_HEADER) if not (tree / rel).is_file()
    ]
    if missing:
        raise StandInRefused(missing)
    sources = backend_sources(tree)
    problems: list[str] = []
    try:
        op_init = op_init_macro(tree)
    except StandInRefused as exc:
        problems += exc.problems
        op_init = ""
    tree_fns = objc_interface(tree)
    model_text = STANDIN.read_text(encoding="utf-8")
    lines = model_text.splitlines()
    model = _model_functions(lines)
    by_name = {f.name: f for f in model}
    props = set(props_fields)
    modelled: list[str] = []
    adapted: list[str] = []
    defaults: list[str] = []
    emitted: dict[str, str] = {}
    default_fns: list[str] = []
    single_device = False
    for name, sig in sorted(tree_fns.items()):
        ret, params = split_signature(sig)
        decl = _decl(ret, name, params)
        fn = by_name.get(name)
        why = ""
        if fn is not None:
            need = NEEDS_PROPS.get(name)
            if need and need not in props:
                why = f"this tree's props have no {need}"
                body: str | None = None
            else:
                body, how, stood_in = _adapt(fn, sig)
                if name == "ggml_metal_device_init" and "device" in stood_in:
                    single_device = True
                if body is None:
                    why = f"changed signature ({sig.where}): {how}"
                elif how:
                    adapted.append(f"{name}: {how}")
            if body is not None:
                asserts = "".join(f"\n    {a}" for a in tree_asserts(tree, sig, params))
                emitted[name] = f"{decl} {{{asserts}{body}}}"
                modelled.append(name)
                continue
        else:
            why = f"new in this tree ({sig.where})"
        if name in VERDICT_DECIDING or (fn is None and _VERDICT_NAME.search(name)):
            reason = VERDICT_DECIDING.get(name) or (
                "a pipeline's dispatch parameter (threads, grid or threadgroup memory)"
                if re.search(r"pipeline_[gs]et_", name)
                else "its name says it takes part in dispatch"
            )
            problems.append(
                f"{name} decides verdicts ({reason}) and the stand-in cannot follow it: {why}: `{sig.text}`"
            )
            continue
        unused = " ".join(f"(void) {p.name};" for p in params)
        ret_stmt = "" if ret == "void" else " return {};"
        default_fns.append(
            f"// modelled by default: {why}\n{decl} {{\n    {unused}{ret_stmt}\n}}\n".replace(
                "{\n    \n", "{\n"
            )
        )
        defaults.append(f"{name}: {why}")
    if problems:
        raise StandInRefused(problems)
    out: list[str] = []
    skip_until = -1
    for i, line in enumerate(lines):
        fn = next((f for f in model if f.start == i), None)
        if fn is not None:
            skip_until = fn.end
            if fn.name in emitted:
                out.append(emitted[fn.name])
            continue
        if i <= skip_until:
            continue
        if line.startswith('}  // extern "C"'):
            out.extend(default_fns)
        out.append(line)
    head = [
        f"// GENERATED by toolchain.dryrun.standin from {STANDIN.name} for the tree it is built with: do not edit.",
        f"#define TOOLCHAIN_TREE_HAS_FUSION_H {int((tree / FUSION_HEADER).is_file())}",
        *(f"#define TOOLCHAIN_PROPS_HAS_{f} 1" for f in sorted(props)),
        op_init,
        "",
    ]
    return StandIn(
        "\n".join(head + out) + "\n",
        sources,
        tuple(modelled),
        tuple(adapted),
        tuple(defaults),
        tuple(sorted(set(by_name) - set(tree_fns) - {CUT})),
        single_device,
    )
