"""Which toolchain a build is made with, and what changed since the last build.

The identity (each compiler's resolved path and first ``--version`` line, and on macOS the SDK
and Xcode versions: ``profiles.TOOLCHAIN_PROBES``) is part of the build dir's key, so a compiler,
SDK or Xcode update configures a fresh build dir instead of linking objects of the old toolchain.
A fact that cannot be read is recorded as ``unknown (…)``, never left out: an unreadable
compiler version must not make two toolchains look the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..core.proc import capture
from ..profiles import TOOLCHAIN_PROBES, current_platform

PROBE_TIMEOUT = 30.0  # seconds one version probe may take


def _first_line(command: list[str], env: Mapping[str, str]) -> str:
    try:
        done = capture(command, timeout=PROBE_TIMEOUT, env=env)
    except OSError as exc:
        return f"unknown ({type(exc).__name__})"
    if done.timed_out:
        return "unknown (TimeoutExpired)"
    lines = [line.strip() for line in (done.stdout or done.stderr).splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return f"unknown (exit {done.returncode})"
    return " ".join(lines[:2]) if command[-1] == "-version" else lines[0]


def toolchain_identity(compilers: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """``{"CC": "/usr/bin/x86_64-linux-gnu-gcc-12 gcc (Debian 12.2.0-14) 12.2.0", …, "sdk-version": …}``."""
    identity: dict[str, str] = {}
    for var, path in sorted(compilers.items()):
        identity[var] = f"{os.path.realpath(path)} {_first_line([path, '--version'], env)}"
    for key, command in TOOLCHAIN_PROBES.get(current_platform().name, {}).items():
        identity[key] = _first_line(list(command), env)
    return identity


def changes_since(
    previous: Mapping[str, Any] | None, *, commit: str, identity: Mapping[str, str]
) -> list[str]:
    """What differs from the last build's manifest: the pin and each toolchain fact, as lines."""
    if not previous:
        return []
    changes: list[str] = []
    source = previous.get("source")
    old_commit = source.get("commit") if isinstance(source, dict) else None
    if isinstance(old_commit, str) and old_commit != commit:
        changes.append(f"pin: {old_commit[:12]} -> {commit[:12]}")
    old_identity = previous.get("toolchain_identity")
    if isinstance(old_identity, dict):
        for key in sorted(set(old_identity) | set(identity)):
            before, after = old_identity.get(key, "absent"), identity.get(key, "absent")
            if before != after:
                changes.append(f"{key}: {before} -> {after}")
    return changes
