"""Load a GGUF with the tree's own loader: a converted model passes only when llama.cpp accepts it.

The gguf package checks the file's structure against the checkpoint; only the tree's loader
knows which keys, tensor shapes and vocabulary entries an architecture needs. The loader is
the build's graph-op exporter (``test-export-graph-ops -m``: loads the model on the CPU and
reserves its prompt and token graphs, nothing decoded) or, without it, the runner with
``-n 1``. It runs in its own process group under a timeout (toolchain/core/isolate.py); its message
(``error loading model: …``, ``key not found in model: …``) is the verdict's evidence.

When the loader names a key the file lacks, the GGUF's own keys are read: a key the tree's
loader requires and the tree's converter did not write is a disagreement inside the tree
(:func:`missing_key_finding`), which the convert record keeps as evidence.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import tree
from ..core.hashing import sha256_file
from ..core.isolate import run_until_heard
from ..core.tree import EXPORT_ARGS, EXPORTERS, PLAIN_CPU_ENV

# Programs that load a model, newest name first; llama-simple before an interactive llama-cli.
RUNNERS = (tree.RUNNERS[0], tree.SIMPLE_RUNNER, *tree.RUNNERS[1:])
LOAD_TIMEOUT = 120.0

# llama.cpp's loader messages (src/llama.cpp, llama-model-loader.cpp, llama-vocab.cpp, common).
_LOAD_ERROR = re.compile(r"error loading model(?: vocabulary| hyperparameters| architecture)?: (?P<why>.+)$")
_MISSING_KEY = re.compile(r"key not found in model: (?P<key>[\w.\-]+)")


@dataclass(frozen=True)
class Loader:
    tool: Path
    kind: str  # exporter | runner
    key: str  # identity of the tool and the libraries beside it (cache key)


@dataclass(frozen=True)
class LoadResult:
    ok: bool
    tool: str  # program name
    message: str  # the loader's own reason when it refused ("" when ok)
    tail: tuple[str, ...]
    seconds: float
    missing_key: str = ""  # the key the loader named as missing, when it did


def _executable(path: Path) -> bool:
    return path.is_file() and bool(path.stat().st_mode & 0o111)


def find_loader(bin_dirs: list[Path]) -> Loader | None:
    """The first bin dir with a loader; its key hashes the tool and the shared libraries beside it."""
    for bin_dir in bin_dirs:
        for kind, names in (("exporter", EXPORTERS), ("runner", RUNNERS)):
            for name in names:
                tool = bin_dir / name
                if _executable(tool):
                    # how it is run is part of the key: a change of the environment or the
                    # exporter's arguments reloads
                    how = f"{sorted(PLAIN_CPU_ENV.items())}:{list(EXPORT_ARGS)}"
                    h = hashlib.sha256(f"{name}:{sha256_file(tool)}:{how}".encode())
                    libs = {p.resolve() for p in [*bin_dir.glob("lib*.so*"), *bin_dir.glob("lib*.dylib")]}
                    for lib in sorted(x for x in libs if x.is_file()):
                        h.update(f"{lib.name}:{sha256_file(lib)}".encode())
                    return Loader(tool, kind, h.hexdigest()[:16])
    return None


def loader_message(lines: list[str] | tuple[str, ...]) -> str:
    """The loader's reason for refusing a model, from its log lines ("" when none is printed).

    ``error loading model: X``; when X is only the generic "failed to load model from …", the
    first specific error printed before it (e.g. gguf_init_from_reader's) comes first."""
    for i, line in enumerate(lines):
        m = _LOAD_ERROR.search(line)
        if m:
            why = m["why"].strip()
            if "failed to load model from" in why:
                earlier = next((e for x in lines[:i] if (e := _error_text(x))), "")
                if earlier:
                    return f"{earlier}; {why}"
            return why
    for line in lines:
        if "failed to load model" in line or "key not found in model" in line:
            return line.strip()
    return ""


# a log line of llama.cpp at error level: "0.00.003.008 E gguf_init_from_reader: tensor …"
_ERROR_LINE = re.compile(r"^\s*[\d.]*\s*E\s+(?P<text>\w+: .+)$")


def _error_text(line: str) -> str:
    m = _ERROR_LINE.match(line)
    if not m or "failed to read tensor data" in m["text"]:
        return ""
    return m["text"].strip()


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def load_gguf(loader: Loader, gguf: Path, log_path: Path, timeout: float = LOAD_TIMEOUT) -> LoadResult:
    """Run the loader on ``gguf``; ok only on a normal exit (a refusal, crash or hang is not)."""
    # whether the tree accepts the file, not whether this host's CPU extra buffers can run it
    env = {
        **os.environ,
        "GGML_NO_BACKTRACE": "1",
        "LLAMA_LOG_COLORS": "off",
        "NO_COLOR": "1",
        **PLAIN_CPU_ENV,
    }
    with tempfile.TemporaryDirectory(prefix="toolchain-load-") as tmp:
        if loader.kind == "exporter":
            ops = str(Path(tmp) / "ops.txt")
            args = [str(loader.tool), "-m", str(gguf), "-o", ops, *EXPORT_ARGS, "-t", "1"]
        else:
            args = [str(loader.tool), "-m", str(gguf), "-p", "Hello", "-n", "1", "-c", "256", "-t", "1"]
            args += (
                ["--temp", "0", "-no-cnv", "--no-warmup"] if loader.tool.name == "llama-completion" else []
            )
        out, runs = run_until_heard(args, log_path=log_path, timeout=timeout, env=env, cwd=Path(tmp))
    lines = _read(out.log) or list(out.tail)
    if out.kind == "ok":
        return LoadResult(True, loader.tool.name, "", (), out.seconds)
    message = loader_message(lines)
    if not message:
        message = out.describe(timeout) + (
            f": {out.abort_lines[0]}" if out.abort_lines and out.kind != "crash" else ""
        )
        if out.output_bytes == 0 and runs > 1:
            message += f", with no output in {runs} runs"
    elif out.kind in ("crash", "hang"):
        message = f"{message} ({out.describe(timeout)})"
    found = _MISSING_KEY.search(message) or next(
        (m for line in lines if (m := _MISSING_KEY.search(line))), None
    )
    tail = tuple(x for x in lines if x.strip())[-15:]
    return LoadResult(False, loader.tool.name, message, tail, out.seconds, found["key"] if found else "")


def gguf_keys(path: Path) -> dict[str, Any]:
    """The GGUF's metadata keys and their values (arrays summarised), read with the gguf package."""
    import gguf  # lazy: numpy-heavy

    reader = gguf.GGUFReader(str(path))
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name.startswith("tokenizer.ggml."):
            continue
        try:
            value = field.contents()
        except Exception:  # an odd field type: the key is there, its value does not matter here
            value = None
        out[name] = value if not isinstance(value, list) else f"[{len(value)} values]"
    return out


def missing_key_finding(result: LoadResult, gguf: Path) -> dict[str, Any] | None:
    """Evidence that the tree's converter did not write a key the tree's loader requires: the
    loader named the key, and the converted file (written by the tree's own converter) lacks it.
    Returns the evidence (the key, the file's keys of the same architecture and section) or None."""
    if result.ok or not result.missing_key:
        return None
    keys = gguf_keys(gguf)
    if result.missing_key in keys:
        return None  # present: the loader's complaint is about something else
    arch = str(keys.get("general.architecture") or "")
    section = result.missing_key.rsplit(".", 1)[0]
    related = {k: v for k, v in keys.items() if k.startswith(section + ".")} or {
        k: v for k, v in keys.items() if arch and k.startswith(arch + ".")
    }
    return {"missing_key": result.missing_key, "architecture": arch, "gguf_keys": related}
