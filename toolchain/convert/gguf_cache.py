"""Validated GGUFs kept in the toolchain cache (``<cache>/gguf/``): a fresh work dir (a CI job
with its cache restored) converts nothing that was converted before.

An entry is keyed by everything that made the file: for the converter's types the converter's
content (``convert_hf_to_gguf.py`` and ``gguf-py``), the checkpoint (its content hash and
weights' sha256), the converter environment and the type; for a quantized type the f16 source's
sha256, ``llama-quantize``'s and the type. Only files that passed validation (or that only the
tree's loader refused: a verdict worth keeping) are stored. A restored file carries its sha256
and is validated again as a cached file (its check record is reused only while the file and the
loader are unchanged, see ``checked.validated``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..config import Settings
from ..core.hashing import sha256_file
from ..core.jsonio import atomic_write_text

CHECK_SUFFIX = ".check.json"


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no second copy on disk: GGUFs are gigabytes in all), a copy across file
    systems. Safe because a GGUF is never rewritten in place: the stage removes the work dir's file
    before the converter or llama-quantize writes it again (``discard``)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def discard(path: Path) -> None:
    """Remove a work dir GGUF before it is written again, so a hard-linked cache entry keeps its bytes."""
    path.unlink(missing_ok=True)


_CONVERTER_FILES = ("convert_hf_to_gguf.py",)


def converter_digest(tree: Path) -> str:
    """Hash of the tree's converter: ``convert_hf_to_gguf.py`` and every file of ``gguf-py/gguf``."""
    digest = hashlib.sha256()
    files = [tree / name for name in _CONVERTER_FILES]
    package = tree / "gguf-py" / "gguf"
    if package.is_dir():
        files += sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        if path.is_file():
            digest.update(f"{path.relative_to(tree)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def entry_key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _entry(settings: Settings, key: str) -> Path:
    return settings.cache_dir / "gguf" / key


def restore(settings: Settings, key: str, dest: Path) -> bool:
    """Copy the cached GGUF (and its check record) of ``key`` to ``dest``; False when there is none
    or the cached file is not the one stored (a damaged cache entry is dropped)."""
    entry = _entry(settings, key)
    try:
        meta = json.loads((entry / "entry.json").read_text())
    except (OSError, ValueError):
        return False
    cached = entry / "model.gguf"
    if not cached.is_file() or sha256_file(cached) != meta.get("sha256"):
        shutil.rmtree(entry, ignore_errors=True)
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".restoring")
    tmp.unlink(missing_ok=True)
    _link_or_copy(cached, tmp)
    tmp.replace(dest)
    check = entry / "model.gguf.check.json"
    if check.is_file():
        shutil.copyfile(check, dest.with_name(dest.name + CHECK_SUFFIX))
    return True


def store(settings: Settings, key: str, path: Path) -> None:
    """Keep ``path`` (and its check record) as the entry of ``key``, replacing an older one."""
    root = settings.cache_dir / "gguf"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        _link_or_copy(path, staging / "model.gguf")
        check = path.with_name(path.name + CHECK_SUFFIX)
        if check.is_file():
            shutil.copyfile(check, staging / "model.gguf.check.json")
        atomic_write_text(
            staging / "entry.json",
            json.dumps({"sha256": sha256_file(staging / "model.gguf"), "name": path.name}),
        )
        entry = _entry(settings, key)
        shutil.rmtree(entry, ignore_errors=True)
        try:
            staging.rename(entry)
        except OSError:
            pass  # another run stored the same entry meanwhile
    finally:
        shutil.rmtree(staging, ignore_errors=True)
