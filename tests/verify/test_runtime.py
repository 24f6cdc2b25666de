"""Run-time verification: device-line parsing, classes, drift guard against the tree, crash/hang."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import pytest

from toolchain.profiles import PROFILES, BackendProfile, PlatformInfo
from toolchain.verify.runtime import (
    RuntimeResult,
    classify,
    parse_device_list,
    parse_metal_log,
    runtime_checks,
)

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "fixtures" / "logs"
METAL = PROFILES["metal"]


def _lines(name: str) -> list[str]:
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


# --- parsing and classes ------------------------------------------------------------------------------
def test_real_device_0336_format() -> None:
    (dev,) = parse_metal_log(_lines("metal-real.txt"))
    assert (dev.name, dev.description, dev.gpu_family) == ("MTL0", "Apple M2 Max", 8)
    assert dev.gpu_families == ("MTLGPUFamilyApple8", "MTLGPUFamilyMetal4")
    assert (dev.simdgroup_reduction, dev.simdgroup_mm, dev.unified_memory, dev.bfloat, dev.tensor) == (
        True,
        True,
        True,
        True,
        False,
    )
    assert dev.max_working_set_mb == pytest.approx(77309.41)
    dev = classify(dev, METAL)
    assert dev.device_class == "real", dev.class_reason


def test_real_device_0320_format_takes_the_name_from_the_listing() -> None:
    (dev,) = parse_metal_log(_lines("metal-real-0320.txt"))
    assert (dev.name, dev.description, dev.gpu_family) == ("MTL0", "", 9)
    assert classify(dev, METAL).device_class == "real"
    listed = parse_device_list(_lines("metal-list-devices.txt"))
    assert [(d.name, d.description, d.total_mib) for d in listed] == [
        ("MTL0", "Apple M2 Max", 73728),
        ("BLAS", "Accelerate", 0),
    ]


def test_old_ggml_metal_init_format() -> None:
    (dev,) = parse_metal_log(_lines("metal-old-ggml_metal_init.txt"))
    assert (dev.name, dev.description, dev.gpu_family) == ("Apple M1 Pro", "Apple M1 Pro", 7)
    assert (dev.simdgroup_reduction, dev.simdgroup_mm, dev.unified_memory) == (True, True, True)
    assert dev.bfloat is None  # not printed by that era
    assert dev.max_working_set_mb == pytest.approx(22906.50)
    assert classify(dev, METAL).device_class == "real"


def test_paravirtual_device() -> None:
    (dev,) = parse_metal_log(_lines("metal-paravirtual.txt"))
    dev = classify(dev, METAL)
    assert dev.device_class == "paravirtual"
    assert "no simdgroup reduction" in dev.class_reason and "Apple5 < Apple7" in dev.class_reason


def test_no_device() -> None:
    assert parse_metal_log(_lines("metal-list-devices-none.txt")) == []
    assert parse_device_list(_lines("metal-list-devices-none.txt")) == []


# --- drift guard: every fixture line still comes from a format string of the tree ------------------------
_CONV = re.compile(r"%(?:%|[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t)?[sdiufgxXc])")


def _format_regex(fmt: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _CONV.finditer(fmt):
        out.append(re.escape(fmt[pos : m.start()]))
        conv = m.group(0)
        if conv == "%%":
            out.append("%")
        elif conv.endswith("s"):
            out.append(r"\s*.*?")
        elif conv[-1] in "fg":
            out.append(r"\s*-?[\d.]+")
        else:
            out.append(r"\s*-?\d+")
        pos = m.end()
    out.append(re.escape(fmt[pos:]))
    return re.compile("".join(out) + r"\s*")


def _formats(files: list[Path]) -> list[re.Pattern[str]]:
    pats = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        for lit in re.findall(r'"((?:[^"\\\n]|\\.)*)\\n"', text):
            # formats that are (almost) all conversions, like "%s\n", would match any line
            if re.search(r"[A-Za-z]{3,}", _CONV.sub("", lit)):
                pats.append(_format_regex(lit.replace('\\"', '"')))
    return pats


def _check_lines(lines: list[str], pats: list[re.Pattern[str]]) -> list[str]:
    return [line for line in lines if line.strip() and not any(p.fullmatch(line) for p in pats)]


LOG_SOURCES = (
    "ggml/src/ggml-metal/ggml-metal-device.m",
    "ggml/src/ggml-metal/ggml-metal.cpp",
    "src/llama-model.cpp",
    "src/llama.cpp",
)


def test_metal_fixture_lines_come_from_the_0336_tree(tree_0336: Path) -> None:
    pats = _formats([tree_0336 / f for f in LOG_SOURCES])
    for name in ("metal-real.txt", "metal-paravirtual.txt"):
        assert _check_lines(_lines(name), pats) == [], f"{name}: upstream changed these log formats"


def test_0320_fixture_lines_come_from_the_0320_tree(tree_0320: Path) -> None:
    pats = _formats([tree_0320 / f for f in LOG_SOURCES[:2]])
    assert _check_lines(_lines("metal-real-0320.txt"), pats) == []


def test_device_listing_format_in_both_trees(tree_0336: Path, tree_0320: Path) -> None:
    for tree in (tree_0336, tree_0320):
        arg = (tree / "common" / "arg.cpp").read_text(encoding="utf-8")
        assert 'printf("Available devices:\\n");' in arg
        assert '"  %s: %s (%zu MiB, %zu MiB free)\\n"' in arg
        pats = _formats([tree / "common" / "arg.cpp"])
        assert _check_lines(_lines("metal-list-devices.txt"), pats) == []


def test_old_format_fixture_matches_the_recorded_old_formats() -> None:
    # ggml-metal.m of the ggml_metal_init era is in neither tree: its formats are recorded
    pats = [_format_regex(f) for f in _lines("metal-old-formats.txt")]
    assert _check_lines(_lines("metal-old-ggml_metal_init.txt"), pats) == []


def test_static_expectations_match_the_tree(tree_0336: Path, tree_0320: Path) -> None:
    """The section, symbol names and module naming verify looks for are what the trees generate."""
    seg, sect = METAL.expectations.embedded_section or ("", "")
    new = (tree_0336 / "ggml/src/ggml-metal/CMakeLists.txt").read_text(encoding="utf-8")
    old = (tree_0320 / "ggml/src/ggml-metal/CMakeLists.txt").read_text(encoding="utf-8")
    for text in (new, old):
        assert f".section {seg},{sect}" in text
    assert "_ggml_metallib_${kind_sym}_start" in new and "_ggml_metallib_${kind_sym}_end" in new
    assert "_ggml_metallib_start" in old and "_ggml_metallib_end" in old
    for tree in (tree_0336, tree_0320):
        reg = (tree / "ggml/src/ggml-backend-reg.cpp").read_text(encoding="utf-8")
        assert 'fs::u8path(".so")' in reg and "ggml_backend_load_best" in reg
        for prof in ("metal", "cpu", "blas"):
            for sym in PROFILES[prof].expectations.registration_symbols:
                assert sym in reg
        impl = (tree / "ggml/include/ggml-backend.h").read_text(encoding="utf-8")
        assert "ggml_backend_init" in impl


# --- crash and hang become verdicts ------------------------------------------------------------------------
_FAKE = """#!{python}
import os, signal, sys, time
args = sys.argv[1:]
if args == ["--help"]:
    print("--list-devices    print list of available devices and exit")
    sys.exit(0)
