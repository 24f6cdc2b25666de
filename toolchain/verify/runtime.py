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
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .. import tree
from ..proc import Completed, stream
from ..profiles import BackendProfile, PlatformInfo, current_platform
from .probe_model import probe_model_name, write_probe_model
from .records import Check, DeviceClass, DeviceInfo, RuntimeRun, Status

# Programs that run a prompt, newest name first; llama-simple where the tree has no runner of the same age.
RUNNERS = (*tree.RUNNERS[:2], tree.SIMPLE_RUNNER, *tree.RUNNERS[2:])
TAIL = 25
# A run printing more than this is ended as a flood (a real one-token run with the scheduler's
# debug output prints a few MiB); only this much of its text is kept in memory for parsing.
MAX_OUTPUT = 64 << 20
MAX_KEPT = 8 << 20

# "Available devices:" rows of common_print_available_devices (common/arg.cpp).
_DEVICE_ROW = re.compile(
    r"^\s+(?P<name>[^\s:]+): (?P<desc>.*?) \((?P<total>\d+) MiB, (?P<free>\d+) MiB free\)\s*$"
)
_OFFLOADED = re.compile(r"offloaded (?P<n>\d+)/(?P<m>\d+) layers to GPU")
# llama-model-loader.cpp and llama_perf_context_print (0.3.20 and 0.3.36): the run really loaded
# the model, or evaluated tokens; an exit 0 without either proves nothing.
_WORKED = re.compile(r"loaded meta data with \d+ key-value pairs and \d+ tensors|: +eval time = ")
PROMPT = " ".join(["hello world the a"] * 12)

# Metal device lines. ggml-metal-device.m (0.3.20+): "ggml_metal_device_init: GPU name:   MTL0 (Apple M4)";
# ggml-metal.m (older): "ggml_metal_init: GPU name:   Apple M1 Pro", "... support = true", "hasUnifiedMemory".
_METAL_LINE = re.compile(r"^(?P<func>ggml_metal_\w+): (?P<rest>.*)$")
_METAL_FIELDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("simdgroup_reduction", re.compile(r"^simdgroup reduction(?: support)?\s*= (true|false)")),
    ("simdgroup_mm", re.compile(r"^simdgroup matrix mul\.(?: support)?\s*= (true|false)")),
    ("unified_memory", re.compile(r"^(?:has unified memory|hasUnifiedMemory)\s*= (true|false)")),
    ("bfloat", re.compile(r"^has bfloat\s*= (true|false)")),
    ("tensor", re.compile(r"^has tensor\s*= (true|false)")),
)
_METAL_NAME = re.compile(r"^GPU name:\s+(?P<name>.+?)\s*$")
_METAL_NAME_DESC = re.compile(r"^(?P<name>MTL\d+) \((?P<desc>.*)\)$")
_METAL_FAMILY = re.compile(r"^GPU family: MTLGPUFamily(?P<kind>Apple|Common|Metal)(?P<n>\d+)\s+\(\d+\)")
_METAL_WSS = re.compile(r"^recommendedMaxWorkingSetSize\s*=\s*(?P<mb>[\d.]+) MB")


@dataclass(frozen=True)
class ListedDevice:
    name: str
    description: str
    total_mib: int
    free_mib: int


def parse_device_list(lines: Iterable[str]) -> list[ListedDevice]:
    out, inside = [], False
    for line in lines:
        if line.strip() == "Available devices:":
            inside = True
            continue
        if inside:
            m = _DEVICE_ROW.match(line)
            if m:
                out.append(ListedDevice(m["name"], m["desc"], int(m["total"]), int(m["free"])))
    return out


