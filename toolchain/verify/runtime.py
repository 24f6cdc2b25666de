"""Run-time verification: run the build's own program and read what its backend reports.

1. ``<runner> --list-devices`` (when the tree's runner has it): the backend's devices, e.g.
   ``MTL0: Apple M4 Max (98304 MiB, 98303 MiB free)`` or ``BLAS: OpenBLAS (0 MiB, 0 MiB free)``.
2. A one-token run of the probe model with full offload (``-ngl 99``). Its log carries the
   backend's device lines (Metal: GPU name, family, simdgroup reduction / matrix multiply, bfloat,
   unified memory, recommendedMaxWorkingSetSize — the formats of ggml-metal-device.m, and of
   ggml-metal.m's ``ggml_metal_init:`` in older trees) and ``offloaded N/M layers to GPU``.

The device is classified ``real`` / ``paravirtual`` / ``none`` from the profile's
:class:`~toolchain.profiles.DeviceExpectations`. On a paravirtual or absent device every
run-time verdict is ``unverifiable`` with the reason, never ``fail``. Each run has a timeout; a
crash or hang becomes a verdict carrying the last log lines.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core import tree
from ..core.proc import Completed
from ..profiles import BackendProfile, PlatformInfo, current_platform
from .devices import (
    ListedDevice,
    classify,
    device_class_of,
    merge_devices,
    parse_device_list,
    parse_device_log,
    parse_metal_log,
)
from .probe_model import probe_model_name, write_probe_model
from .records import Check, DeviceClass, DeviceInfo, RuntimeRun, Status
from .runs import RUNNERS, broken_hint, find_runner, is_broken, one_token_args, outcome, record_run, run_probe

__all__ = [
    "RuntimeResult",
    "classify",
    "find_runner",
    "parse_device_list",
    "parse_metal_log",
    "runtime_checks",
]


@dataclass(frozen=True)
class RuntimeResult:
    checks: tuple[Check, ...]
    devices: tuple[DeviceInfo, ...]
    device_class: DeviceClass
    runs: tuple[RuntimeRun, ...]


def _cannot_run(
    binary_format: str, archs: Sequence[str], programs: Sequence[Path], plat: PlatformInfo
) -> tuple[str, str] | None:
    """(found, hint) when the build cannot be run on this machine at all, else None."""
    host_format = {"darwin": "macho", "linux": "elf"}.get(plat.name, "")
    host_arch = {"aarch64": "arm64", "amd64": "x86_64"}.get(plat.machine.lower(), plat.machine.lower())
    if binary_format != host_format:
        where = "Mac" if binary_format == "macho" else "Linux machine"
        return (
            f"{binary_format} binaries cannot run on {plat.name}",
            f"run `llama-toolchain verify` on a {where}",
        )
    if archs and not any(a in (host_arch, "aarch64" if host_arch == "arm64" else host_arch) for a in archs):
        return (
            f"built for {', '.join(archs)}; this machine is {host_arch}",
            "run it on a machine of that architecture",
        )
    if find_runner(programs) is None:
        return (
            f"none of {', '.join(RUNNERS)} among the programs",
            f"build a runner target ({' or '.join(tree.RUNNERS[:2])}) to verify at run time",
        )
    return None


def _device_check(
    profile: BackendProfile,
    devices: Sequence[DeviceInfo],
    listed: Sequence[ListedDevice],
    *,
    has_parser: bool,
    ran: bool,
    worked: bool,
    rel: str,
    done: Completed,
) -> Check:
    """``runtime.device``: the profile's device seen (pass), a VM device or none here
    (unverifiable), or a listing that is authoritative and lacks it (fail)."""
    device_class = device_class_of(devices)
    best = next((d for d in devices if d.device_class == device_class), None)
    expected = f"a {'/'.join(profile.device_prefixes)} device" + (
        " in --list-devices" if profile.device.listed else ""
    )

    def check(found: str, status: Status, hint: str = "", evidence: tuple[str, ...] = ()) -> Check:
        return Check("runtime.device", expected, found, rel, status, "device", hint=hint, evidence=evidence)

    if best is not None and device_class == "real":
        return check(f"{best.name}: {best.description} ({best.class_reason})", "pass")
    if best is not None and device_class == "paravirtual":
        return check(
            f"{best.name}: {best.description or '?'}: {best.class_reason}",
            "unverifiable",
            profile.device.vm_hint,
        )
    seen = ", ".join(d.name for d in listed) or "none"
    if profile.device.listed and not has_parser:
        # the build can run here and the listing is authoritative: the backend is missing at run time
        return check(
            f"devices listed: {seen}",
            "fail",
            f"the {profile.name} backend did not register at run time: check the static "
            "checks and that the backend's system library loads (ldd)",
            done.tail,
        )
    if not profile.device.listed and ran and not worked:
        return check(
            "the run exited 0 but its log shows no model loaded and no token evaluated",
            "unverifiable",
            "is this a llama.cpp runner? its log lacks `loaded meta data with … tensors` and `eval time =`",
            done.tail,
        )
    return check(
        f"no {profile.name} device on this machine (listed: {seen})",
        "unverifiable",
        "verify on a machine with the device",
    )


def _run_checks(
    profile: BackendProfile,
    device: Check,
    device_class: DeviceClass,
    done: Completed,
    lines: Sequence[str],
    *,
    ran: bool,
    how: str,
    rel: str,
) -> list[Check]:
    """``runtime.one-token`` and, on a real device, ``runtime.graph`` and ``runtime.offload``."""
    # without a device the run falls back to the CPU: it must still not crash, hang or flood
    no_device = device_class == "none" and device.status == "unverifiable" and not is_broken(done)
    unverifiable = device_class == "paravirtual" or no_device
    if unverifiable or ran:
        status: Status = "unverifiable" if unverifiable else "pass"
        hint = device.found if unverifiable else ""
    else:
        status = "fail"
        hint = (
            broken_hint(done)
            if is_broken(done)
            else "the build fails on a tiny model: see the log lines (`llama-toolchain doctor` classifies them)"
        )
    evidence = done.tail if not ran else ()
    run_expected = "one token generated with -ngl 99, exit 0"
    checks = [
        Check("runtime.one-token", run_expected, how, rel, status, "device", hint=hint, evidence=evidence)
    ]
    if unverifiable or not ran or device_class != "real":
        return checks
    splits = sorted({m["backend"] for m in map(tree.SCHED_SPLIT.search, lines) if m})
    ours_ran = [b for b in splits if b.startswith(profile.device_prefixes)]
    if not splits:
        found, status = "this tree's log shows no graph splits (GGML_SCHED_DEBUG)", "unverifiable"
        hint = "the scheduler's split lines are not printed by this tree"
    else:
        found, status = f"splits ran on {', '.join(splits)}", "pass" if ours_ran else "fail"
        hint = (
            ""
            if ours_ran
            else "the device is registered but the scheduler gave it no work: its supports_op rejected "
            "every op of the probe model"
        )
    on = "/".join(profile.device_prefixes)
    checks.append(
        Check("runtime.graph", f"graph splits run on {on}", found, rel, status, "device", hint=hint)
    )
    if profile.offloads_layers:
        off = [m for m in map(tree.OFFLOADED.search, lines) if m]
        n, m = (int(off[-1]["n"]), int(off[-1]["m"])) if off else (0, 0)
        full = bool(off) and n == m
        checks.append(
            Check(
                "runtime.offload",
                "every layer offloaded to the GPU",
                f"offloaded {n}/{m} layers" if off else "no `offloaded N/M layers` line",
                rel,
                "pass" if full else "fail",
                "device",
                hint="" if full else "the device was found but layers stayed on the CPU",
            )
        )
    return checks


def runtime_checks(
    programs: Sequence[Path],
    profile: BackendProfile,
    *,
    binary_format: str,
    archs: Sequence[str],
    timeout: float = 180.0,
    model: Path | None = None,
    log_dir: Path | None = None,
    plat: PlatformInfo | None = None,
) -> RuntimeResult:
    """Run the build's runner (see the module docstring); never raises for a bad build."""
    plat = plat or current_platform()
    cannot = _cannot_run(binary_format, archs, programs, plat)
    if cannot is not None:
        found, hint = cannot
        check = Check(
            "runtime",
            "the build runs a one-token generation on its device",
            found,
            "",
            "unverifiable",
            "device",
            hint=hint,
        )
        return RuntimeResult((check,), (), "none", ())
    runner = find_runner(programs)
    assert runner is not None
    if log_dir is None:
        log_dir = Path(tempfile.mkdtemp(prefix="llama-toolchain-verify-"))
    runs: list[RuntimeRun] = []
    checks: list[Check] = []
    rel = runner.name

    # --- help: which options this tree's runner has ---
    helped, help_lines = run_probe([str(runner), "--help"], log_dir, "help", timeout)
    runs.append(record_run(helped))
    help_text = "\n".join(help_lines)
    if is_broken(helped):
        # a runner that cannot print its usage (killed by a signal, hung, flooding, not startable)
        # is broken whatever the device: nothing else it could run would mean anything
        _, how = outcome(helped, timeout)
        checks.append(
            Check(
                "runtime.help",
                f"`{rel} --help` exits",
                f"--help: {how}",
                rel,
                "fail",
                "device",
                hint=broken_hint(helped),
                evidence=helped.tail,
            )
        )
        return RuntimeResult(tuple(checks), (), "none", tuple(runs))

    # --- device listing ---
    listed: list[ListedDevice] = []
    if "--list-devices" in help_text:
        done, lines = run_probe([str(runner), "--list-devices"], log_dir, "list-devices", timeout)
        runs.append(record_run(done))
        ok, how = outcome(done, timeout)
        listed = parse_device_list(lines)
        if not ok:
            checks.append(
                Check(
                    "runtime.list-devices",
                    f"`{rel} --list-devices` exits 0",
                    how,
                    rel,
                    "fail",
                    "device",
                    hint="the build cannot even enumerate its devices: see the log lines",
                    evidence=done.tail,
                )
            )
    ours = [d for d in listed if d.name.startswith(profile.device_prefixes)]

    # --- one-token run; GGML_SCHED_DEBUG=2 (with -v) prints each graph split and its backend ---
    model = model or write_probe_model(log_dir / probe_model_name())
    args = one_token_args(runner, model, help_text)
    done, lines = run_probe(args, log_dir, "one-token", timeout, env={**os.environ, **tree.SCHED_DEBUG_ENV})
    runs.append(record_run(done))
    ran, how = outcome(done, timeout)

    # --- devices: the log's device lines, merged with the listing ---
    has_parser = profile.device.log is not None
    worked = any(tree.MODEL_RAN.search(line) for line in lines)
    devices = merge_devices(
        parse_device_log(lines, profile),
        ours,
        profile,
        has_parser=has_parser,
        proven_by_run=ran and worked,
        plat=plat,
    )
    device_class = device_class_of(devices)
    device = _device_check(
        profile, devices, listed, has_parser=has_parser, ran=ran, worked=worked, rel=rel, done=done
    )
    checks.append(device)
    checks += _run_checks(profile, device, device_class, done, lines, ran=ran, how=how, rel=rel)
    return RuntimeResult(tuple(checks), tuple(devices), device_class, tuple(runs))
