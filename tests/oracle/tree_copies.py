"""Copies of a real tree's Metal sources with one thing changed (the fixture trees are read-only)."""

from __future__ import annotations

import shutil
from pathlib import Path

from toolchain.oracle.extract import METAL_DIR


def metal_copy(tree: Path, dest: Path) -> Path:
    """A tree holding only ``ggml/src/ggml-metal`` of ``tree`` (without its kernels): enough for
    everything read from the Metal sources' text."""
    shutil.copytree(tree / METAL_DIR, dest / METAL_DIR, ignore=shutil.ignore_patterns("kernels"))
    return dest


def patch_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}: the fixture tree changed"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