def parse_metal_log(lines: Iterable[str]) -> list[DeviceInfo]:
    """Every Metal device the log describes (one per ``GPU name:`` line), capabilities filled in."""
    devices: list[DeviceInfo] = []
    for line in lines:
        m = _METAL_LINE.match(line.strip())
        if not m:
            continue
        rest = m["rest"].strip()
        name = _METAL_NAME.match(rest)
        if name:
            nd = _METAL_NAME_DESC.match(name["name"])
            devices.append(
                DeviceInfo(backend="metal", name=nd["name"], description=nd["desc"])
                if nd
                else DeviceInfo(
                    backend="metal",
                    name=name["name"],
                    description=name["name"] if not name["name"].startswith("MTL") else "",
                )
            )
            continue
        if not devices:
            continue
        cur = devices[-1]
        fam = _METAL_FAMILY.match(rest)
        if fam:
            family = f"MTLGPUFamily{fam['kind']}{fam['n']}"
            gpu_family = int(fam["n"]) if fam["kind"] == "Apple" else cur.gpu_family
            devices[-1] = replace(cur, gpu_families=(*cur.gpu_families, family), gpu_family=gpu_family)
            continue
        wss = _METAL_WSS.match(rest)
        if wss:
            devices[-1] = replace(cur, max_working_set_mb=float(wss["mb"]))
            continue
        for field_name, pattern in _METAL_FIELDS:
            fm = pattern.match(rest)
            if fm:
                flags: dict[str, bool] = {field_name: fm.group(1) == "true"}
                devices[-1] = replace(cur, **flags)  # type: ignore[arg-type]
                break
    return devices


LOG_PARSERS = {"metal": parse_metal_log}


def classify(device: DeviceInfo, profile: BackendProfile) -> DeviceInfo:
    """Set ``device_class`` / ``class_reason`` from the profile's device expectations."""
    want = profile.device
    lacking = [cap for cap in want.required_capabilities if getattr(device, cap) is not True]
    unknown = [cap for cap in want.required_capabilities if getattr(device, cap) is None]
    problems: list[str] = []
    if "paravirtual" in f"{device.name} {device.description}".lower():
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


@dataclass(frozen=True)
class RuntimeResult:
    checks: tuple[Check, ...]
    devices: tuple[DeviceInfo, ...]
    device_class: DeviceClass
    runs: tuple[RuntimeRun, ...]


@dataclass(frozen=True)
class _Unstartable(Completed):
    """A probe whose program could not even be started (exec failed)."""


def _broken(done: Completed) -> bool:
    """Killed by a signal, hung, flooding or not startable: broken whatever the device."""
    return isinstance(done, _Unstartable) or done.flooded or done.timed_out or done.returncode < 0


def _broken_hint(done: Completed) -> str:
    if isinstance(done, _Unstartable):
        return "not a program this machine can run (a truncated copy, or built for another platform)"
    if done.flooded:
        return "the runner prints without end: see the start of its log"
    if done.timed_out:
        return "the runner never exits: see the log lines (raise --timeout if the machine is only slow)"
    if done.signal_name == "SIGILL":
        return (
            "illegal instruction: the build uses CPU instructions this machine lacks (a -march=native / "
            "GGML_NATIVE=ON build made on another machine): rebuild with -DGGML_NATIVE=OFF, or on this machine"
        )
    return "the runner crashes: see the log lines (`llama-toolchain doctor` classifies them)"


