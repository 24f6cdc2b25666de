"""Build check: a thin adapter over the verify stage (no binary inspection of its own here).

``toolchain.verify.verify_path(path, profile, runtime=...)`` returns a
:class:`~toolchain.verify.records.Verification` (``.checks``, ``.ok``; each
:class:`~toolchain.verify.records.Check` has ``name``, ``expected``, ``found``, ``file``, ``status``
and ``failed``): whether the backend is compiled in, its module loads and the deployment target
fits. This module turns failed checks into ``no-metal-build`` / ``build-toolchain`` findings
(observed ``static``); verify is imported when ``--build`` is given, not before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.jsonio import to_jsonable
from ..errors import UnreadableBinaryError, UsageError
from ..profiles import PROFILES, resolve_profile
from ..verify import verify_path
from .catalog import BY_ID
from .findings import Evidence, Finding, ObservedBy, Severity

if TYPE_CHECKING:
    from ..verify.records import Check


@dataclass(frozen=True)
class BuildCheck:
    path: Path
    profile: str
    ok: bool
    checks: tuple[dict[str, Any], ...]


# Words in a failed check's name that point at the deployment target / toolchain class.
_TOOLCHAIN_WORDS = ("deployment", "minos", "macos", "sdk", "dyld")


def check_build(
    path: Path, profile: str = "metal", *, runtime: bool = False, observed_by: ObservedBy = "static"
) -> tuple[BuildCheck, list[Finding]]:
    try:
        prof = resolve_profile(profile) if profile == "auto" else PROFILES[profile]
    except KeyError:
        raise UsageError(
            f"unknown backend profile {profile!r}", f"one of: auto, {', '.join(PROFILES)}"
        ) from None
    result = verify_path(path, prof, runtime=runtime)
    damaged = [c for c in result.checks if c.failed and c.name == "readable"]
    if damaged:  # not a build verdict: the file cannot be read (issue #32 B)
        raise UnreadableBinaryError(
            "\n".join(c.found for c in damaged),
            "the file is damaged or was copied in part: rebuild it, or copy it again",
        )
    ok = result.ok
    record = BuildCheck(
        path=path, profile=prof.name, ok=ok, checks=tuple(to_jsonable(c) for c in result.checks)
    )
    failed = [c for c in result.checks if c.failed]
    unverifiable = [c for c in result.checks if c.status == "unverifiable"]
    findings: list[Finding] = []
    if unverifiable:
        findings.append(
            _checks_finding(
                "no-metal-build",
                "info",
                0.3,
                f"verify could not tell {len(unverifiable)} check(s) on {path}",
                unverifiable,
                lambda c: f"{c.name}: {c.found}",
                observed_by,
            )
        )
    if ok or not failed:
        return record, findings
    toolchain_like = [c for c in failed if any(w in c.name.lower() for w in _TOOLCHAIN_WORDS)]
    other = [c for c in failed if c not in toolchain_like]
    for class_id, group in (("no-metal-build", other), ("build-toolchain", toolchain_like)):
        if not group:
            continue
        findings.append(
            _checks_finding(
                class_id,
                "error",
                0.9,
                f"verify ({prof.name}) failed {len(group)} check(s) on {path}",
                group,
                lambda c: f"{c.name}: expected {c.expected}, found {c.found} {c.file}".strip(),
                observed_by,
            )
        )
    return record, findings


def _checks_finding(
    class_id: str,
    severity: Severity,
    confidence: float,
    summary: str,
    checks: list[Check],
    line: Callable[[Check], str],
    observed_by: ObservedBy,
) -> Finding:
    """A finding about some of verify's checks: the first names in the summary, one line each."""
    return BY_ID[class_id].finding(
        severity=severity,
        confidence=confidence,
        summary=f"{summary}: " + ", ".join(c.name for c in checks[:6]),
        observed_by=observed_by,
        evidence=tuple(Evidence(text=line(c)) for c in checks[:8]),
        matches=len(checks),
    )
