"""Per-platform probes as data, in one place: how to learn the machine's memory and pressure.

Nothing else in the doctor branches on the platform: it looks the platform up here. A platform
missing from a table means "not available here", and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Probe:
    """Either a command (argument list, never a shell string) or a file to read."""

    description: str
    command: tuple[str, ...] = ()
    file: str = ""


# Total physical memory (bytes). macOS: unified memory shared by CPU and GPU.
MEMORY_PROBES: Mapping[str, Probe] = MappingProxyType(
    {
        "darwin": Probe("sysctl hw.memsize", command=("sysctl", "-n", "hw.memsize")),
        "linux": Probe("/proc/meminfo MemTotal", file="/proc/meminfo"),
    }
)

# Memory pressure and the processes that may hold GPU / wired memory (macOS only).
SYSTEM_PROBES: Mapping[str, Mapping[str, Probe]] = MappingProxyType(
    {
        "darwin": MappingProxyType(
            {
                "memory_pressure": Probe("memory_pressure -Q", command=("memory_pressure", "-Q")),
                "vm_stat": Probe("vm_stat", command=("vm_stat",)),
                "ps": Probe("ps (pid, rss, command)", command=("ps", "-Ao", "pid=,rss=,comm=")),
                "wired_limit": Probe(
                    "sysctl iogpu.wired_limit_mb", command=("sysctl", "-n", "iogpu.wired_limit_mb")
                ),
            }
        ),
    }
)

# Processes known to hold GPU memory on a Mac (matched case-insensitively against the command
# name). WindowServer always holds some and is not listed: it is not "another user" to close.
GPU_HEAVY_PROCESSES: tuple[str, ...] = (
    "llama-server",
    "llama-cli",
    "ollama",
    "lm studio",
    "lmstudio",
    "mlx",
    "comfyui",
    "diffusionbee",
    "draw things",
    "stable diffusion",
    "blender",
    "final cut pro",
    "davinci resolve",
    "motion",
    "unity",
    "unreal",
    "google chrome helper (gpu)",
    "chrome helper (gpu)",
    "com.apple.webkit.gpu",
    "firefox gpu",
    "microsoft edge helper (gpu)",
)

# A process of this resident size or more counts as holding memory worth closing.
HEAVY_RSS_BYTES = 1 << 30
# memory_pressure's "System-wide memory free percentage" below this: pressure is high.
LOW_FREE_PERCENT = 20
