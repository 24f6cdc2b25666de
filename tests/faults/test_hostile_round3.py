"""Hostile input, round three (issue #32): each class's reproduction, through the command line
where the issue reproduced it. Inputs are written from the formats' own definitions (GGUF from
tests/doctor/ggufbytes.py, ops files from the tree's own enums), never users' text."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.doctor import ggufbytes as g
from tests.signalled import start, toolchain
from toolchain.config import Settings


def run_cli(
    settings: Settings, *args: str, github: bool = False, cwd: Path | None = None, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOOLCHAIN_CACHE": str(settings.cache_dir), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_ACTIONS", None)
    if github:
        env["GITHUB_ACTIONS"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "toolchain", *args],
        cwd=cwd or settings.project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=stdin,
    )


def _workflow_commands(text: str) -> list[str]:
    """Lines the GitHub Actions runner would run as workflow commands (it trims leading space)."""
    return [line for line in text.splitlines() if line.lstrip().startswith(("::", "##["))]


# --- A: hostile text never forges a workflow command or a console line of ours -------------------
FORGED = "evil\n::error title=pwn::owned\n  ::add-mask::x\n✓ doctor: no problem found"


def test_a_gguf_name_cannot_forge_a_workflow_command(settings: Settings) -> None:
    path = settings.project_root / "x.gguf"
    path.write_bytes(g.model(extra=[g.kv("general.name", g.STR, FORGED)]))
    done = run_cli(settings, "doctor", "--gguf", str(path), github=True)
    output = done.stdout + done.stderr
    ours = _workflow_commands(output)
    assert all(not ("pwn" in line or "add-mask" in line) for line in ours), output
    assert "\\x3a:error title=pwn::owned" in output, output  # the name is still shown, escaped
    assert [line for line in output.splitlines() if line.startswith("✓ doctor")] == [
        "✓ doctor: no problem found"
    ], output  # ours, once: the name's forged copy is shown escaped


def test_a_path_with_a_newline_cannot_forge_a_workflow_command(settings: Settings) -> None:
    hostile = settings.project_root / "b\n::error title=pwn::owned"
    (hostile / "bin").mkdir(parents=True)
    done = run_cli(settings, "verify", str(hostile), "--no-runtime", github=True)
    output = done.stdout + done.stderr
    assert not [
        line for line in _workflow_commands(output) if "pwn" in line and not line.startswith("::error title=")
    ], output
    assert "\\x3a:error title=pwn" in output or "%0A%3A" in output or "%0A::error" in output, output


# --- K, J: coverage merge with a baseline; merged reports valid and inert -------------------------
BASELINE = ROOT / "fixtures" / "coverage" / "baseline-0.3.20.json"  # a real run of 0.3.20 (its README)


def _shard(tmp: Path, cells: slice, **changes: object) -> Path:
    data = json.loads(BASELINE.read_text())
    data["cells"] = data["cells"][cells]
    for cell in data["cells"]:
        cell.update(changes)
    path = tmp / "shard.json"
    path.write_text(json.dumps(data))
    return path


def test_k_a_baseline_with_cells_missing_is_never_safe_to_bump(settings: Settings, tmp_path: Path) -> None:
    small = _shard(tmp_path, slice(0, 2))
    done = run_cli(
        settings, "coverage", "merge", str(small), "--baseline", str(BASELINE), "--fail-on", "none"
    )
    report = json.loads((settings.work_dir / "reports" / "coverage.json").read_text())
    assert report["baseline"]["safe_to_bump"] is False, report["baseline"]
    assert "6 of the baseline's 8 cells were not compared" in report["baseline"]["verdict"]
    assert done.returncode == 50 and "NOT safe to bump" in done.stderr, done.stderr


def test_k_the_whole_baseline_compared_is_still_safe(settings: Settings, tmp_path: Path) -> None:
    whole = _shard(tmp_path, slice(None))
    run_cli(settings, "coverage", "merge", str(whole), "--baseline", str(BASELINE), "--fail-on", "none")
    report = json.loads((settings.work_dir / "reports" / "coverage.json").read_text())
    assert report["baseline"]["safe_to_bump"] is True and not report["baseline"]["missing_cells"]


@pytest.mark.parametrize("number", ["1e999", "NaN", "-Infinity"])
def test_j_a_shard_with_a_number_json_cannot_hold_is_refused(
    settings: Settings, tmp_path: Path, number: str
) -> None:
    path = _shard(tmp_path, slice(0, 2))
    path.write_text(path.read_text().replace('"seconds": ', f'"seconds": {number}, "x": ', 1))
    done = run_cli(settings, "coverage", "merge", str(path), "--fail-on", "none")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "finite" in done.stderr or "NaN / Infinity" in done.stderr, done.stderr
    out = settings.work_dir / "reports" / "coverage.json"
    assert not out.exists() or json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))


def test_j_a_deeply_nested_shard_is_refused_cleanly(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    done = run_cli(settings, "coverage", "merge", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "nested deeper" in done.stderr, (
        done.stderr
    )


def test_j_hostile_cell_text_keeps_junit_well_formed_and_markdown_inert(
    settings: Settings, tmp_path: Path
) -> None:
    from xml.etree import ElementTree as ET

    data = json.loads(BASELINE.read_text())
    data["cells"] = data["cells"][:2]
    data["cells"][0]["id"] += "\x01\x1b[2J"
    data["cells"][0]["reason"] = "<script>alert(1)</script>\n# Verdict: safe <img src=x onerror=alert(1)>"
    path = tmp_path / "shard.json"
    path.write_text(json.dumps(data))
    done = run_cli(settings, "coverage", "merge", str(path), "--fail-on", "none")
    reports = settings.work_dir / "reports"
    assert "Traceback" not in done.stderr, done.stderr
    ET.fromstring((reports / "junit-coverage.xml").read_text())  # well-formed
    md = (reports / "coverage.md").read_text()
    assert "<script" not in md and "<img" not in md and "&lt;script>" in md
    assert not any(line.startswith("# Verdict") for line in md.splitlines())


# --- F, E: ops files parsed and range-checked in Python before any native program ------------------
TINY_OPS = ROOT / "fixtures" / "oracle" / "tiny-llama-0.3.36.ops.txt"  # the 0.3.36 exporter's output


def _tiny_line() -> list[str]:
    return TINY_OPS.read_text().splitlines()[0].split()


def _ops(tmp: Path, text: str) -> Path:
    path = tmp / "ops.txt"
    path.write_text(text)
    return path


def test_f_the_real_export_passes_unchanged(tree_0336: Path) -> None:
    from toolchain.core.opsinput import checked_lines

    lines = checked_lines(TINY_OPS, tree_0336)
    original = [ln.split() for ln in TINY_OPS.read_text().splitlines() if ln.strip()]
    assert [ln.split() for ln in lines] == original and len(lines) == 26


def test_f_a_real_recurrent_models_export_with_empty_views_passes_unchanged(tree_0336: Path) -> None:
    """The tree's own exporter writes zero-sized tensors (a recurrent model's state views at one
    token: ``ne[1] = 0``); refusing ne 0 dropped 16 of the 102 models from the Metal columns."""
    from toolchain.core.opsinput import checked_lines

    real = ROOT / "fixtures" / "oracle" / "tiny-mamba-0.3.36.ops.txt"  # test-export-graph-ops, 0.3.36
    original = [ln.split() for ln in real.read_text().splitlines() if ln.strip()]
    assert any(fields[3] == "0" for fields in original)  # a result with ne[1] = 0
    assert [ln.split() for ln in checked_lines(real, tree_0336)] == original


def _hostile_lines() -> dict[str, str]:
    t = _tiny_line()  # ADD f32[64,1,1,1] of two sources: op type ne*4 n_params p*16 n_src …
    n_params = int(t[6])
    n_src_at = 7 + n_params

    def with_(pos: int, value: str) -> str:
        return " ".join([*t[:pos], value, *t[pos + 1 :]])

    return {
        "op id past the enum": with_(0, "9999"),
        "type id past the enum": with_(1, "43"),
        "NaN op param": with_(7, "nan"),
        "negative ne": with_(3, "-64"),
        "n_src 1e9": with_(n_src_at, "1000000000"),
        "non-ASCII digits": with_(2, "٦٤"),
        "too many op params": with_(6, "17"),
        "cut short": " ".join(t[:5]),
    }


@pytest.mark.parametrize("case", list(_hostile_lines()))
def test_f_hostile_ops_lines_are_refused_naming_the_line(tree_0336: Path, tmp_path: Path, case: str) -> None:
    from toolchain.core.opsinput import checked_lines
    from toolchain.errors import UsageError

    path = _ops(tmp_path, "\n" + TINY_OPS.read_text().splitlines()[1] + "\n" + _hostile_lines()[case] + "\n")
    with pytest.raises(UsageError, match=r"line 3: "):
        checked_lines(path, tree_0336)


def test_f_blank_lines_only_is_nothing_to_predict(tree_0336: Path, tmp_path: Path) -> None:
    from toolchain.core.opsinput import checked_lines
    from toolchain.errors import NothingToPredictError

    with pytest.raises(NothingToPredictError):
        checked_lines(_ops(tmp_path, "\n\n  \n"), tree_0336)


def test_e_an_ops_file_too_large_is_refused_before_it_is_read_whole(tree_0336: Path, tmp_path: Path) -> None:
    from toolchain.core.opsinput import MAX_OPS_BYTES, checked_lines
    from toolchain.errors import UsageError

    line = TINY_OPS.read_text().splitlines()[0] + "\n"
    path = _ops(tmp_path, line * (MAX_OPS_BYTES // len(line) + 2))
    with pytest.raises(UsageError, match="more than"):
        checked_lines(path, tree_0336)


@pytest.mark.parametrize(
    ("command", "text", "code"),
    [
        (("oracle", "predict"), "", 74),  # M: an empty ops file is nothing to predict, never ✓
        (("oracle", "predict"), "\n\n\n", 74),  # F: blank lines reached the probe (GGML_ASSERT)
        (("dryrun", "run"), "1 2 3\n", 2),  # F: "keeps ending at case 2000"
        (("oracle", "predict"), "9999 0 1 1 1 1 0 0 -\n", 2),  # F: op id out of range (SIGSEGV)
    ],
    ids=["oracle-empty", "oracle-blank-lines", "dryrun-cut-line", "oracle-op-out-of-range"],
)
def test_f_m_ops_files_are_checked_before_any_native_program(
    settings: Settings, tree_0336: Path, tmp_path: Path, command: tuple[str, ...], text: str, code: int
) -> None:
    path = _ops(tmp_path, text)
    done = run_cli(settings, *command, "--ops", str(path), "--tree", str(tree_0336))
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "✓" not in done.stderr
    assert not (settings.cache_dir / "oracle").exists() and not (settings.cache_dir / "dryrun").exists()


# --- M: doctor never ✓ when nothing was recognised --------------------------------------------------
@pytest.mark.parametrize(
    "content", [b"", b"hello world\n", b"a" * (8 << 20)], ids=["empty", "hello", "8MiB-of-a"]
)
def test_m_doctor_on_a_log_with_no_llama_cpp_line_is_its_own_answer(
    settings: Settings, content: bytes
) -> None:
    log = settings.project_root / "x.log"
    log.write_bytes(content)
    done = run_cli(settings, "doctor", str(log), "--no-system")
    assert done.returncode == 61, done.stderr
    assert "✓" not in done.stderr and "no llama.cpp log lines found" in done.stderr
    report = json.loads((settings.work_dir / "reports" / "doctor.json").read_text())
    assert report["log"]["recognised"] is False and report["complete"] is True


def test_m_a_real_llama_cpp_log_is_recognised(settings: Settings) -> None:
    log = ROOT / "fixtures" / "logs" / "metal-real.txt"  # a real Metal run's log (fixtures/logs)
    done = run_cli(settings, "doctor", str(log), "--no-system")
    assert done.returncode in (0, 60), done.stderr
    assert (
        json.loads((settings.work_dir / "reports" / "doctor.json").read_text())["log"]["recognised"] is True
    )


# --- C, O: option types refuse nonsense at parse time; paths against the user's cwd --------------
@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--timeout", "0"],
        ["verify", "--timeout", "nan"],
        ["verify", "--timeout", "inf"],
        ["verify", "--timeout", "١٢"],  # Arabic-Indic digits: float() takes them
        ["verify", "--deployment-target", "abc"],
        ["doctor", "run", "--timeout", "-1", "--", "true"],
        ["coverage", "--jobs", "0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_c_nonsense_option_values_are_refused_at_parse_time(settings: Settings, argv: list[str]) -> None:
    done = run_cli(settings, *argv)
    assert done.returncode == 2 and "error: argument" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_o_path_options_are_resolved_against_the_cwd_at_parse_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolchain.cli import build_parser

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["convert", "--from-config", "cfg.json", "--build-dir", ".toolchain/build/x/"]
    )
    assert args.from_config == tmp_path / "cfg.json" and args.build_dir == tmp_path / ".toolchain/build/x"


def test_o_a_loader_that_cannot_start_is_our_error_never_the_models_nor_kept(tmp_path: Path) -> None:
    from toolchain.convert.checked import _load
    from toolchain.convert.load import Loader
    from toolchain.convert.results import ConvertResult

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(g.model())
    loader = Loader(Path("relative/bin/test-export-graph-ops"), "exporter", "k")
    result = _load(ConvertResult("llama", "LlamaForCausalLM", "f16", "pass", gguf), gguf, loader)
    assert (result.status, result.cause, result.whose) == ("error", "harness", "harness"), result
    assert "could not start" in result.error


def _held_doctor_run(
    settings: Settings, fifo: Path
) -> tuple[subprocess.Popen[str], threading.Thread, list[int]]:
    """``doctor run`` of a command that says hello, then blocks reading ``fifo`` until the test
    writes to it; the thread opens the FIFO's writing end (``opened``) once the command reads."""
    os.mkfifo(fifo)
    child = f"print('load_tensors: offloaded 1/2 layers to GPU', flush=True); open({str(fifo)!r}).read()"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    proc = start(
        toolchain("doctor", "--no-system", "run", "--", sys.executable, "-c", child),
        cwd=settings.project_root,
        env=env,
    )
    opened: list[int] = []
    rendezvous = threading.Thread(target=lambda: opened.append(os.open(fifo, os.O_WRONLY)), daemon=True)
    rendezvous.start()
    return proc, rendezvous, opened


