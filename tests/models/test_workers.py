"""The model workers run side by side, one per core, and Ctrl-C ends every one of them. The
workers here are test doubles that record their pid and then block on a FIFO nobody writes: they
run until a signal ends them, so the test waits on that, never on the clock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.coverage.conftest import ROOT, no_children_left

MAKE = """
import sys
from pathlib import Path
from toolchain.config import Settings
from toolchain.models.build import make_models
from toolchain.models.spec import load_specs

tmp, worker = Path(sys.argv[1]), Path(sys.argv[2])
specs = load_specs()
settings = Settings(tmp, tmp / ".toolchain", tmp / "cache", tmp / "llama.lock")
make_models([specs["llama"], specs["mixtral"], specs["qwen3"]], settings, worker, tmp)
"""


def test_ctrl_c_ends_every_model_worker(tmp_path: Path) -> None:
    pids, hold = tmp_path / "pids", tmp_path / "hold"
    pids.mkdir()
    os.mkfifo(hold)
    worker = tmp_path / "python"
    worker.write_text(f'#!/bin/sh\necho $$ > "{pids}/$$"\nexec cat "{hold}"\n')
    worker.chmod(0o755)
    wanted = min(2, len(os.sched_getaffinity(0)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", MAKE, str(tmp_path), str(worker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120  # the workers block: this only bounds a broken start
        while len(list(pids.iterdir())) < wanted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(pids.iterdir())) == wanted, proc.poll()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out
    assert "KeyboardInterrupt" in out, out
    assert no_children_left(pids) == [], out


def test_the_vocab_reader_reads_what_the_gguf_package_reads(tree_0336: Path, tmp_path: Path) -> None:
    """The model worker reads the tree's vocab-only GGUFs with struct (the gguf package's reader
    took 4.4 s of each 50k-token model); every key and value must be the package's."""
    import importlib.util

    import gguf

    spec = importlib.util.spec_from_file_location("model_worker", ROOT / "toolchain" / "models" / "worker.py")
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    files = sorted((tree_0336 / "models").glob("ggml-vocab-*.gguf"))
    assert len(files) >= 10
    for path in files[:6]:
        ours = worker.gguf_metadata(path)
        theirs = {
            k: f.contents() for k, f in gguf.GGUFReader(str(path)).fields.items() if not k.startswith("GGUF.")
        }
        assert ours.keys() == theirs.keys(), path
        for key, value in theirs.items():
            mine = ours[key]
            if isinstance(value, float) or (
                isinstance(value, list) and value and isinstance(value[0], float)
            ):
                assert mine == pytest.approx(value), (path, key)
            else:
                assert mine == value, (path, key)
    bad = tmp_path / "not.gguf"
    bad.write_bytes(b"GGML" + bytes(60))
    with pytest.raises(ValueError, match="not a GGUF"):
        worker.gguf_metadata(bad)
    cut = tmp_path / "cut.gguf"  # a vocabulary cut inside a string: refused, not read short
    data = files[0].read_bytes()
    for end in (4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007):  # inside a string or a length
        cut.write_bytes(data[: data.index(b"tokenizer.ggml.tokens") + end])
        with pytest.raises(ValueError, match="truncated"):
            worker.gguf_metadata(cut)