if args == ["--list-devices"]:
    print("Available devices:")
    print("  BLAS: OpenBLAS (0 MiB, 0 MiB free)")
    sys.exit(0)
for i in range(40):
    print(f"log line {{i}}", flush=True)
{action}
"""


def _fake_runner(tmp_path: Path, action: str) -> Path:
    runner = tmp_path / "bin" / "llama-completion"
    runner.parent.mkdir()
    runner.write_text(_FAKE.format(python=sys.executable, action=action), encoding="utf-8")
    runner.chmod(runner.stat().st_mode | stat.S_IEXEC)
    return runner


LINUX = PlatformInfo(name="linux", machine="x86_64", release="")


def _run_fake(
    tmp_path: Path,
    action: str,
    profile: BackendProfile,
    timeout: float,
    plat: PlatformInfo = LINUX,
    binary_format: str = "elf",
) -> RuntimeResult:
    """runtime_checks on a fake llama-completion doing ``action`` with a (fake) model."""
    runner = _fake_runner(tmp_path, action)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    return runtime_checks(
        [runner],
        profile,
        binary_format=binary_format,
        archs=["x86_64" if binary_format == "elf" else "arm64"],
        timeout=timeout,
        model=model,
        log_dir=tmp_path / "logs",
        plat=plat,
    )


@pytest.mark.parametrize(
    ("action", "verdict"),
    [
        ("os.kill(os.getpid(), signal.SIGSEGV)", "crash: killed by SIGSEGV"),
        ("time.sleep(60)", "hang: no exit after 2 s (killed)"),
        ("sys.exit(3)", "exit status 3"),
    ],
)
def test_crash_and_hang_are_verdicts_with_the_last_lines(tmp_path: Path, action: str, verdict: str) -> None:
    rt = _run_fake(tmp_path, action, PROFILES["blas"], 2.0)
    run = next(c for c in rt.checks if c.name == "runtime.one-token")
    assert run.status == "fail" and run.found == verdict
    assert run.evidence and run.evidence[-1] == "log line 39"
    assert run.observed_by == "device"


def test_paravirtual_metal_run_is_unverifiable_not_failed(tmp_path: Path) -> None:
    log = (LOGS / "metal-paravirtual.txt").read_text(encoding="utf-8")
    action = f"sys.stderr.write({log!r}); os.kill(os.getpid(), signal.SIGABRT)"
    mac = PlatformInfo(name="darwin", machine="arm64", release="")
    rt = _run_fake(tmp_path, action, METAL, 10.0, mac, "macho")
    assert rt.device_class == "paravirtual"
    assert {c.status for c in rt.checks} == {"unverifiable"}, rt.checks
    assert rt.devices[0].simdgroup_reduction is False


def test_mach_o_runtime_on_linux_is_unverifiable() -> None:
    rt = runtime_checks([], METAL, binary_format="macho", archs=["arm64"], plat=LINUX)
    (check,) = rt.checks
    assert check.status == "unverifiable" and rt.device_class == "none"


@pytest.mark.parametrize(
    ("action", "verdict"),
    [
        ("os.kill(os.getpid(), signal.SIGSEGV)", "crash: killed by SIGSEGV"),
        ("os.kill(os.getpid(), signal.SIGILL)", "crash: killed by SIGILL"),
        ("time.sleep(60)", "hang: no exit after 2 s (killed)"),
    ],
)
def test_a_crash_without_a_device_to_blame_is_a_failure(tmp_path: Path, action: str, verdict: str) -> None:
    """cpu profile (no listed device): a one-token run that crashes or hangs is the build's fault."""
    rt = _run_fake(tmp_path, action, PROFILES["cpu"], 2.0)
    run = next(c for c in rt.checks if c.name == "runtime.one-token")
    assert run.status == "fail" and run.found == verdict, rt.checks
    if "SIGILL" in verdict:
        assert "GGML_NATIVE" in run.hint
    assert run.evidence and run.evidence[-1] == "log line 39"