# --- H: SIGTERM / SIGHUP handled like Ctrl-C --------------------------------------------------------
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"])
def test_h_sigterm_and_sighup_end_the_childs_group_and_mark_the_report(
    settings: Settings, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    fifo = tmp_path / "hold"
    # the test never writes to the FIFO: the command blocks until the signal
    proc, rendezvous, opened = _held_doctor_run(settings, fifo)
    try:
        rendezvous.join(timeout=120)
        assert opened, "the command never started"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == code, stderr
    finally:
        proc.kill()
        proc.wait()
        for fd in opened:
            os.close(fd)
    assert "Traceback" not in stderr
    data = json.loads((settings.work_dir / "reports" / "doctor.json").read_text())
    assert data["complete"] is False and data["run"]["interrupted"] is True
    left = subprocess.run(["pgrep", "-f", str(fifo)], capture_output=True, text=True).stdout.split()
    assert not left, f"the command was left behind: {left}"


# --- G: a lock per work dir for every command writing scratch files ------------------------------
def test_g_a_second_doctor_run_on_the_work_dir_is_refused_not_mixed(
    settings: Settings, tmp_path: Path
) -> None:
    first, rendezvous, opened = _held_doctor_run(settings, tmp_path / "hold")
    try:
        rendezvous.join(timeout=120)
        assert opened, "the first run's command never started"
        second = run_cli(
            settings,
            "doctor",
            "--no-system",
            "run",
            "--",
            sys.executable,
            "-c",
            "print('GGML_ASSERT(x) failed')",
        )
        assert second.returncode == 5 and "in use by another llama-toolchain process" in second.stderr, (
            second.stderr
        )
    finally:
        for fd in opened:
            os.write(fd, b"done")
            os.close(fd)
        first.communicate(timeout=60)
    log = (settings.work_dir / "reports" / "doctor-run.log").read_text()
    assert "GGML_ASSERT" not in log  # the second run's output never reached the first's log


# --- D: tracebacks become clean errors ----------------------------------------------------------------
def test_d_deeply_nested_pyproject_and_lock_are_config_errors(settings: Settings) -> None:
    deep = "[" * 5000 + "]" * 5000
    (settings.project_root / "pyproject.toml").write_text(f"[tool.llama-toolchain]\nx = {deep}\n")
    done = run_cli(settings, "verify", "--no-runtime")
    assert done.returncode == 3 and "nested too deeply" in done.stderr and "Traceback" not in done.stderr
    (settings.project_root / "pyproject.toml").unlink()
    (settings.project_root / "llama.lock").write_text(f"schema_version = 1\nx = {deep}\n")
    done = run_cli(settings, "fetch", "--offline")
    assert done.returncode == 3 and "nested too deeply" in done.stderr and "Traceback" not in done.stderr, (
        done.stderr
    )


def test_d_unreadable_regular_file_and_closed_stdin(settings: Settings) -> None:
    done = run_cli(settings, "doctor", "/proc/self/mem", "--no-system")
    assert done.returncode == 2 and "Input/output error" in done.stderr and "Traceback" not in done.stderr
    report = json.loads((settings.work_dir / "reports" / "doctor.json").read_text())
    assert report["interrupted_during"] != "start" and "doctor stopped" in report["notes"][0]
    closed = subprocess.run(
        [sys.executable, "-m", "toolchain", "doctor", "-", "--no-system"],
        cwd=settings.project_root,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOOLCHAIN_CACHE": str(settings.cache_dir)},
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.close(0),
    )
    assert closed.returncode == 2 and "standard input is closed" in closed.stderr, closed.stderr


def test_d_invalid_utf8_ops_file_is_a_usage_error(tree_0336: Path, tmp_path: Path) -> None:
    from toolchain.core.opsinput import checked_lines
    from toolchain.errors import UsageError

    path = tmp_path / "ops.txt"
    path.write_bytes(b"\xff\xfe 1 2\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        checked_lines(path, tree_0336)


# --- N: every lock field is one printable line (the shipped llama.lock, edited) --------------------
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('version = "0.3.36"', 'version = "0.3.36\\n[evil]"'),
        ('version = "0.3.36"', 'version = "not a version"'),
        ('ref = "0.3.36"', 'ref = "0.3.36\\u001b[2J"'),
        ('filename = "llama_cpp_python-0.3.36.tar.gz"', 'filename = "../../x.tar.gz"'),
    ],
    ids=["newline-in-version", "not-a-version", "escape-in-ref", "path-as-filename"],
)
def test_n_a_lock_field_that_is_not_one_printable_line_is_refused(tmp_path: Path, old: str, new: str) -> None:
    from toolchain.errors import ConfigError
    from toolchain.source.lock import read_lock

    text = (ROOT / "llama.lock").read_text()
    assert old in text
    path = tmp_path / "llama.lock"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as info:
        read_lock(path)
    assert info.value.exit_code == 3 and "[source" in info.value.message


