"""Content digests of what a kept result was made from: the toolchain's own files, a tree's
sources, a build's programs. A result kept under such a key is reused only while each is unchanged
(the off-device columns' cells, the oracle's validation)."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from .hashing import sha256_file
from .tree import BACKEND_OPS_SOURCE

_TOOLCHAIN = Path(__file__).parents[1]  # the toolchain package
_SEEN: dict[tuple[tuple[object, ...], ...], str] = {}
_SEEN_GUARD = threading.Lock()


def ggml_environment() -> dict[str, str]:
    """The ``GGML_*``/``LLAMA_*`` variables of this process, sorted: they change what the tree's
    programs do, so every kept result is keyed by them."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(("GGML_", "LLAMA_"))}


def stat_key(paths: Iterable[Path]) -> tuple[tuple[object, ...], ...]:
    """Each path's identity and stat (inode, size, modification and change times; None when it is
    missing): a result computed from these files is reused in this process while this is equal."""
    out: list[tuple[object, ...]] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), None))
            continue
        out.append((str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def file_sha256(path: Path) -> str:
    """``sha256_file(path)``, computed once per process while the file's identity and stat (inode,
    size, modification and change times) are the same: the matrix keys each model's cells and
    off-device columns by the model's content, ~1 GB of GGUFs read once instead of once per use."""
    seen = stat_key([path])
    with _SEEN_GUARD:
        known = _SEEN.get(seen)
    if known is None:
        known = sha256_file(path)
        with _SEEN_GUARD:
            _SEEN[seen] = known
    return known


def files_digest(files: Iterable[Path], root: Path) -> str:
    """Each regular file of ``files`` (outside ``__pycache__``) by path under ``root`` and content."""
    digest = hashlib.sha256()
    for path in sorted(files):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()[:16]


@functools.cache
def toolchain_digest() -> str:
    """Every file of the toolchain package: its Python code and its native programs' sources."""
    return files_digest(_TOOLCHAIN.rglob("*"), _TOOLCHAIN)


def tree_digest(tree: Path, *more: Path) -> str:
    """A tree's ``ggml/`` (its sources, supports_op, the Metal kernels and device code), its
    test-backend-ops and the folders or files ``more`` (relative to the tree), by content (~1000
    files, 0.2 s: computed per use, never kept, so an edited tree is seen)."""
    tree = tree.resolve()
    files: list[Path] = [*(tree / "ggml").rglob("*"), tree / BACKEND_OPS_SOURCE]
    for extra in more:
        path = tree / extra
        files.extend(path.rglob("*") if path.is_dir() else [path])
    return files_digest(files, tree)


def program_digest(program: Path) -> str:
    """A built program with the shared libraries beside it (``lib*.so*``, ``lib*.dylib``)."""
    folder = program.parent
    return files_digest([program, *folder.glob("lib*.so*"), *folder.glob("lib*.dylib")], folder)
