"""Memory pressure and other GPU users (macOS only; elsewhere: "not available here").

On Apple Silicon the GPU shares memory with everything else: a browser with many tabs or another
model server shrinks what llama.cpp can wire. The probes (commands as data in platform_data) are
``memory_pressure``, ``vm_stat`` and ``ps``; their parsing is pure and tested with captured text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.proc import capture
from ..profiles import PlatformInfo, current_platform
from .catalog import BY_ID
from .findings import Evidence, Finding, ObservedBy
from .platform_data import GPU_HEAVY_PROCESSES, HEAVY_RSS_BYTES, LOW_FREE_PERCENT, SYSTEM_PROBES


@dataclass(frozen=True)
class GpuUser:
    """A running process known to hold much GPU memory (ps: a browser, a game, another model runner)."""

    pid: int
    rss_bytes: int  # resident set size (ps reports KiB)
    command: str  # ps's command column, verbatim


@dataclass(frozen=True)
class SystemStatus:
    platform: str
    available: bool
    reason: str = ""  # why not available
    free_percent: int | None = None  # memory_pressure: system-wide memory free percentage
    pages: Mapping[str, int] | None = None  # vm_stat counters (pages)
    page_size: int | None = None
    wired_limit_mb: int | None = None
    gpu_users: tuple[GpuUser, ...] = ()
    errors: tuple[str, ...] = ()


def parse_memory_pressure(text: str) -> int | None:
    m = re.search(r"System-wide memory free percentage:\s*(\d+)%", text)
    return int(m.group(1)) if m else None


def parse_vm_stat(text: str) -> tuple[int | None, dict[str, int]]:
    size = re.search(r"page size of (\d+) bytes", text)
    pages = {
        m.group(1).strip().lower(): int(m.group(2))
        for m in re.finditer(r'^"?([A-Za-z][^:"]*?)"?:\s+(\d+)\.?\s*$', text, re.MULTILINE)
    }
    return (int(size.group(1)) if size else None), pages


def parse_ps(text: str) -> tuple[GpuUser, ...]:
    """``ps -Ao pid=,rss=,comm=`` lines (rss in KiB) -> known GPU-heavy processes, biggest first."""
    users = []
    for line in text.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        command = parts[2]
        name = command.rsplit("/", 1)[-1].lower()
        if any(k in name or k in command.lower() for k in GPU_HEAVY_PROCESSES):
            users.append(GpuUser(int(parts[0]), int(parts[1]) * 1024, command))
    return tuple(sorted(users, key=lambda u: -u.rss_bytes))


def assess(
    outputs: Mapping[str, str], platform: str = "darwin", errors: tuple[str, ...] = ()
) -> SystemStatus:
    """Build the status from the probes' captured outputs (keys as in platform_data.SYSTEM_PROBES)."""
    page_size, pages = parse_vm_stat(outputs.get("vm_stat", ""))
    limit = outputs.get("wired_limit", "").strip()
    return SystemStatus(
        platform=platform,
        available=True,
        free_percent=parse_memory_pressure(outputs.get("memory_pressure", "")),
        pages=pages or None,
        page_size=page_size,
        wired_limit_mb=int(limit) if limit.isdigit() else None,
        gpu_users=parse_ps(outputs.get("ps", "")),
        errors=errors,
    )


def probe(plat: PlatformInfo | None = None, timeout: float = 10.0) -> SystemStatus:
    plat = plat or current_platform()
    probes = SYSTEM_PROBES.get(plat.name)
    if probes is None:
        return SystemStatus(
            platform=plat.name,
            available=False,
            reason=f"not available here ({plat.name}): memory pressure and GPU users are probed on macOS "
            "only",
        )
    outputs: dict[str, str] = {}
    errors: list[str] = []
    for key, p in probes.items():
        try:
            done = capture(list(p.command), timeout=timeout)
            outputs[key] = done.stdout
            if done.timed_out:
                errors.append(f"{p.description}: no exit within {timeout:g} s (ended)")
            elif done.returncode:
                errors.append(f"{p.description}: exit {done.returncode}")
        except OSError as exc:
            errors.append(f"{p.description}: {exc}")
    return assess(outputs, plat.name, tuple(errors))


def system_findings(status: SystemStatus, observed_by: ObservedBy = "system") -> list[Finding]:
    if not status.available:
        return []
    cls = BY_ID["other-gpu-users"]
    evidence: list[Evidence] = []
    heavy = [u for u in status.gpu_users if u.rss_bytes >= HEAVY_RSS_BYTES]
    for u in heavy[:5]:
        evidence.append(Evidence(text=f"pid {u.pid} {u.command}: {u.rss_bytes / (1 << 30):.1f} GiB resident"))
    low = status.free_percent is not None and status.free_percent < LOW_FREE_PERCENT
    if low:
        evidence.insert(
            0, Evidence(text=f"memory_pressure: system-wide memory free percentage {status.free_percent}%")
        )
    if not evidence:
        return []
    conf = 0.8 if low and heavy else 0.6
    parts = []
    if low:
        parts.append(f"memory pressure is high ({status.free_percent}% free)")
    if heavy:
        parts.append(f"{len(heavy)} GPU-heavy process(es) hold >= 1 GiB")
    return [
        cls.finding(
            severity="warning",
            confidence=conf,
            summary="; ".join(parts),
            observed_by=observed_by,
            evidence=tuple(evidence),
            matches=len(evidence),
        )
    ]
