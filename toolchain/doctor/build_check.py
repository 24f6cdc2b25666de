"""Build check: a thin adapter over the verify stage (no binary inspection of its own here).

``toolchain.verify.verify_path(path, profile, runtime=...) -> Verification`` (``.checks``,
``.ok``; each check has ``name``, ``expected``, ``found``, ``file`` and ``status``/``failed``) says whether the backend is compiled in, its module loads and the deployment target
fits. This module imports verify lazily and turns failed checks into ``no-metal-build`` /
``build-toolchain`` findings (observed ``static``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..profiles import PROFILES, resolve_profile
from .catalog import BY_ID
from .findings import Evidence, Finding, ObservedBy, Severity


class VerifyUnavailableError(UsageError):
    """Raised when toolchain.verify is not importable (the verify stage is not in this checkout)."""


@dataclass(frozen=True)
class BuildCheck:
    path: Path
    profile: str
    ok: bool
    checks: tuple[dict[str, Any], ...]


# Words in a failed check's name that point at the deployment target / toolchain class.
_TOOLCHAIN_WORDS = ("deployment", "minos", "macos", "sdk", "dyld")


def _verify_module() -> Any:
    try:
        return importlib.import_module("toolchain.verify")
    except ImportError as exc:
        raise VerifyUnavailableError(
            f"verify stage not available: cannot import toolchain.verify ({exc})",
            "doctor --build needs the verify stage; run `llama-toolchain verify` once it is installed, "
            "or diagnose without --build",
        ) from exc


def _check_dict(check: Any) -> dict[str, Any]:
    from ..records import to_jsonable

    data = to_jsonable(check)
    return data if isinstance(data, dict) else {"detail": str(data)}


def _failed(check: Any) -> bool:
    failed = getattr(check, "failed", None)
    if isinstance(failed, bool):
        return failed
    return str(getattr(check, "status", "")) == "fail"


def check_build(
    path: Path, profile: str = "metal", *, runtime: bool = False, observed_by: ObservedBy = "static"
) -> tuple[BuildCheck, list[Finding]]:
    verify = _verify_module()
    try:
        prof = resolve_profile(profile) if profile == "auto" else PROFILES[profile]
    except KeyError:
        raise UsageError(
            f"unknown backend profile {profile!r}", f"one of: auto, {', '.join(PROFILES)}"
        ) from None
    result = verify.verify_path(path, prof, runtime=runtime)
    raw_checks = tuple(getattr(result, "checks", ()))
    ok = bool(getattr(result, "ok", False))
    record = BuildCheck(path=path, profile=prof.name, ok=ok, checks=tuple(_check_dict(c) for c in raw_checks))
    failed = [c for c in raw_checks if _failed(c)]
    unverifiable = [c for c in raw_checks if str(getattr(c, "status", "")) == "unverifiable"]
    findings: list[Finding] = []
    if unverifiable:
        findings.append(
            _checks_finding(
                "no-metal-build",
                "info",
                0.3,
                f"verify could not tell {len(unverifiable)} check(s) on {path}",
                unverifiable,
                lambda c: f"{getattr(c, 'name', '?')}: {getattr(c, 'found', '')}",
                observed_by,
            )
        )
    if ok or not failed:
        return record, findings
    toolchain_like = [
        c for c in failed if any(w in str(getattr(c, "name", "")).lower() for w in _TOOLCHAIN_WORDS)
    ]
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
                lambda c: (
                    f"{getattr(c, 'name', '?')}: expected {getattr(c, 'expected', '?')}, "
                    f"found {getattr(c, 'found', '?')} {getattr(c, 'file', '')}".strip()
                ),
                observed_by,
            )
        )
    return record, findings


def _checks_finding(
    class_id: str,
    severity: Severity,
    confidence: float,
    summary: str,
    checks: list[Any],
    line: Callable[[Any], str],
    observed_by: ObservedBy,
) -> Finding:
    """A finding about some of verify's checks: the first names in the summary, one line each."""
    return BY_ID[class_id].finding(
        severity=severity,
        confidence=confidence,
        summary=f"{summary}: " + ", ".join(str(getattr(c, "name", "?")) for c in checks[:6]),
        observed_by=observed_by,
        evidence=tuple(Evidence(text=line(c)) for c in checks[:8]),
        matches=len(checks),
    )
