"""Build the dry run for a tree: its Metal C++ files, ggml, test-backend-ops, the oracle's cut
supports_op and our stand-in, as one program (``native/``, CMake + Ninja like the oracle probe).

Refused before anything is compiled when the tree's Objective-C interface does not match the
stand-in (``interface.mismatches``) or supports_op cannot be cut (the oracle's rules). Built once
per content — our native sources, the cut, the props struct, the tree's ggml, Metal backend and
test-backend-ops — into ``<cache>/dryrun/dryrun-<key>/``; a compile failure is remembered there.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

from ..locking import exclusive
from ..native_build import cmake_build
from ..oracle.extract import Extraction, ExtractionFailed, extract
from ..oracle.probe import Probe, _hash_files, _write_if_changed, props_setter
from ..tree import BACKEND_OPS_SOURCE, METAL_DIR
from .interface import CXX_FILES, mismatches

NATIVE = Path(__file__).parent / "native"
PROGRAM = "toolchain-metal-dryrun"


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
    digest = hashlib.sha256(b"dryrun\0" + extraction.digest.encode())
    digest.update(repr(extraction.props_fields).encode())
    _hash_files(digest, NATIVE.iterdir(), NATIVE)
    ggml = tree / "ggml"
    _hash_files(digest, [*ggml.glob("*.txt"), *ggml.glob("include/*"), *ggml.glob("src/*.*")], tree)
    _hash_files(digest, [p for p in (tree / METAL_DIR).glob("*") if p.is_file()], tree)
    _hash_files(digest, [tree / BACKEND_OPS_SOURCE], tree)
    return digest.hexdigest()[:16]


def ensure_program(
    tree: Path,
    cache_dir: Path,
    *,
    compiler_cache_dir: Path | None = None,
    build_lock: Path | None = None,
) -> DryRunProgram:
    """The dry-run program for ``tree``, built now if no build of the same content is cached.

    The compile holds the cache's native-build lock (``toolchain.native_build``); ``build_lock``:
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
    root = cache_dir / "dryrun" / f"dryrun-{key}"
    exe = root / "build" / PROGRAM
    with exclusive(root.parent / f".dryrun-{key}.lock", wait=3600, what=f"the dry-run build {root}"):
        if exe.is_file() and (root / "ok").is_file():
            return DryRunProgram(tree, exe, key, extraction, False, time.monotonic() - start)
        failed = root / "failed"
        if failed.is_file():
            raise DryRunUnavailable([failed.read_text(encoding="utf-8")], root / "dryrun-build.log")
        generated = root / "generated"
        generated.mkdir(parents=True, exist_ok=True)
        _write_if_changed(generated / "toolchain_oracle_cut.c", extraction.source("c"))
        _write_if_changed(generated / "toolchain_oracle_props.c", props_setter(extraction.props_fields))
        sources = ";".join(str(p) for p in CXX_FILES)
        defines = {
            "LLAMA_TREE": str(tree),
            "DRYRUN_GENERATED": str(generated),
            "DRYRUN_METAL_SOURCES": sources,
        }
        log = root / "dryrun-build.log"
        problem = cmake_build(
            NATIVE,
            root,
            PROGRAM,
            defines,
            cache_dir,
            compiler_cache_dir,
            name="the dry run",
            log=log,
            extra_lock=build_lock,
        )
        if problem:
            _fail(root, problem, log)
        (root / "ok").write_text(key, encoding="utf-8")
    return DryRunProgram(tree, exe, key, extraction, True, time.monotonic() - start)


def _fail(root: Path, reason: str, log: Path) -> None:
    (root / "failed").write_text(f"{reason} (log: {log})", encoding="utf-8")
    raise DryRunUnavailable([f"{reason} (log: {log})"], log)
