"""What a run says about its devices: the ``--list-devices`` rows (their format in
:mod:`toolchain.core.tree`), the backend's device log lines (their formats in the profile's
:class:`~toolchain.profiles.DeviceLog`: Metal's of ggml-metal-device.m, and of ggml-metal.m's
``ggml_metal_init:`` in older trees), and the device class (``real`` / ``paravirtual`` / ``none``)
from the profile's :class:`~toolchain.profiles.DeviceExpectations`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..core import tree
from ..profiles import PROFILES, BackendProfile, PlatformInfo
from .records import DeviceClass, DeviceInfo


@dataclass(frozen=True)
class ListedDevice:
    name: str
    description: str
    total_mib: int
    free_mib: int


def parse_device_list(lines: Iterable[str]) -> list[ListedDevice]:
    out, inside = [], False
    for line in lines:
        if line.strip() == tree.DEVICE_LIST_HEADER:
            inside = True
            continue
        if inside:
            m = tree.DEVICE_ROW.match(line)
            if m:
                out.append(ListedDevice(m["name"], m["desc"], int(m["total"]), int(m["free"])))
    return out


def parse_device_log(lines: Iterable[str], profile: BackendProfile) -> list[DeviceInfo]:
    """Every device of ``profile`` the log describes (one per name line), capabilities filled in."""
    fmt = profile.device.log
    if fmt is None:
        return []
    flags = [(f, re.compile(rf"^{said}\s*= (true|false)")) for f, said in fmt.flags.items()]
    devices: list[DeviceInfo] = []
    for line in lines:
        m = fmt.line.match(line.strip())
        if not m:
            continue
        rest = m["rest"].strip()
        name = fmt.name.match(rest)
        if name:
            nd = fmt.name_desc.match(name["name"])
            devices.append(
                DeviceInfo(backend=profile.name, name=nd["name"], description=nd["desc"])
                if nd
                else DeviceInfo(
                    backend=profile.name,
                    name=name["name"],
                    description=name["name"] if not name["name"].startswith(fmt.id_prefix) else "",
                )
            )
            continue
        if not devices:
            continue
        cur = devices[-1]
        fam = fmt.family.match(rest)
        if fam:
            gpu_family = int(fam["apple"]) if fam["apple"] else cur.gpu_family
            devices[-1] = replace(cur, gpu_families=(*cur.gpu_families, fam["family"]), gpu_family=gpu_family)
            continue
        wss = fmt.working_set.match(rest)
        if wss:
            devices[-1] = replace(cur, max_working_set_mb=float(wss["mb"]))
            continue
        for field_name, pattern in flags:
            fm = pattern.match(rest)
            if fm:
                found: dict[str, bool] = {field_name: fm.group(1) == "true"}
                devices[-1] = replace(cur, **found)  # type: ignore[arg-type]
                break
    return devices


def parse_metal_log(lines: Iterable[str]) -> list[DeviceInfo]:
    """Every Metal device the log describes (one per ``GPU name:`` line), capabilities filled in."""
    return parse_device_log(lines, PROFILES["metal"])


def classify(device: DeviceInfo, profile: BackendProfile) -> DeviceInfo:
    """Set ``device_class`` / ``class_reason`` from the profile's device expectations."""
    want = profile.device
    lacking = [cap for cap in want.required_capabilities if getattr(device, cap) is not True]
    unknown = [cap for cap in want.required_capabilities if getattr(device, cap) is None]
    problems: list[str] = []
    if any(marker in f"{device.name} {device.description}".lower() for marker in want.vm_markers):
        problems.append("a paravirtual (VM) device")
    if lacking:
        problems.append(
            "no " + ", no ".join(c.replace("_", " ") for c in lacking) + (" reported" if unknown else "")
        )
    if want.min_gpu_family and device.gpu_family is not None and device.gpu_family < want.min_gpu_family:
        problems.append(f"GPU family Apple{device.gpu_family} < Apple{want.min_gpu_family}")
    if problems:
        reason = "; ".join(problems) + ": most ops fall back to the CPU, results on it prove nothing"
        return replace(device, device_class="paravirtual", class_reason=reason)
    caps = ", ".join(want.required_capabilities) or "listed by the build"
    family = f"Apple{device.gpu_family}, " if device.gpu_family is not None else ""
    return replace(device, device_class="real", class_reason=f"{family}{caps}")


def merge_devices(
    logged: Sequence[DeviceInfo],
    ours: Sequence[ListedDevice],
    profile: BackendProfile,
    *,
    has_parser: bool,
    proven_by_run: bool,
    plat: PlatformInfo,
) -> list[DeviceInfo]:
    """The log's device lines merged with the listing, each classified. ``proven_by_run``: a
    backend that lists no device (cpu) ran the model to the end (its only evidence)."""
    devices: list[DeviceInfo] = []
    for dev in logged:
        match = next((d for d in ours if d.name == dev.name), None)
        if match:
            dev = replace(
                dev,
                description=dev.description or match.description,
                memory_total_mib=match.total_mib,
                memory_free_mib=match.free_mib,
            )
        devices.append(classify(dev, profile))
    for d in ours:
        if not any(x.name == d.name for x in devices):
            info = DeviceInfo(
                backend=profile.name,
                name=d.name,
                description=d.description,
                memory_total_mib=d.total_mib,
                memory_free_mib=d.free_mib,
            )
            devices.append(
                classify(info, profile)
                if not has_parser
                else replace(
                    info, device_class="none", class_reason="listed, but the run printed no device lines"
                )
            )
    if not profile.device.listed and proven_by_run and not devices:
        devices.append(
            DeviceInfo(
                backend=profile.name,
                name=profile.device_prefixes[0],
                description=plat.machine,
                device_class="real",
                class_reason="the one-token run completed on it",
            )
        )
    return devices


def device_class_of(devices: Sequence[DeviceInfo]) -> DeviceClass:
    """The best class any device reached."""
    for cls in ("real", "paravirtual"):
        if any(d.device_class == cls for d in devices):
            return cls
    return "none"
