"""Settings: ``[tool.llama-toolchain]`` in pyproject.toml, environment, then command line.

Where files live:
- work dir (per project, default ``.toolchain/``): ``src/`` checkout, ``build/<profile>-<hash>/``,
  ``models/``, ``reports/``.
- cache (shared, survives deleting the work dir): ``$TOOLCHAIN_CACHE`` or
  ``~/.cache/llama-toolchain``: git mirrors, sdists, compiler cache.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_REMOTE = "https://github.com/ggml-org/llama.cpp"
DEFAULT_INDEX_URL = "https://pypi.org/simple"


class _Under:
    """A folder of the settings' work dir or cache, read as an attribute (not a field)."""

    def __init__(self, base: str, name: str) -> None:
        self.base, self.name = base, name

    def __get__(self, settings: object, owner: type | None = None) -> Path:
        return Path(getattr(settings, self.base)) / self.name


# The older tree `oracle validate` checks a stale docs/ops/Metal.csv against (a tree whose
# supports_op predates the table's capture): the 0.3.20 sdist, which explains the default pin's stale
# rows (README, "oracle validate"). "none" turns the check off.
DEFAULT_ORACLE_OLDER = "llama-cpp-python==0.3.20"
NO_ORACLE_OLDER = "none"


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
    # a llama-cpp-python requirement (an sdist) or a ref of the tree's repository ("none": none).
    oracle_older: str = DEFAULT_ORACLE_OLDER

    # where things live: (the folder it is in, its name there)
    src_dir = _Under("work_dir", "src")
    build_root = _Under("work_dir", "build")
    reports_dir = _Under("work_dir", "reports")
    mirrors_dir = _Under("cache_dir", "mirrors")
    sdists_dir = _Under("cache_dir", "sdists")
    compiler_cache_dir = _Under("cache_dir", "ccache")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


# pyproject key -> Settings field
_DEFAULTS = {
    "remote": DEFAULT_REMOTE,
    "profile": "auto",
    "work-dir": ".toolchain",
    "cache-dir": "~/.cache/llama-toolchain",
    "lock": "llama.lock",
    "index-url": DEFAULT_INDEX_URL,
    "network-timeout": 600,
    "oracle-older": DEFAULT_ORACLE_OLDER,
}
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
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", "check its permissions") from exc
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(
            f"[tool] in {path} must be a table, found {_type_name(tool)}",
            "make it a table: a line `[tool.llama-toolchain]` followed by its keys",
        )
    table = tool.get("llama-toolchain", {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"[tool.llama-toolchain] in {path} must be a table, found {_type_name(table)}",
            "write it as a table: a line `[tool.llama-toolchain]` followed by its keys",
        )
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [tool.llama-toolchain] of {path}: {', '.join(unknown)}",
            f"known keys: {', '.join(_KEYS)}",
        )
    return table


# The longest network-timeout accepted: a day (longer ones overflow the timers they drive).
MAX_NETWORK_TIMEOUT = 86400.0


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}
    return names.get(type(value), f"a {type(value).__name__}")


def resolve_path(raw: Path, root: Path, field: str, hint: str) -> Path:
    """``raw`` (relative to ``root``) as an absolute path; a path the OS cannot take is a ConfigError."""
    try:
        p = raw.expanduser()
        return (p if p.is_absolute() else root / p).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{field} {str(raw)!r} is not a usable path: {exc}", hint) from exc


def check_dir_path(path: Path, field: str, hint: str) -> None:
    """A directory the toolchain creates or uses: it must not be a file, nor lie under one."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "is" if p == path else f"lies under {p}, which is"
                raise ConfigError(f"{field} {path} {where} a file, not a directory", hint)
            return


def check_file_path(path: Path, field: str, hint: str) -> None:
    """A file the toolchain reads or writes: it must not be a directory, nor lie under a file."""
    if path.is_dir():
        raise ConfigError(f"{field} {path} is a directory, not a file", hint)
    check_dir_path(path.parent, f"the directory of {field}", hint)


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
        field = f"[tool.llama-toolchain] {key}"
        if name in ("work_dir", "cache_dir", "lock_path"):
            if not isinstance(raw, str) or not raw:
                raise ConfigError(
                    f"{field} must be a non-empty path string, found {_type_name(raw)}: {raw!r}",
                    f"e.g. {key} = {_DEFAULTS[key]!r}",
                )
            values[name] = resolve_path(Path(raw), root, field, f"e.g. {key} = {_DEFAULTS[key]!r}")
        elif name == "network_timeout":
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ConfigError(
                    f"{field} must be a number of seconds, found {_type_name(raw)}: {raw!r}",
                    "e.g. network-timeout = 600",
                )
            if not math.isfinite(raw) or not 0 < raw <= MAX_NETWORK_TIMEOUT:
                raise ConfigError(
                    f"{field} must be a finite number of seconds above 0 and at most "
                    f"{MAX_NETWORK_TIMEOUT:g}, found {raw!r}",
                    "e.g. network-timeout = 600 (the default)",
                )
            values[name] = float(raw)
        else:
            if not isinstance(raw, str) or not raw:
                raise ConfigError(
                    f"{field} must be a non-empty string ({types[name]}), found {_type_name(raw)}: {raw!r}",
                    f"e.g. {key} = {_DEFAULTS[key]!r}",
                )
            values[name] = raw
    if os.environ.get("TOOLCHAIN_CACHE"):
        values["cache_dir"] = default_cache_dir()
    settings = Settings(**values)
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """The work dir and cache must be (or become) directories, the lock a file: said before any
    stage trips over it with an OSError."""
    check_dir_path(
        settings.work_dir,
        "work dir ([tool.llama-toolchain] work-dir / --work-dir)",
        "point work-dir (or --work-dir) at a directory, or move that file away",
    )
    check_dir_path(
        settings.cache_dir,
        "cache dir ([tool.llama-toolchain] cache-dir / $TOOLCHAIN_CACHE)",
        "point cache-dir (or $TOOLCHAIN_CACHE) at a directory, or move that file away",
    )
    check_file_path(
        settings.lock_path,
        "lock file ([tool.llama-toolchain] lock)",
        "set [tool.llama-toolchain] lock to a file path such as llama.lock",
    )
