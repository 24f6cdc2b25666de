"""The converter's isolated environment: a venv per tree, built from the tree's own requirements.

``<cache>/converter-envs/<key>/`` where ``key`` hashes the tree's requirement files, this
module's resolution policy and the interpreter. Built once (``pip --no-compile``: ~15 s from a
warm pip cache, torch dominates), then reused. ``env.json`` inside records what was asked, what was changed and why, and what
``pip freeze`` says was installed.

Deliberate changes to the tree's pins (each is recorded):
- ``torch``: on Linux pinned to ``TORCH_LINUX`` (a CPU wheel pip finds locally; the tree's pin
  would come from download.pytorch.org, which is not reachable and multi-GB); kept on macOS.
- ``--extra-index-url`` lines are dropped: only the configured index is used (hermetic CI).
- ``sentencepiece`` is narrowed to ``<0.2.3``: 0.2.3's generated protobuf code needs protobuf
  >= 5, while the tree pins ``protobuf<5``; the tree's protobuf pin is kept.
- ``gguf``: not installed from the index; the converter puts the tree's own ``gguf-py`` first on
  ``sys.path`` itself, and gguf-py's dependencies are installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..core.jsonio import atomic_write_text, to_jsonable
from ..core.locking import exclusive
from ..core.proc import capture, stream
from ..errors import ConvertError
from ..log import LOG

POLICY_VERSION = 1
TORCH_LINUX = os.environ.get("TOOLCHAIN_CONVERT_TORCH", "2.13.0")
REQUIREMENTS = "requirements/requirements-convert_hf_to_gguf.txt"
GGUF_PY_DEPS = ("tqdm>=4.27", "pyyaml>=5.1", "requests>=2.25")
INSTALL_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Requirement:
    line: str  # as installed
    original: str  # as the tree wrote it ("" when added by us)
    why: str = ""  # set when it differs from the tree


@dataclass(frozen=True)
class ConverterEnv:
    """The converter's venv for one tree (what ``env.json`` inside it records)."""

    tree: Path
    venv: Path  # <cache>/converter-envs/<key>
    key: str  # hash of the tree's requirement files, this module's policy and the interpreter
    requirements: tuple[Requirement, ...]  # what was asked of pip, each change from the tree explained
    installed: dict[str, str]  # pip freeze: distribution -> version
    python_version: str
    reused: bool = False  # True: built by an earlier run

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _read_requirements(path: Path, tree: Path, seen: set[Path]) -> list[str]:
    path = path.resolve()
    if not path.is_relative_to(tree.resolve()) or path in seen:
        return []
    seen.add(path)
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            lines += _read_requirements(path.parent / line[3:].strip(), tree, seen)
        else:
            lines.append(line)
    return lines


def _name(line: str) -> str:
    return re.split(r"[<>=~!;\[ ]", line, maxsplit=1)[0].strip().lower().replace("_", "-")


def resolve_requirements(tree: Path, system: str | None = None) -> tuple[Requirement, ...]:
    path = tree / REQUIREMENTS
    if not path.is_file():
        raise ConvertError(f"{path} is missing: this tree has no convert_hf_to_gguf requirements")
    system = system or platform.system()
    out: list[Requirement] = []
    for line in _read_requirements(path, tree, set()):
        name = _name(line)
        if line.startswith("--extra-index-url") or line.startswith("--index-url"):
            out.append(Requirement("", line, "dropped: only the configured package index is used (hermetic)"))
        elif line.startswith("-"):
            out.append(Requirement("", line, "dropped: pip option from the tree's file"))
        elif name == "torch" and system == "Linux":
            out.append(
                Requirement(
                    f"torch=={TORCH_LINUX}",
                    line,
                    f"Linux: torch pinned to {TORCH_LINUX} (CPU wheel found locally by pip; the tree's pin is a multi-GB download from an unreachable index)",
                )
            )
        elif name == "sentencepiece":
            out.append(
                Requirement(
                    f"{line},<0.2.3" if "<" in line else f"{line}<0.2.3",
                    line,
                    "sentencepiece 0.2.3 needs protobuf>=5 but the tree pins protobuf<5: kept the protobuf pin, narrowed sentencepiece",
                )
            )
        elif name == "gguf":
            out.append(
                Requirement(
                    "",
                    line,
                    "the tree's own gguf-py is used (the converter puts it first on sys.path); its dependencies are installed instead",
                )
            )
        else:
            out.append(Requirement(line, line))
    out += [Requirement(dep, "", "gguf-py's dependency") for dep in GGUF_PY_DEPS]
    return tuple(out)


