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

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import ConfigError, ToolchainError
from ..records import atomic_write_text
from .spec import SourceSpec, is_full_commit_id

LOCK_SCHEMA_VERSION = 1


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
    atomic_write_text(path, header + body)


def read_lock(path: Path) -> ResolvedSource:
    if not path.is_file():
        raise ConfigError(
            f"no lock file at {path}",
            "create one with `llama-toolchain update` (e.g. `--pypi llama-cpp-python==0.3.36`)",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}", "fix it, or rewrite it with `llama-toolchain update`"
        ) from exc

    def fail(what: str) -> ConfigError:
        return ConfigError(
            f"{path}: {what}", "fix the field by hand or rewrite the lock with `llama-toolchain update`"
        )

    if data.get("schema_version") != LOCK_SCHEMA_VERSION:
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
                upstream_commit=str(raw.get("upstream_commit", "")),
            )
        except KeyError as exc:
            raise fail(f"[source.sdist] {exc.args[0]} must be a non-empty string") from None
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