def test_the_help_probe_has_the_runs_timeout(tmp_path: Path) -> None:
    runner = tmp_path / "bin" / "llama-completion"
    runner.parent.mkdir()
    runner.write_text(f"#!{sys.executable}\nimport time\nprint('usage', flush=True)\ntime.sleep(3600)\n")
    runner.chmod(0o755)
    rt = runtime_checks(
        [runner],
        PROFILES["blas"],
        binary_format="elf",
        archs=["x86_64"],
        timeout=1.0,
        plat=LINUX,
        log_dir=tmp_path / "logs",
    )
    (check,) = rt.checks
    assert (check.name, check.status, check.found) == (
        "runtime.help",
        "fail",
        "--help: hang: no exit after 1 s (killed)",
    )
    assert check.evidence == ("usage",) and rt.runs[0].timed_out


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("sys.exit(0)", "unverifiable"),
        (
            "print('llama_model_loader: loaded meta data with 30 key-value pairs and 12 tensors from m.gguf')",
            "pass",
        ),
    ],
    ids=["exit-0-and-nothing-else", "model-loaded"],
)
def test_an_exit_0_proves_the_cpu_device_only_with_a_model_loaded(
    tmp_path: Path, action: str, status: str
) -> None:
    rt = _run_fake(tmp_path, action, PROFILES["cpu"], 10.0)
    device = next(c for c in rt.checks if c.name == "runtime.device")
    assert device.status == status, rt.checks