class _Kept(list[str]):
    """The lines of a run, up to :data:`MAX_KEPT` bytes (with a per-line allowance for overhead)."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = MAX_KEPT

    def add(self, line: str) -> None:
        self.budget -= len(line) + 64
        if self.budget >= 0:
            self.append(line)


def _run(
    args: Sequence[str], log_dir: Path, name: str, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[Completed, list[str]]:
    """Run one probe under ``timeout``; a program that cannot be started at all (not executable,
    not a binary of this machine) is returned as exit status 127 with the reason as its tail."""
    lines = _Kept()
    log = log_dir / f"{name}.log"
    log.unlink(missing_ok=True)
    try:
        done = stream(
            list(args),
            log_path=log,
            on_line=lines.add,
            timeout=timeout,
            tail_lines=TAIL,
            env=env,
            max_output=MAX_OUTPUT,
        )
    except OSError as exc:
        why = f"cannot be started: {exc.strerror or exc}"
        return _Unstartable(tuple(args), 127, (why,), 0.0), [why]
    return done, lines


def _record(done: Completed) -> RuntimeRun:
    return RuntimeRun(done.args, done.returncode, round(done.seconds, 3), done.timed_out, done.tail)


def find_runner(programs: Iterable[Path]) -> Path | None:
    by_name = {p.name: p for p in programs}
    return next((by_name[n] for n in RUNNERS if n in by_name), None)


def _outcome(done: Completed, timeout: float) -> tuple[bool, str]:
    if isinstance(done, _Unstartable):
        return False, done.tail[0]
    if done.flooded:
        return False, f"flood: more than {MAX_OUTPUT >> 20} MiB of output (killed)"
    if done.timed_out:
        return False, f"hang: no exit after {timeout:.0f} s (killed)"
    if done.returncode < 0:
        return False, f"crash: killed by {done.signal_name}"
    if done.returncode != 0:
        return False, f"exit status {done.returncode}"
    return True, f"exit 0 in {done.seconds:.1f} s"


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
    host_format = {"darwin": "macho", "linux": "elf"}.get(plat.name, "")
    host_arch = {"aarch64": "arm64", "amd64": "x86_64"}.get(plat.machine.lower(), plat.machine.lower())

    def result(status: Status, found: str, hint: str, cls: DeviceClass = "none") -> RuntimeResult:
        check = Check(
            "runtime",
            "the build runs a one-token generation on its device",
            found,
            "",
            status,
            "device",
            hint=hint,
        )
        return RuntimeResult((check,), (), cls, ())

    if binary_format != host_format:
        return result(
            "unverifiable",
            f"{binary_format} binaries cannot run on {plat.name}",
            f"run `llama-toolchain verify` on a {'Mac' if binary_format == 'macho' else 'Linux machine'}",
        )
    if archs and not any(a in (host_arch, "aarch64" if host_arch == "arm64" else host_arch) for a in archs):
        return result(
            "unverifiable",
            f"built for {', '.join(archs)}; this machine is {host_arch}",
            "run it on a machine of that architecture",
        )
    runner = find_runner(programs)
    if runner is None:
        return result(
            "unverifiable",
            f"none of {', '.join(RUNNERS)} among the programs",
            "build a runner target (llama-completion or llama-cli) to verify at run time",
        )
    if log_dir is None:
        log_dir = Path(tempfile.mkdtemp(prefix="llama-toolchain-verify-"))
    runs: list[RuntimeRun] = []
    checks: list[Check] = []
    rel = runner.name

    # --- help: which options this tree's runner has ---
    helped, help_lines = _run([str(runner), "--help"], log_dir, "help", timeout)
    runs.append(_record(helped))
    help_text = "\n".join(help_lines)
    if _broken(helped):
        # a runner that cannot print its usage (killed by a signal, hung, flooding, not startable)
        # is broken whatever the device: nothing else it could run would mean anything
        _, how = _outcome(helped, timeout)
        checks.append(
            Check(
                "runtime.help",
                f"`{rel} --help` exits",
                f"--help: {how}",
                rel,
                "fail",
                "device",
                hint=_broken_hint(helped),
                evidence=helped.tail,
            )
        )
        return RuntimeResult(tuple(checks), (), "none", tuple(runs))

    # --- device listing ---
    listed: list[ListedDevice] = []
    if "--list-devices" in help_text:
        done, lines = _run([str(runner), "--list-devices"], log_dir, "list-devices", timeout)
        runs.append(_record(done))
        ok, how = _outcome(done, timeout)
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

    # --- one-token run ---
    model = model or write_probe_model(log_dir / probe_model_name())
    # >= 32 prompt tokens: backends such as BLAS take MUL_MAT only from that batch size on
    args = [
        str(runner),
        "-m",
        str(model),
        "-p",
        PROMPT,
        "-n",
        "1",
        "-ngl",
        "99",
        "-c",
        "256",
        "--temp",
        "0",
        "-s",
        "1",
    ]
    for flag, option in (("-no-cnv", "-no-cnv"), ("--no-warmup", "--no-warmup"), ("-v", "--verbose")):
        if tree.has_option(help_text, option):
            args.append(flag)
    # GGML_SCHED_DEBUG=2 (with -v) prints each graph split and the backend that runs it
    done, lines = _run(args, log_dir, "one-token", timeout, env={**os.environ, "GGML_SCHED_DEBUG": "2"})
    runs.append(_record(done))
    ran, how = _outcome(done, timeout)

    # --- devices: the log's device lines, merged with the listing ---
    parser = LOG_PARSERS.get(profile.device.log_format)
    logged = parser(lines) if parser else []
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
                if not parser
                else replace(
                    info, device_class="none", class_reason="listed, but the run printed no device lines"
                )
            )
    worked = any(_WORKED.search(line) for line in lines)
    if not profile.device.listed and ran and not devices and worked:
        devices.append(
            DeviceInfo(
                backend=profile.name,
                name=profile.device_prefixes[0],
                description=plat.machine,
                device_class="real",
                class_reason="the one-token run completed on it",
            )
        )
    device_class: DeviceClass = "none"
    if any(d.device_class == "real" for d in devices):
        device_class = "real"
    elif any(d.device_class == "paravirtual" for d in devices):
        device_class = "paravirtual"
    best = next((d for d in devices if d.device_class == device_class), None)

    expected_dev = f"a {'/'.join(profile.device_prefixes)} device" + (
        " in --list-devices" if profile.device.listed else ""
    )
    if device_class == "real":
        assert best is not None
        found = f"{best.name}: {best.description} ({best.class_reason})"
        checks.append(Check("runtime.device", expected_dev, found, rel, "pass", "device"))
    elif device_class == "paravirtual":
        assert best is not None
        checks.append(
            Check(
                "runtime.device",
                expected_dev,
                f"{best.name}: {best.description or '?'}: {best.class_reason}",
                rel,
                "unverifiable",
                "device",
                hint="verify on a real Apple Silicon Mac (self-hosted runner)",
            )
        )
    else:
        seen = ", ".join(d.name for d in listed) or "none"
        if profile.device.listed and not parser:
            # the build can run here and the listing is authoritative: the backend is missing at run time
            checks.append(
                Check(
                    "runtime.device",
                    expected_dev,
                    f"devices listed: {seen}",
                    rel,
                    "fail",
                    "device",
                    hint=f"the {profile.name} backend did not register at run time: check the static "
                    "checks and that the backend's system library loads (ldd)",
                    evidence=done.tail,
                )
            )
        elif not profile.device.listed and ran and not worked:
            checks.append(
                Check(
                    "runtime.device",
                    expected_dev,
                    "the run exited 0 but its log shows no model loaded and no token evaluated",
                    rel,
                    "unverifiable",
                    "device",
                    hint="is this a llama.cpp runner? its log lacks `loaded meta data with … tensors` "
                    "and `eval time =`",
                    evidence=done.tail,
                )
            )
        else:
            checks.append(
                Check(
                    "runtime.device",
                    expected_dev,
                    f"no {profile.name} device on this machine (listed: {seen})",
                    rel,
                    "unverifiable",
                    "device",
                    hint="verify on a machine with the device",
                )
            )

    # --- the run's verdict ---
    evidence = done.tail if not ran else ()
    run_expected = "one token generated with -ngl 99, exit 0"
    # without a device the run falls back to the CPU: it must still not crash, hang or flood
    no_device = device_class == "none" and checks[-1].status == "unverifiable" and not _broken(done)
    if device_class == "paravirtual" or no_device:
        checks.append(
            Check(
                "runtime.one-token",
                run_expected,
                how,
                rel,
                "unverifiable",
                "device",
                hint=checks[-1].found,
                evidence=evidence,
            )
        )
    else:
        checks.append(
            Check(
                "runtime.one-token",
                run_expected,
                how,
                rel,
                "pass" if ran else "fail",
                "device",
                hint=""
                if ran
                else _broken_hint(done)
                if _broken(done)
                else "the build fails on a tiny model: see the log lines "
                "(`llama-toolchain doctor` classifies them)",
                evidence=evidence,
            )
        )
        splits = sorted({m["backend"] for m in map(tree.SCHED_SPLIT.search, lines) if m})
        if ran and device_class == "real":
            ours_ran = [b for b in splits if b.startswith(profile.device_prefixes)]
            if not splits:
                checks.append(
                    Check(
                        "runtime.graph",
                        f"graph splits run on {'/'.join(profile.device_prefixes)}",
                        "this tree's log shows no graph splits (GGML_SCHED_DEBUG)",
                        rel,
                        "unverifiable",
                        "device",
                        hint="the scheduler's split lines are not printed by this tree",
                    )
                )
            else:
                checks.append(
                    Check(
                        "runtime.graph",
                        f"graph splits run on {'/'.join(profile.device_prefixes)}",
                        f"splits ran on {', '.join(splits)}",
                        rel,
                        "pass" if ours_ran else "fail",
                        "device",
                        hint=""
                        if ours_ran
                        else "the device is registered but the scheduler "
                        "gave it no work: its supports_op rejected every op of the probe model",
                    )
                )
        off = [m for m in map(_OFFLOADED.search, lines) if m]
        if profile.device.offloads_layers and ran and device_class == "real":
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
    return RuntimeResult(tuple(checks), tuple(devices), device_class, tuple(runs))