def env_key(tree: Path, requirements: tuple[Requirement, ...]) -> str:
    digest = hashlib.sha256()
    digest.update(
        f"policy={POLICY_VERSION};python={sys.version_info[:2]};{platform.system()};{platform.machine()}".encode()
    )
    for req in requirements:
        digest.update(f"{req.line}|{req.original}\n".encode())
    gguf_py = tree / "gguf-py" / "pyproject.toml"
    if gguf_py.is_file():
        digest.update(gguf_py.read_bytes())
    return digest.hexdigest()[:16]


def _freeze(python: Path, log: Path) -> dict[str, str]:
    done = capture([str(python), "-m", "pip", "freeze", "--all"], timeout=120)
    installed: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if "==" in line:
            name, _, version = line.partition("==")
            installed[name.strip().lower()] = version.strip()
    return installed


def ensure_env(tree: Path, settings: Settings) -> ConverterEnv:
    """The venv for ``tree``, built if missing; a half-built one is never used."""
    requirements = resolve_requirements(tree)
    key = env_key(tree, requirements)
    root = settings.cache_dir / "converter-envs"
    venv = root / key
    record = venv / "env.json"
    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root / f".{key}.lock", wait=INSTALL_TIMEOUT, what=f"converter environment {key}"):
        if record.is_file():
            data = json.loads(record.read_text())
            return ConverterEnv(
                tree, venv, key, requirements, dict(data["installed"]), data["python_version"], reused=True
            )
        partial = root / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log = root / f"{key}.log"
        log.unlink(missing_ok=True)
        LOG.info(f"building the converter environment {key} for {tree} (pip; torch dominates)")
        done = stream([sys.executable, "-m", "venv", str(partial)], log_path=log, timeout=300)
        if done.returncode != 0:
            raise ConvertError(f"could not create a venv: {' '.join(done.tail[-3:])}", f"see {log}")
        lines = [r.line for r in requirements if r.line]
        done = stream(
            [
                str(partial / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                # no byte-compiling of every installed file (torch has thousands): 32 s -> 14 s;
                # Python compiles what the converter imports on first use, as fast, and keeps it
                "--no-compile",
                *lines,
            ],
            log_path=log,
            timeout=INSTALL_TIMEOUT,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )
        if done.returncode != 0 or done.timed_out:
            errors = [line for line in done.tail if "ERROR" in line or "error" in line][-5:] or list(
                done.tail[-5:]
            )
            raise ConvertError(
                "pip could not install the converter's requirements:\n  " + "\n  ".join(errors),
                f"full log: {log}",
            )
        installed = _freeze(partial / "bin" / "python", log)
        python_version = ".".join(map(str, sys.version_info[:3]))
        partial.rename(venv)

        atomic_write_text(
            record,
            json.dumps(
                {
                    "key": key,
                    "tree": str(tree),
                    "python_version": python_version,
                    "requirements": to_jsonable(requirements),
                    "installed": installed,
                },
                indent=2,
            )
            + "\n",
        )
        LOG.ok(
            f"converter environment {key}: torch {installed.get('torch', '?')}, transformers {installed.get('transformers', '?')}"
        )
        return ConverterEnv(tree, venv, key, requirements, installed, python_version, reused=False)
