"""Settings: ``[tool.llama-toolchain]`` in pyproject.toml, environment, then command line.

Where files live:
- work dir (per project, default ``.toolchain/``): ``src/`` checkout, ``build/<profile>-<hash>/``,
  ``models/``, ``reports/``.
- cache (shared, survives deleting the work dir): ``$TOOLCHAIN_CACHE`` or
  ``~/.cache/llama-toolchain``: git mirrors, sdists, compiler cache.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_REMOTE = "https://github.com/ggml-org/llama.cpp"
DEFAULT_INDEX_URL = "https://pypi.org/simple"


@dataclass(frozen=True)
class Settings:
    project_root: Path
    work_dir: Path
    cache_dir: Path
    lock_path: Path
    profile: str = "auto"
    remote: str = DEFAULT_REMOTE
    index_url: str = DEFAULT_INDEX_URL
    # Seconds a network operation (fetch, download) may stall before it is abandoned.
    network_timeout: float = 600.0
    # An older tree for `oracle validate` to tell a stale docs/ops/Metal.csv from a wrong oracle:
    # a llama-cpp-python requirement (an sdist) or a ref of the tree's repository ("" = none).
    oracle_older: str = ""

    @property
    def src_dir(self) -> Path:
        return self.work_dir / "src"

    @property
    def build_root(self) -> Path:
        return self.work_dir / "build"

    @property
    def reports_dir(self) -> Path:
        return self.work_dir / "reports"

    @property
    def mirrors_dir(self) -> Path:
        return self.cache_dir / "mirrors"

    @property
    def sdists_dir(self) -> Path:
        return self.cache_dir / "sdists"

    @property
    def compiler_cache_dir(self) -> Path:
        return self.cache_dir / "ccache"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


# pyproject key -> Settings field
_KEYS = {
    "remote": "remote",
    "profile": "profile",
    "work-dir": "work_dir",
    "cache-dir": "cache_dir",
    "lock": "lock_path",
    "index-url": "index_url",
    "network-timeout": "network_timeout",
    "oracle-older": "oracle_older",
}


def default_cache_dir() -> Path:
    env = os.environ.get("TOOLCHAIN_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "llama-toolchain").resolve()


def read_pyproject_table(project_root: Path) -> dict[str, Any]:
    path = project_root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the syntax error it names") from exc
    table = data.get("tool", {}).get("llama-toolchain", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.llama-toolchain] in {path} must be a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [tool.llama-toolchain] of {path}: {', '.join(unknown)}",
            f"known keys: {', '.join(_KEYS)}",
        )
    return table


def load_settings(project_root: Path | None = None) -> Settings:
    root = (project_root or Path.cwd()).resolve()
    table = read_pyproject_table(root)
    values: dict[str, Any] = {
        "project_root": root,
        "work_dir": root / ".toolchain",
        "cache_dir": default_cache_dir(),
        "lock_path": root / "llama.lock",
    }
    types = {f.name: f.type for f in fields(Settings)}
    for key, name in _KEYS.items():
        if key not in table:
            continue
        raw = table[key]
        if name in ("work_dir", "cache_dir", "lock_path"):
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"[tool.llama-toolchain] {key} must be a non-empty path string")
            p = Path(raw).expanduser()
            values[name] = (p if p.is_absolute() else root / p).resolve()
        elif name == "network_timeout":
            if not isinstance(raw, int | float) or raw <= 0:
                raise ConfigError(f"[tool.llama-toolchain] {key} must be a positive number of seconds")
            values[name] = float(raw)
        else:
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"[tool.llama-toolchain] {key} must be a non-empty string ({types[name]})")
            values[name] = raw
    if os.environ.get("TOOLCHAIN_CACHE"):
        values["cache_dir"] = default_cache_dir()
    return Settings(**values)
