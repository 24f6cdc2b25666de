"""Build the dry run for a tree: its Metal C++ files, ggml, test-backend-ops, the oracle's cut
supports_op and our stand-in, as one program (``native/``, CMake + Ninja like the oracle probe).

The stand-in for the Objective-C layer is generated for the tree's own interface
(``standin.generate``); refused before anything is compiled only when a verdict-deciding function
changed in a way the stand-in cannot follow (named), or supports_op cannot be cut (the oracle's
rules). Built once per content — our native sources, the generated stand-in, the cut, the props
struct, the tree's ggml, Metal backend and test-backend-ops — into ``<cache>/dryrun/dryrun-<key>/``
(``toolchain.builder.native``, as the probe); a compile failure is remembered there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..builder.native import DRYRUN, NativeBuildFailed, build_once, content_key
from ..core.tree import BACKEND_OPS_SOURCE, METAL_DIR
from ..oracle.extract import Extraction, ExtractionFailed, extract
from ..oracle.probe import Probe, cut_seed, generated_sources
from .standin import GENERATED_NAME, StandIn, StandInRefused, generate


class DryRunUnavailable(Exception):
    """The dry run cannot be made for this tree; ``problems`` names each reason."""

    def __init__(self, problems: Sequence[str], log: Path | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)
        self.log = log


@dataclass(frozen=True)
class DryRunProgram(Probe):
    """The same record as the oracle's probe (executable, content key, the cut it holds, whether it
    was built now) and the stand-in generated for the tree (what is modelled by default)."""

    standin: StandIn | None = None
    # the tree's test-backend-ops reads a case file (--test-file: ggml 05523be4, 2026-03-12 on); else
    # the driver reads it itself (--cases, test-backend-ops' own line format and test_generic_op)
    reads_test_file: bool = True


def program_key(tree: Path, extraction: Extraction, standin: StandIn | None = None) -> str:
    metal = [p for p in (tree / METAL_DIR).glob("*") if p.is_file()]
    seed = b"dryrun\0" + cut_seed(extraction) + (standin.source.encode() if standin else b"")
    return content_key(DRYRUN, seed, tree, [*metal, tree / BACKEND_OPS_SOURCE])


def ensure_program(
    tree: Path,
    cache_dir: Path,
    *,
    compiler_cache_dir: Path | None = None,
    build_lock: Path | None = None,
) -> DryRunProgram:
    """The dry-run program for ``tree``, built now if no build of the same content is cached.

    The compile holds the cache's native-build lock (``toolchain.builder.native``); ``build_lock``:
    a machine-wide lock of the caller's held as well (the test suite passes its host's).
    """
    start = time.monotonic()
    tree = tree.resolve()
    if not (tree / METAL_DIR / "ggml-metal-device.h").is_file():
        raise DryRunUnavailable(
            ["no C++ Metal backend in this tree (ggml/src/ggml-metal/ggml-metal-device.h absent)"]
        )
    if not (tree / BACKEND_OPS_SOURCE).is_file():
        raise DryRunUnavailable(
            ["missing file: tests/test-backend-ops.cpp (the dry run drives the tree's own cases)"]
        )
    try:
        extraction = extract(tree)
    except ExtractionFailed as exc:
        raise DryRunUnavailable([f"cannot cut supports_op out of {tree}: {exc.reason}"]) from exc
    try:
        standin = generate(tree, [f.name for f in extraction.props_fields])
    except StandInRefused as exc:
        raise DryRunUnavailable(list(exc.problems)) from exc
    key = program_key(tree, extraction, standin)
    try:
        exe, built = build_once(
            DRYRUN,
            key,
            tree,
            cache_dir,
            generated={**generated_sources(extraction), GENERATED_NAME: standin.source},
            defines={"DRYRUN_METAL_SOURCES": ";".join(str(p) for p in standin.metal_sources)},
            compiler_cache_dir=compiler_cache_dir,
            extra_lock=build_lock,
        )
    except NativeBuildFailed as exc:
        raise DryRunUnavailable([exc.reason], exc.log) from exc
    reads = "--test-file" in (tree / BACKEND_OPS_SOURCE).read_text(encoding="utf-8", errors="replace")
    return DryRunProgram(tree, exe, key, extraction, built, time.monotonic() - start, standin, reads)
