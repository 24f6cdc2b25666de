"""Locks and keys of the on-disk work shared by cells (threads of one process and pytest-xdist
workers alike), and the cache of finished cells (reused while their inputs are unchanged)."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...core.digests import file_sha256, ggml_environment
from ...core.jsonio import atomic_write_text, to_jsonable
from ..records import ModelInput
from .tools import Toolset

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """A lock held across threads (threading.Lock) and processes (flock) on ``path``."""
    with _THREAD_LOCKS_GUARD:
        tlock = _THREAD_LOCKS.setdefault(str(path), threading.Lock())
    with tlock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def file_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# --- whole cells: reused while every input is unchanged ------------------------------------------
_PACKAGE = Path(__file__).parents[2]  # toolchain/
_HARNESS_SOURCES = (_PACKAGE / "coverage", _PACKAGE / "convert" / "load.py", _PACKAGE / "core" / "isolate.py")
_NOT_REUSED = ("hang",)  # a hang depends on the machine's load as much as on the inputs


@functools.cache
def harness_digest() -> str:
    """The harness's version: the content of the code that runs and judges a cell."""
    digest = hashlib.sha256()
    for source in _HARNESS_SOURCES:
        for path in sorted(source.rglob("*.py")) if source.is_dir() else [source]:
            digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def tools_digest(tools: Toolset) -> str:
    """The build's identity as the cells see it: every tool's content and the libraries beside it."""
    digest = hashlib.sha256()
    programs = [
        tools.backend_ops,
        tools.exporter,
        tools.archs,
        tools.runner,
        tools.logits,
        tools.eval_callback,
    ]
    libs = [*tools.bin_dir.glob("lib*.so*"), *tools.bin_dir.glob("lib*.dylib")]
    for path in sorted({p.resolve() for p in [*programs, *libs] if p is not None and p.is_file()}):
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    digest.update(json.dumps(to_jsonable(tools), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


class CellCache:
    """Finished cells kept as JSON under ``root``, keyed by their inputs: the harness's version, the
    tools' content, the model file's content, the cell's identity (architecture, type, variant,
    backend), the run's options, the device summary and the GGML_/LLAMA_ environment."""

    def __init__(self, root: Path, tools: Toolset, options: object, devices: Mapping[str, object]) -> None:
        self.root = root
        env = ggml_environment()
        self._common = json.dumps(
            [harness_digest(), tools_digest(tools), to_jsonable(options), env], sort_keys=True, default=str
        )
        self._devices = devices
        self._models: dict[Path, str] = {}
        self._guard = threading.Lock()

    def _model_digest(self, path: Path) -> str:
        with self._guard:
            if path not in self._models:
                self._models[path] = file_sha256(path) if path.is_file() else "missing"
            return self._models[path]

    def key(self, model: ModelInput, backend: str) -> str:
        ident = [model.architecture, model.weight_type, model.variant, model.label, backend]
        device = to_jsonable(self._devices.get(backend))
        text = json.dumps([self._common, ident, self._model_digest(model.path), device], default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def store(self, key: str, status: str, data: dict[str, Any]) -> None:
        if status in _NOT_REUSED:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / f"{key}.json", json.dumps(data))