# --- L: configs that passed validation but crashed the model worker are refused up front ----------
@pytest.mark.parametrize(
    "change",
    [
        {"__class__": "x"},
        {"to_dict": 1},
        {"text_config": {"auto_map": {"AutoConfig": "x.Config"}}},
        {"rope_scaling": {"rope_type": "linear", "factor": 1e308}},
    ],
    ids=["dunder-class", "to_dict", "nested-auto_map", "rope-factor-1e308"],
)
def test_l_config_keys_the_worker_cannot_take_are_model_errors(
    tmp_path: Path, change: dict[str, object]
) -> None:
    from tests.faults.test_input_properties import BASE
    from toolchain.errors import ModelError
    from toolchain.models.config_input import read_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({**BASE, **change}))
    with pytest.raises(ModelError) as info:
        read_config(path)
    assert info.value.exit_code == 40 and next(iter(change)) in info.value.message


def test_l_the_real_configs_still_pass() -> None:
    from toolchain.models.config_input import read_config

    for path in sorted((ROOT / "fixtures" / "configs").glob("*.json")):
        read_config(path)  # real Hugging Face configs (fixtures/configs/README.md)


# --- I: a full disk leaves the old report set whole --------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only: CI runs as root); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_i_coverage_merge_on_a_full_disk_keeps_the_old_set(
    settings: Settings, tmp_path: Path, small_disk: Path
) -> None:
    project = small_disk / "project"
    project.mkdir()
    moved = Settings(**{**settings.__dict__, "project_root": project, "work_dir": project / ".toolchain"})
    first = run_cli(
        moved, "coverage", "merge", str(_shard(tmp_path, slice(0, 1))), "--fail-on", "none", cwd=project
    )
    assert first.returncode == 0, first.stderr
    reports = project / ".toolchain" / "reports"
    before = {p.name: p.read_bytes() for p in reports.iterdir()}
    (tmp_path / "big").mkdir()
    big = _shard(tmp_path / "big", slice(None))
    elsewhere = run_cli(settings, "coverage", "merge", str(big), "--fail-on", "none")
    assert elsewhere.returncode == 0, elsewhere.stderr
    new_json = (settings.work_dir / "reports" / "coverage.json").stat().st_size
    free = os.statvfs(small_disk)
    # room for the new coverage.json, not for the rest of the set: the case that mixed sets
    (small_disk / "fill").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - new_json - 8 * 1024))
    second = run_cli(
        moved,
        "coverage",
        "merge",
        str(big),
        "--fail-on",
        "none",
        cwd=project,
    )
    assert second.returncode == 23 and "Traceback" not in second.stderr, second.stderr
    after = {p.name: p.read_bytes() for p in reports.iterdir()}
    assert after == before  # all old: no new json beside an old html, no temporaries left


