"""The converter workers share one job list: each takes the next job when it is free, and a
worker that dies costs only the job it held. Real worker processes (toolchain/convert/worker.py)
run a stand-in for the tree's convert_hf_to_gguf.py that writes a file, or kills its process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from toolchain.config import Settings
from toolchain.convert import stage
from toolchain.convert.env import ConverterEnv
from toolchain.models.build import TinyModel

CONVERTER = """
import os, sys
from pathlib import Path

def main():
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[sys.argv.index("--outfile") + 1])
    if (model_dir / "die").exists():
        os._exit(9)  # the whole worker process ends, as a segfault in torch would
    out.write_text(f"{model_dir.name} by {os.getpid()}")
"""


class _Checks:
    """Stands in for the validation pool: records what was handed on."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job: str, *_args: object, **_kw: object) -> None:
        self.submitted.append(job)


def test_a_dying_worker_costs_only_its_job_and_the_other_takes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage, "available_cores", lambda: 2)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "convert_hf_to_gguf.py").write_text(CONVERTER)
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    env = ConverterEnv(tree, tmp_path / "venv", "k", (), {}, "3")
    settings = Settings(tmp_path, tmp_path / ".toolchain", tmp_path / "cache", tmp_path / "llama.lock")
    jobs: list[dict[str, str]] = []
    pending: dict[str, tuple[TinyModel, str, Path]] = {}
    for i in range(8):
        model_dir = tmp_path / "models" / f"m{i}"
        model_dir.mkdir(parents=True)
        if i == 0:  # the largest: the first job taken
            (model_dir / "die").touch()
        model = TinyModel(f"m{i}", "A", "a", model_dir, "h", 0, "ok", size_bytes=100 - i)
        out = tmp_path / "out" / f"m{i}.gguf"
        jobs.append({"id": f"m{i}:f16", "model_dir": str(model_dir), "outtype": "f16", "outfile": str(out)})
        pending[f"m{i}:f16"] = (model, "f16", out)
    lines: list[str] = []
    checks = _Checks()

    workers = stage._run_converter(env, tree, jobs, settings, 120.0, lines, pending, checks)  # type: ignore[arg-type]

    results = [json.loads(line.removeprefix("@@result ")) for line in lines]
    done = {r["job"]: r for r in results if "job" in r}
    assert sorted(done) == [f"m{i}:f16" for i in range(1, 8)], done
    assert all(r["status"] == "ok" for r in done.values())
    assert sorted(checks.submitted) == sorted(done)  # each written file went on to validation
    writers = {Path(pending[j][2]).read_text().split(" by ")[1] for j in done}
    assert len(writers) == 1  # the survivor took every job after the death
    assert sorted(d.returncode for d in workers.done) == [0, 9]
    why = workers.stopped_before("m0:f16")
    assert why == "the converter process stopped in this job (exit 9)", why
    assert len({workers.claimed_by[j] for j in done}) == 1 and workers.claimed_by["m0:f16"] not in {
        workers.claimed_by[j] for j in done
    }
    logs = sorted(p.name for p in (settings.work_dir / "models").glob("toolchain-convert-*.log"))
    assert logs == ["toolchain-convert-1.log", "toolchain-convert-2.log"]
