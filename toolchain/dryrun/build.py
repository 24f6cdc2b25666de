"""Build the dry run for a tree: its Metal C++ files, ggml, test-backend-ops, the oracle's cut
supports_op and our stand-in, as one program (``native/``, CMake + Ninja like the oracle probe).

Refused before anything is compiled when the tree's Objective-C interface does not match the
stand-in (``interface.mismatches``) or supports_op cannot be cut (the oracle's rules). Built once
per content — our native sources, the cut, the props struct, the tree's ggml, Metal backend and
test-backend-ops — into ``<cache>/dryrun/dryrun-<key>/`` (``toolchain.builder.native``, as the probe);
a compile failure is remembered there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..builder.native import DRYRUN, NativeBuildFailed, build_once, content_key
from ..core.tree import BACKEND_OPS_SOURCE, METAL_DIR
from ..oracle.extract import Extraction, ExtractionFailed, extract
from ..oracle.probe import Probe, cut_seed, generated_sources
from .interface import CXX_FILES, mismatches


class DryRunUnavailable(Exception):
    """The dry run cannot be made for this tree; ``problems`` names each reason."""

    def __init__(self, problems: Sequence[str], log: Path | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)
        self.log = log


# The same record as the oracle's probe: a native program built for a tree (its executable, content
# key, the supports_op cut it holds, whether it was built now).
DryRunProgram = Probe


def program_key(tree: Path, extraction: Extraction) -> str:
    metal = [p for p in (tree / METAL_DIR).glob("*") if p.is_file()]
    return content_key(DRYRUN, b"dryrun\0" + cut_seed(extraction), tree, [*metal, tree / BACKEND_OPS_SOURCE])


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
    problems = mismatches(tree)
    if not (tree / BACKEND_OPS_SOURCE).is_file():
        problems.append("missing file: tests/test-backend-ops.cpp (the dry run drives the tree's own cases)")
    if problems:
        raise DryRunUnavailable(problems)
    try:
        extraction = extract(tree)
    except ExtractionFailed as exc:
        raise DryRunUnavailable([f"cannot cut supports_op out of {tree}: {exc.reason}"]) from exc
    key = program_key(tree, extraction)
    try:
        exe, built = build_once(
            DRYRUN,
            key,
            tree,
            cache_dir,
            generated=generated_sources(extraction),
            defines={"DRYRUN_METAL_SOURCES": ";".join(str(p) for p in CXX_FILES)},
            compiler_cache_dir=compiler_cache_dir,
            extra_lock=build_lock,
        )
    except NativeBuildFailed as exc:
        raise DryRunUnavailable([exc.reason], exc.log) from exc
    return DryRunProgram(tree, exe, key, extraction, built, time.monotonic() - start)