def test_i_doctor_run_on_a_full_disk_is_disk_full_not_a_hang(settings: Settings, small_disk: Path) -> None:
    project = small_disk / "project"
    project.mkdir()
    moved = Settings(**{**settings.__dict__, "project_root": project, "work_dir": project / ".toolchain"})
    (project / ".toolchain" / "reports").mkdir(parents=True)
    free = os.statvfs(small_disk)
    # room for doctor.json's placeholder, not for the command's 4 MiB of output
    (small_disk / "fill").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 128 * 1024))
    flood = "import sys; sys.stdout.write('load_tensors: x\\n' * 300000)"
    done = run_cli(
        moved,
        "doctor",
        "--no-system",
        "run",
        "--timeout",
        "120",
        "--",
        sys.executable,
        "-c",
        flood,
        cwd=project,
    )
    assert done.returncode == 23 and "Traceback" not in done.stderr, done.stderr


# --- E: memory out of proportion ----------------------------------------------------------------------
def test_e_a_3gb_cmake_cache_is_read_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from toolchain.coverage.engine.opsfile import tree_of_build
    from toolchain.verify.inputs import read_cmake_cache

    cache = tmp_path / "CMakeCache.txt"
    with cache.open("wb") as fh:  # sparse: 3 GB of NULs after one real line, no disk used
        fh.write(b"CMAKE_HOME_DIRECTORY:INTERNAL=/src\n")
        fh.truncate(3 << 30)
    tracemalloc.start()
    try:
        assert read_cmake_cache(cache)["CMAKE_HOME_DIRECTORY"] == "/src"
        assert tree_of_build(tmp_path) == Path("/src")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300 << 20, peak


