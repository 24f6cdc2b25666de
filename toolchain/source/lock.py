"""``llama.lock``: the exact llama.cpp source a project builds.

Example (the default shipped in this repository)::

    schema_version = 1

    [source]
    kind = "pypi-sdist"
    location = "llama-cpp-python==0.3.36"
    ref = "0.3.36"
    commit = "<full id of the imported tree in the mirror>"
    resolved_at = "2026-11-26T23:30:00Z"

    [source.sdist]
    filename = "llama_cpp_python-0.3.36.tar.gz"
    sha256 = "…"
    url = "https://files.pythonhosted.org/…"
    upstream_commit = "0c1e57098"

A ``git`` lock has ``location`` = the URL and ``ref`` = what was asked for (HEAD, a tag, …); the
commit is always the full id. Hand edits are checked: a malformed file or an invalid id is a
``ConfigError`` that names the field.
"""

from __future__ import annotations

import errno
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from ..core.jsonio import atomic_write_text
from ..errors import ConfigError, ToolchainError
from .spec import SourceSpec, is_full_commit_id

LOCK_SCHEMA_VERSION = 1
# A lock is a few hundred bytes; anything far larger is not one (and is not read into memory).
MAX_LOCK_BYTES = 1 << 20
# `update` alone re-reads the lock it would replace: what works is pinning a source anew.
REWRITE_HINT = (
    "delete it and pin the source again: `llama-toolchain update --git URL --ref REF` "
    "or `llama-toolchain update --pypi llama-cpp-python==X.Y.Z`"
)


@dataclass(frozen=True)
class SdistInfo:
    filename: str
    sha256: str
    url: str
    version: str
    upstream_commit: str = ""  # llama.cpp commit named in the sdist's CHANGELOG, when there is one


@dataclass(frozen=True)
class ResolvedSource:
    """A spec resolved to one commit: the content of the lock, and the source stage's record."""

    kind: str
    location: str
    ref: str
    commit: str
    resolved_at: str
    sdist: SdistInfo | None = None

    @property
    def spec(self) -> SourceSpec:
        return SourceSpec(kind=self.kind, location=self.location, ref=self.ref)  # type: ignore[arg-type]

    @property
    def short(self) -> str:
        return self.commit[:12]


def write_lock(path: Path, source: ResolvedSource) -> None:
    table: dict[str, Any] = {
        "kind": source.kind,
        "location": source.location,
        "ref": source.ref,
        "commit": source.commit,
        "resolved_at": source.resolved_at,
    }
    if source.sdist is not None:
        table["sdist"] = {
            "filename": source.sdist.filename,
            "sha256": source.sdist.sha256,
            "url": source.sdist.url,
            "version": source.sdist.version,
            "upstream_commit": source.sdist.upstream_commit,
        }
    header = (
        "# llama.lock: the llama.cpp source this project builds.\n"
        "# Written by `llama-toolchain update`; commit is always a full id.\n"
    )
    body = tomli_w.dumps({"schema_version": LOCK_SCHEMA_VERSION, "source": table})
    try:
        atomic_write_text(path, header + body)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise ConfigError(
            f"cannot write the lock file {path}: {exc.strerror or exc}",
            "make its directory writable, or set [tool.llama-toolchain] lock to a writable path",
        ) from exc


def read_lock(path: Path) -> ResolvedSource:
    if path.is_dir():
        raise ConfigError(
            f"the lock file {path} is a directory",
            "set [tool.llama-toolchain] lock to a file path such as llama.lock",
        )
    if not path.is_file():
        raise ConfigError(
            f"no lock file at {path}",
            "create one with `llama-toolchain update` (e.g. `--pypi llama-cpp-python==0.3.36`)",
        )
    try:
        size = path.stat().st_size
        if size > MAX_LOCK_BYTES:
            raise ConfigError(
                f"{path} is {size} bytes: not a lock file (one is under 1 KiB; at most {MAX_LOCK_BYTES} accepted)",
                REWRITE_HINT,
            )
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", REWRITE_HINT) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the lock file {path}: {exc.strerror or exc}", REWRITE_HINT) from exc

    def fail(what: str) -> ConfigError:
        return ConfigError(f"{path}: {what}", "fix that field by hand; or " + REWRITE_HINT)

    version = data.get("schema_version")
    if type(version) is not int or version != LOCK_SCHEMA_VERSION:
        raise fail(f"schema_version must be {LOCK_SCHEMA_VERSION}, found {data.get('schema_version')!r}")
    src = data.get("source")
    if not isinstance(src, dict):
        raise fail("missing [source] table")
    fields: dict[str, str] = {}
    for key in ("kind", "location", "ref", "commit", "resolved_at"):
        value = src.get(key)
        if not isinstance(value, str) or not value:
            raise fail(f"[source] {key} must be a non-empty string")
        fields[key] = value
    if fields["kind"] not in ("git", "pypi-sdist"):
        raise fail(f"[source] kind must be 'git' or 'pypi-sdist', found {fields['kind']!r}")
    commit = fields["commit"].lower()
    if not is_full_commit_id(commit):
        raise fail(f"[source] commit {fields['commit']!r} is not a full commit id (40 hex digits)")
    sdist = None
    if fields["kind"] == "pypi-sdist":
        raw = src.get("sdist")
        if not isinstance(raw, dict):
            raise fail("a pypi-sdist lock needs a [source.sdist] table")
        try:
            sdist = SdistInfo(
                filename=_str(raw, "filename"),
                sha256=_str(raw, "sha256"),
                url=_str(raw, "url"),
                version=_str(raw, "version"),
                upstream_commit=raw.get("upstream_commit", ""),
            )
        except KeyError as exc:
            raise fail(f"[source.sdist] {exc.args[0]} must be a non-empty string") from None
        if not isinstance(sdist.upstream_commit, str):
            raise fail("[source.sdist] upstream_commit must be a string")
        if len(sdist.sha256) != 64 or not all(c in "0123456789abcdef" for c in sdist.sha256):
            raise fail(f"[source.sdist] sha256 {sdist.sha256!r} is not a sha256 hex digest")
    try:
        SourceSpec(kind=fields["kind"], location=fields["location"], ref=fields["ref"])  # type: ignore[arg-type]
    except ToolchainError as exc:
        raise fail(f"[source] {exc.message}") from exc
    return ResolvedSource(
        kind=fields["kind"],
        location=fields["location"],
        ref=fields["ref"],
        commit=commit,
        resolved_at=fields["resolved_at"],
        sdist=sdist,
    )


def _str(table: dict[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise KeyError(key)
    return value
