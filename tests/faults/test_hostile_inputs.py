"""Hostile input to ``verify``, ``coverage --baseline`` and ``models --from-config`` (issue #14, part 3),
through the command line, each with the common fault assertions (exit code, the problem named,
the next step, nothing outside the work dir changed, no process left behind, a time bound)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.models.configs import LLAMA_3_8B_SHAPE
from toolchain.config import Settings
from toolchain.errors import UnreadableBinaryError

TRACEBACK = "Traceback (most recent call last)"


def _input_dir(settings: Settings, name: str) -> Path:
    """A folder inside the work dir (so a runner left running there is found by ``fault``)."""
    path = settings.work_dir / "input" / name
    path.mkdir(parents=True)
    return path


def _c_program(dest: Path, body: str) -> Path:
    """A stripped C program (what a release build's runner looks like to verify)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = dest.with_suffix(".c")
    head = "".join(f"#include <{h}.h>\n" for h in ("fcntl", "signal", "stdio", "string", "unistd"))
    src.write_text(head + "int main(void) {\n" + body + "\n}\n")
    subprocess.run(["cc", "-O1", "-s", str(src), "-o", str(dest)], check=True)
    src.unlink()
    return dest


# --- verify: nothing verified is not a pass; a crashing runner is a finding ---------------------------
@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV"])
def test_verify_runner_killed_by_a_signal_is_a_finding(cli, fault, settings: Settings, sig: str) -> None:  # type: ignore[no-untyped-def]
    """A stripped runner that dies with SIGILL (a -march=native build on another CPU) or SIGSEGV."""
    build = _input_dir(settings, "build")
    _c_program(build / "bin" / "llama-completion", f"kill(getpid(), {sig});\nreturn 0;")
    start = time.monotonic()
    done = cli("verify", str(build), "--profile", "cpu", "--timeout", "20")
    fault(done, 30, sig, "runtime.help", started=start, bound=60)
    assert "✓" not in done.stderr and TRACEBACK not in done.stderr


def test_verify_of_a_program_that_is_no_build_is_not_a_pass(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """`/bin/ls --no-runtime --profile blas`: every check unverifiable -> its own verdict, exit 31."""
    start = time.monotonic()
    done = cli("verify", shutil.which("ls") or "/bin/ls", "--no-runtime", "--profile", "blas")
    fault(done, 31, "nothing could be verified", "registration", started=start, bound=60)
    assert "✓" not in done.stderr and "carries the" not in done.stderr
    report = json.loads((settings.reports_dir / "verify.json").read_text())
    assert report["ok"] is False and report["verified"] is False


def test_verify_truncated_elf_is_not_a_readable_binary(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    build = _input_dir(settings, "build")
    runner = build / "bin" / "llama-completion"
    runner.parent.mkdir()
    runner.write_bytes((Path(shutil.which("ls") or "/bin/ls")).read_bytes()[:20])
    runner.chmod(0o755)
    start = time.monotonic()
    done = cli("verify", str(build), "--profile", "cpu", "--timeout", "20")
    fault(
        done,
        UnreadableBinaryError.exit_code,
        "not a readable binary",
        "llama-completion",
        started=start,
        bound=60,
    )
    assert "stripped" not in done.stderr and TRACEBACK not in done.stderr


# --- verify: bounded output and time ------------------------------------------------------------------
def test_verify_runner_flooding_help_is_bounded(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """A runner that writes without end (no newline) on --help: killed, named, peak memory <= 200 MB."""
    build = _input_dir(settings, "build")
    _c_program(
        build / "bin" / "llama-completion",
        "static char chunk[65536];\nmemset(chunk, 'x', sizeof chunk);\n"
        "for (;;) if (write(1, chunk, sizeof chunk) < 0) return 1;",
    )
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
        "sys.stderr.write(done.stderr)\n"
        "sys.exit(done.returncode)\n"
    )
    env = {**os.environ, "TOOLCHAIN_CACHE": str(settings.cache_dir), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_ACTIONS", None)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "toolchain", "verify", str(build)]
        + ["--profile", "cpu", "--timeout", "120"],
        cwd=settings.project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    fault(done, 30, "flood", "runtime.help", started=start, bound=120)
    peak_kib = int(done.stdout)
    assert peak_kib <= 200 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    logs = settings.reports_dir / "verify-logs"
    assert sum(f.stat().st_size for f in logs.iterdir()) < 100 << 20, "the log must be capped too"


def test_verify_timeout_applies_to_the_help_probe(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """A runner that blocks forever on --help (reads a FIFO nobody writes) and --timeout 2."""
    build = _input_dir(settings, "build")
    fifo = build / "never-written"
    os.mkfifo(fifo)
    _c_program(build / "bin" / "llama-completion", f'return open("{fifo}", O_RDONLY) < 0;')
    start = time.monotonic()
    done = cli("verify", str(build), "--profile", "cpu", "--timeout", "2")
    fault(done, 30, "hang", "--help", started=start, bound=30)


# --- verify: malformed archives, unreadable bin/ --------------------------------------------------------
def test_verify_archive_with_a_non_numeric_member_size(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    lib = _input_dir(settings, "lib") / "libggml.a"
    header = b"foo.o/".ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"644".ljust(8)
    lib.write_bytes(b"!<arch>\n" + header + b"abc".ljust(10) + b"`\n" + b"hello\n")
    start = time.monotonic()
    done = cli("verify", str(lib), "--no-runtime", "--profile", "cpu")
    fault(done, UnreadableBinaryError.exit_code, "malformed archive", "libggml.a", started=start, bound=60)
    assert TRACEBACK not in done.stderr


def test_verify_path_that_is_a_fifo(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    fifo = _input_dir(settings, "x") / "llama-completion"
    os.mkfifo(fifo)
    start = time.monotonic()
    done = cli("verify", str(fifo), "--no-runtime", "--profile", "cpu")
    fault(done, 30, "not a regular file or directory", started=start, bound=30)
    assert TRACEBACK not in done.stderr


def test_verify_bin_that_is_a_dangling_symlink(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    build = _input_dir(settings, "build")
    (build / "bin").symlink_to(build / "gone")
    start = time.monotonic()
    done = cli("verify", str(build), "--no-runtime", "--profile", "cpu")
    fault(done, 30, "bin", "dangling symlink", started=start, bound=30)


def test_verify_bin_entry_that_cannot_be_read_as_a_binary(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    build = _input_dir(settings, "build")
    (build / "bin").mkdir()
    os.mkfifo(build / "bin" / "llama-completion")
    start = time.monotonic()
    done = cli("verify", str(build), "--no-runtime", "--profile", "cpu")
    fault(done, 30, "llama-completion is a FIFO", started=start, bound=30)


# --- coverage --baseline: validated before any cell runs; nothing covered is no verdict -------------------
def _fake_coverage(settings: Settings) -> tuple[Path, Path, Path]:
    from tests.coverage.conftest import make_fake_build

    build = make_fake_build(_input_dir(settings, "fake"))
    model = settings.work_dir / "input" / "llama.gguf"
    model.write_bytes(b"GGUF fake")
    pids = _input_dir(settings, "pids")
    return build, model, pids


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{ not json", ("not JSON",)),
        (json.dumps({"schema_version": 1, "kind": "verify", "checks": []}), ("kind", "'verify'")),
        (json.dumps({"schema_version": 1, "kind": "coverage", "cells": [1, 2]}), ("cells[0]", "1")),
        (json.dumps([1, 2, 3]), ("JSON object",)),
        (
            json.dumps({"kind": "coverage", "cells": [{"id": "x", "status": "pass", "ops": [{"op": 3}]}]}),
            ("cells[0].ops[0]",),
        ),
    ],
    ids=["garbage", "wrong-kind", "cells-of-ints", "not-an-object", "bad-op"],
)
def test_coverage_bad_baseline_is_refused_before_any_cell(  # type: ignore[no-untyped-def]
    cli, fault, settings: Settings, content: str, words: tuple[str, ...]
) -> None:
    build, model, pids = _fake_coverage(settings)
    baseline = settings.work_dir / "input" / "old-coverage.json"
    baseline.write_text(content)
    start = time.monotonic()
    done = cli(
        "coverage",
        "--build-dir",
        str(build),
        "--model",
        f"llama:f16:{model}",
        "-b",
        "CPU",
        "--predict",
        "none",
        "--baseline",
        str(baseline),
        env={"FAKE_PIDS": str(pids)},
    )
    fault(done, 2, str(baseline), *words, started=start, bound=60)
    assert TRACEBACK not in done.stderr
    assert list(pids.iterdir()) == [], "no tool may run before the baseline is known to be good"


def test_coverage_with_a_baseline_writes_its_reports(cli, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    build, model, pids = _fake_coverage(settings)
    args = ["coverage", "--build-dir", str(build), "--model", f"llama:f16:{model}", "-b", "CPU"]
    args += ["--predict", "none", "--fail-on", "none"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    baseline = settings.work_dir / "input" / "old-coverage.json"
    shutil.copy(settings.reports_dir / "coverage.json", baseline)
    (settings.reports_dir / "coverage.json").unlink()
    done = cli(*args, "--baseline", str(baseline))
    assert done.returncode == 0, done.stderr
    report = json.loads((settings.reports_dir / "coverage.json").read_text())
    assert report["baseline"]["safe_to_bump"] is True and report["cells"]


def test_coverage_of_no_cell_with_a_baseline_is_no_verdict(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    build, model, pids = _fake_coverage(settings)
    baseline = settings.work_dir / "input" / "old-coverage.json"
    baseline.write_text(json.dumps({"schema_version": 1, "kind": "coverage", "cells": []}))
    start = time.monotonic()
    done = cli(
        "coverage",
        "--build-dir",
        str(build),
        "--no-archs-models",
        "--predict",
        "none",
        "--baseline",
        str(baseline),
    )
    fault(done, 50, "nothing was covered", started=start, bound=60)
    assert "safe to bump the pin ?" not in done.stderr
    report = json.loads((settings.reports_dir / "coverage.json").read_text())
    assert report["baseline"]["safe_to_bump"] is False and "nothing was covered" in report["verdict"]


def test_coverage_of_no_cell_is_not_a_pass(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    build, _model, _pids = _fake_coverage(settings)
    start = time.monotonic()
    done = cli("coverage", "--build-dir", str(build), "--no-archs-models", "--predict", "none")
    fault(done, 50, "nothing was covered", started=start, bound=60)
    assert "✓" not in done.stderr


# --- models --from-config: a stranger's config.json ----------------------------------------------------
LLAMA = LLAMA_3_8B_SHAPE


def _with(**fields: object) -> str:
    return json.dumps({**LLAMA, **fields})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            _with(hidden_size=0).replace('"hidden_size": 0', '"hidden_size": ' + "7" * 5000),
            ("hidden_size", "5000 digits"),
        ),
        (_with(num_key_value_heads="8"), ("num_key_value_heads", '"8"', "a string")),
        (_with(layer_types=[{"kind": "full"}, {"kind": "sliding"}]), ("layer_types[0]", '{"kind": "full"}')),
        (_with(hidden_size=-4096), ("hidden_size", "-4096", "at least 1")),
        (_with(num_hidden_layers=2.5), ("num_hidden_layers", "2.5", "not a whole number")),
        (_with(num_attention_heads=0), ("num_attention_heads", "= 0", "at least 1")),
        (
            _with(num_attention_heads=30, num_key_value_heads=5),
            ("hidden_size", "4096", "num_attention_heads = 30"),
        ),
        (_with(num_key_value_heads=12), ("num_attention_heads", "num_key_value_heads = 12")),
        (json.dumps([LLAMA]), ("JSON object", "list")),
        (_with(rope_theta=0).replace('"rope_theta": 0', '"rope_theta": NaN'), ("rope_theta", "NaN")),
        (_with(head_dim=1 << 40), ("head_dim", str(1 << 40))),
        ("[" * 100000 + "]" * 100000, ("nested too deeply",)),
    ],
    ids=[
        "5000-digit-int",
        "kv-heads-string",
        "unhashable-layer-types",
        "negative-dimension",
        "float-layers",
        "zero-heads",
        "head-dim-not-dividing",
        "kv-not-dividing",
        "non-object",
        "nan",
        "huge-kept-dimension",
        "deeply-nested",
    ],
)
def test_from_config_refuses_what_no_model_has(  # type: ignore[no-untyped-def]
    cli, fault, settings: Settings, text: str, words: tuple[str, ...]
) -> None:
    config = _input_dir(settings, "model") / "config.json"
    config.write_text(text)
    start = time.monotonic()
    done = cli("models", "--from-config", str(config))
    fault(done, 40, *words, started=start, bound=60)
    assert TRACEBACK not in done.stderr


def test_from_config_fifo_is_refused_at_once(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    fifo = _input_dir(settings, "model") / "config.json"
    os.mkfifo(fifo)  # nobody ever writes it: reading it would block forever
    start = time.monotonic()
    done = cli("models", "--from-config", str(fifo), timeout=60)
    fault(done, 40, "not a regular file", "FIFO", started=start, bound=30)


def test_from_config_huge_file_is_refused_unread(cli, fault, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    config = _input_dir(settings, "model") / "config.json"
    with config.open("wb") as fh:  # sparse: 8 GiB that cost no disk
        fh.truncate(8 << 30)
    start = time.monotonic()
    done = cli("models", "--from-config", str(config))
    fault(done, 40, "bytes", "config.json", started=start, bound=30)