def _ar_header(name: str, size: int) -> bytes:
    """A GNU ``ar`` member header as <ar.h> defines it: name/ (16), date (12), uid (6), gid (6),
    mode (8), size (10), then the two bytes ` and newline."""
    return f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{size:<10}`\n".encode()


def test_e_a_3gb_archive_is_read_member_by_member(settings: Settings, tmp_path: Path) -> None:
    """A static library with a 3 GB data member (sparse: no disk used) before a real object (the
    system C library's crt1.o, as the compiler finds it): the object is read, the 3 GB never are;
    a 3 GB member that claims to be an object is refused by name, unread."""
    import tracemalloc

    from toolchain.verify.binaries import binary_problem, read_binary

    found = subprocess.run(["cc", "-print-file-name=crt1.o"], capture_output=True, text=True, check=True)
    obj = Path(found.stdout.strip()).resolve()
    body = obj.read_bytes()
    assert body[:4] == b"\x7fELF", obj
    big = 3 << 30
    lib = tmp_path / "libbig.a"
    with lib.open("wb") as fh:
        fh.write(b"!<arch>\n" + _ar_header("big.bin", big))
        fh.seek(8 + 60 + big)
        fh.write(_ar_header("crt1.o", len(body)) + body + b"\n" * (len(body) & 1))
    huge = tmp_path / "libhuge.a"
    with huge.open("wb") as fh:
        fh.write(b"!<arch>\n" + _ar_header("huge.o", big) + b"\x7fELF")
        fh.truncate(8 + 60 + big)
    tracemalloc.start()
    try:
        assert binary_problem(lib) == ""
        slices = read_binary(lib)
        problem = binary_problem(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(s.member, s.format, s.kind) for s in slices] == [("crt1.o", "elf", "object")]
    assert "_start" in slices[0].defined  # crt1.o defines the program entry point
    assert problem.startswith("archive member huge.o: an object of 3221225472 bytes"), problem
    assert peak < 64 << 20, peak

    def one_gib() -> None:  # the whole process, LIEF's native heap included
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "TOOLCHAIN_CACHE": str(settings.cache_dir)}
    verdicts = {}
    for path in (lib, huge):
        args = ["verify", str(path), "--profile", "cpu", "--no-runtime", "--work-dir", str(tmp_path / "w")]
        done = subprocess.run(
            [sys.executable, "-m", "toolchain", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=one_gib,
        )
        assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr, done.stderr
        verdicts[path.name] = (done.returncode, " ".join(done.stderr.split()))
    # crt1.o is an object, not a program or library: the archive is read, and that is its verdict
    assert (
        verdicts["libbig.a"][0] == 30 and "no programs or libraries among libbig.a" in verdicts["libbig.a"][1]
    )
    # the 3 GB object member is not read: "not a readable binary" (exit 32), naming it
    assert (
        verdicts["libhuge.a"][0] == 32 and "huge.o: an object of 3221225472 bytes" in verdicts["libhuge.a"][1]
    )


def test_e_a_huge_message_is_not_echoed_whole(capsys: pytest.CaptureFixture[str]) -> None:
    from toolchain.log import MAX_MESSAGE, Log

    for github in (False, True):
        Log(github=github).error("x" * (2 << 20), title="model spec")
    err = capsys.readouterr().err
    assert len(err) < 4 * MAX_MESSAGE and "more characters not shown" in err


def test_e_40k_available_lines_are_read_in_one_pass(tree_0336: Path, tmp_path: Path) -> None:
    """The 0.3.36 tree's ggml-metal-device.m with 40,000 brace-less ``@available`` lines before the
    family test: each used to be scanned to the end of the file (> 300 s); now one pass (the
    same conditions as the unedited tree are still found)."""
    import shutil
    import time

    from toolchain.verify.tensor_rules import DEVICE_M, read_tensor_rules

    tree = tmp_path / "tree"
    (tree / DEVICE_M).parent.mkdir(parents=True)
    shutil.copy(tree_0336 / DEVICE_M, tree / DEVICE_M)
    lines = (tree / DEVICE_M).read_text().splitlines(keepends=True)
    filler = ["// if (@available(macOS 99.0, *)) x;\n"] * 40_000
    (tree / DEVICE_M).write_text("".join([lines[0], *filler, *lines[1:]]))
    start = time.monotonic()
    rules = read_tensor_rules(tree)
    assert time.monotonic() - start < 30 and rules.has_tensor_api
    assert {c.what for c in rules.conditions} >= {"family", "device-name"}


def test_e_a_config_whose_derived_head_width_no_model_has_is_refused_before_anything_is_made() -> None:
    """hidden 16777216 with one head passed every key's bound (each within MAX_SHRUNK) and the shrink
    kept the head width (it decides the kernels): the tiny model asked for 32 GiB. A head is bounded
    like an explicit head_dim (MAX_KEPT), whether the config states it or it is hidden / heads."""
    from toolchain.errors import ModelError
    from toolchain.models.shrink import shrink_config
    from toolchain.models.spec import load_specs

    known = load_specs()
    real = json.loads((ROOT / "fixtures" / "configs" / "llama-3.1-8b.json").read_text())
    spec, _ = shrink_config(real, known)  # the real one still shrinks
    assert spec.name
    hostile = {**real, "hidden_size": 16777216, "num_attention_heads": 1, "num_key_value_heads": 1}
    with pytest.raises(ModelError, match="head"):
        shrink_config(hostile, known)


def test_l_a_model_the_worker_cannot_make_leaves_no_partial_folder(tmp_path: Path) -> None:
    """A job that fails after the worker made its ``.partial`` folder (here: a tokenizer recipe it
    does not know) left that folder in the cache for good."""
    from toolchain.models.worker import make_model

    out = tmp_path / "models" / "m-0123"
    job = {
        "out_dir": str(out),
        "tree": str(tmp_path),
        "tokenizer": "bogus:1",
        "tokenizer_cache": str(tmp_path),
    }
    with pytest.raises(ValueError, match="unknown tokenizer recipe"):
        make_model(job)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == []
