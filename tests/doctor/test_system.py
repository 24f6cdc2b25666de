"""macOS memory pressure / GPU users from captured probe output; "not available here" elsewhere."""

from __future__ import annotations

from toolchain.doctor.system import assess, parse_ps, parse_vm_stat, probe, system_findings
from toolchain.profiles import PlatformInfo

MEMORY_PRESSURE = """The system has 68719476736 (4194304 pages with a page size of 16384).

Stats:
Pages free: 12000
System-wide memory free percentage: 9%
"""
VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12000.
Pages active:                            900000.
Pages wired down:                       2500000.
"Translation faults":                 123456789.
"""
PS = """    1   20480 /sbin/launchd
  412  524288 /System/Library/PrivateFrameworks/SkyLight.framework/Resources/WindowServer
 9001 6291456 /Applications/Ollama.app/Contents/Resources/ollama
 9100 2097152 /Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Helper (GPU).app/Contents/MacOS/Google Chrome Helper (GPU)
 9200   65536 /usr/local/bin/llama-server
"""


def test_parsers() -> None:
    size, pages = parse_vm_stat(VM_STAT)
    assert size == 16384 and pages["pages wired down"] == 2500000 and pages["translation faults"] == 123456789
    users = parse_ps(PS)
    assert [u.pid for u in users] == [9001, 9100, 9200]  # biggest first; WindowServer is not listed
    assert users[0].rss_bytes == 6291456 * 1024


def test_findings_from_a_busy_mac() -> None:
    status = assess({"memory_pressure": MEMORY_PRESSURE, "vm_stat": VM_STAT, "ps": PS, "wired_limit": "0\n"})
    assert status.available and status.free_percent == 9 and status.wired_limit_mb == 0
    (finding,) = system_findings(status, observed_by="fixture")
    assert finding.class_id == "other-gpu-users" and finding.severity == "warning"
    assert finding.observed_by == "fixture"
    assert "9% free" in finding.summary and "2 GPU-heavy" in finding.summary  # ollama 6 GiB, Chrome GPU 2 GiB
    assert "ollama" in finding.evidence[1].text


def test_quiet_mac_has_no_finding() -> None:
    status = assess(
        {"memory_pressure": "System-wide memory free percentage: 61%\n", "ps": "  1 2048 launchd\n"}
    )
    assert system_findings(status) == []


def test_not_available_on_linux() -> None:
    status = probe(PlatformInfo("linux", "x86_64", "6.1"))
    assert not status.available and "not available here" in status.reason
    assert system_findings(status) == []
