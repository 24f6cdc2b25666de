"""The matrix on a real BLAS build of the 0.3.36 tree (slow): BLAS shows real unsupported ops with
their exact shapes, CPU cells pass, crash/hang wrappers around the real tool get their verdicts,
and ``--baseline`` against the 0.3.20 report gives a diff and a verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.coverage.conftest import ROOT

pytestmark = pytest.mark.slow
BASELINE_0320 = ROOT / "fixtures" / "coverage" / "baseline-0.3.20.json"


def _coverage(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(
        [sys.executable, "-m", "toolchain.coverage", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _real_args(build: Path) -> list[str]:
    args = ["--build-dir", str(build), "-a", "llama,qwen3", "--types", "f16,q8_0", "--backends", "CPU,BLAS"]
    if BASELINE_0320.is_file():
        args += ["--baseline", str(BASELINE_0320)]
    return [*args, "--fail-on", "crash,hang,wrong"]


@pytest.fixture(scope="module")
def real_run(
    coverage_build: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, object]]:
    project = tmp_path_factory.mktemp("coverage-real")
    done = _coverage(project, *_real_args(coverage_build))
    assert done.returncode in (0, 50), done.stdout + done.stderr
    data = json.loads((project / ".toolchain" / "reports" / "coverage.json").read_text())
    return project, data


def test_blas_column_shows_real_unsupported_ops_with_exact_shapes(
    real_run: tuple[Path, dict[str, object]],
) -> None:
    project, data = real_run
    cells = {c["id"]: c for c in data["cells"]}  # type: ignore[attr-defined]
    device = {
        i for i, c in cells.items() if not c["backend"].startswith(("metal-predicted:", "metal-dryrun:"))
    }
    assert device == {
        f"{a}-{t}-{b}" for a in ("llama", "qwen3") for t in ("f16", "q8_0") for b in ("CPU", "BLAS")
    }
    assert data["complete"] is True and data["profile"] == "blas"
    blas = cells["llama-f16-BLAS"]
    assert blas["status"] == "unsupported" and blas["observed_by"] == "device"
    ops = blas["ops"]
    # BLAS takes MUL_MAT only with every dimension >= 32 (ggml-blas.cpp): the prompt's 256-token
    # product is supported, the one-token product of generation is not — with its exact shape
    mm_pp = [o for o in ops if o["op"] == "MUL_MAT" and o["output"]["ne"][1] == 256]
    mm_tg = [o for o in ops if o["op"] == "MUL_MAT" and o["output"]["ne"][1] == 1]
    assert mm_pp and all(o["supported"] == "yes" for o in mm_pp)
    assert mm_tg and all(o["supported"] == "no" for o in mm_tg)
    norm = [o for o in ops if o["op"] == "RMS_NORM" and o["supported"] == "no"]
    assert any(o["output"] == {"type": "f32", "ne": [256, 256, 1, 1], "nb": []} for o in norm), norm
    assert all(o["types"][0] == "f32" and o["params"].startswith("name=") for o in norm)
    # the matrix rows of the Markdown name the shapes too
    md = (project / ".toolchain" / "reports" / "coverage.md").read_text()
    assert "f32[256,256,1,1] ← f32[256,256,1,1]" in md.split("unsupported `RMS_NORM`", 1)[1].split("\n", 1)[0]
    e2e = next(c for c in blas["checks"] if c["column"] == "e2e")
    assert e2e["status"] == "pass" and e2e["details"]["nodes_by_backend"].get("BLAS", 0) > 0
    for cid in device:
        cell = cells[cid]
        if cid.endswith("-CPU"):
            assert cell["status"] == "pass", (cid, cell["reason"])
        else:
            assert cell["status"] == "unsupported", (cid, cell["reason"])
    for name in ("coverage.json", "coverage.md", "coverage.html", "junit-coverage.xml"):
        assert (project / ".toolchain" / "reports" / name).is_file()


def test_identical_cases_are_measured_once_per_backend_and_say_where(
    real_run: tuple[Path, dict[str, object]],
) -> None:
    """The f16 and q8_0 files of one checkpoint share their norms, adds and attention: each such
    case is run once per backend, and the cells that take its verdict name the cell that measured
    it (coverage/engine/cases.py). Their verdicts are finished ones, on the same backend."""
    _project, data = real_run
    cells = {c["id"]: c for c in data["cells"]}  # type: ignore[attr-defined]
    sharing = 0
    for cid, cell in cells.items():
        test = next((c for c in cell["checks"] if c["column"] == "test"), None)
        if test is None:
            continue
        shared = test["details"].get("identical_cases", {})
        if not shared:
            continue
        sharing += 1
        assert f"{len(shared)} of them the same case as measured in another cell" in test["summary"]
        by_key = {o["key"]: o for o in cell["ops"]}
        for key, source in shared.items():
            assert source != cid and cells[source]["backend"] == cell["backend"], (cid, key, source)
            assert by_key[key]["test"] in ("ok", "fail", "nan-both", "nan-reference", "not-supported")
    assert sharing >= 2, "no cell took an identical case's verdict"


def test_baseline_diff_between_0320_and_0336(real_run: tuple[Path, dict[str, object]]) -> None:
    if not BASELINE_0320.is_file():
        pytest.skip("fixtures/coverage/baseline-0.3.20.json not present")
    project, data = real_run
    base = data["baseline"]
    assert (
        isinstance(base, dict)
        and base["baseline_commit"] == json.loads(BASELINE_0320.read_text())["source"]["commit"]
    )
    assert data["verdict"] and ("safe to bump" in str(data["verdict"]))
    md = (project / ".toolchain" / "reports" / "coverage.md").read_text()
    assert "## Against the baseline" in md and str(data["verdict"]) in md


def test_crash_and_hang_wrappers_around_the_real_tool(coverage_build: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "blas-wrapped" / "bin"
    bin_dir.mkdir(parents=True)
    real_bin = coverage_build / "bin"
    for f in real_bin.iterdir():
        if f.name != "test-backend-ops":
            (bin_dir / f.name).symlink_to(f)
    wrapper = bin_dir / "test-backend-ops"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# test double: on BLAS, `test` aborts for qwen3's ops and hangs for llama's; else the real tool\n"
        "# (tool detection reads options from the file: support --test-file --output csv)\n"
        'case " $* " in\n'
        '  *" test "*"-b BLAS"*)\n'
        '    case "$*" in\n'
        '      *qwen3*) echo "ggml.c:99: GGML_ASSERT(wrapped) failed" >&2; kill -ABRT $$ ;;\n'
        "      *) sleep 600 ;;\n"
        "    esac ;;\n"
        "esac\n"
        f'exec "{real_bin / "test-backend-ops"}" "$@"\n'
    )
    wrapper.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    done = _coverage(
        project,
        "--build-dir",
        str(bin_dir.parent),
        "-a",
        "llama,qwen3",
        "--types",
        "f16",
        "--backends",
        "CPU,BLAS",
        "--columns",
        "support,test",
        "--timeout",
        "8",
        timeout=300,
    )
    assert done.returncode == 50, done.stdout + done.stderr  # findings: crash and hang
    data = json.loads((project / ".toolchain" / "reports" / "coverage.json").read_text())
    cells = {c["id"]: c for c in data["cells"]}
    assert cells["qwen3-f16-BLAS"]["status"] == "crash"
    assert "GGML_ASSERT(wrapped) failed" in json.dumps(cells["qwen3-f16-BLAS"]["checks"])
    assert cells["llama-f16-BLAS"]["status"] == "hang"
    assert cells["llama-f16-CPU"]["status"] == "pass" and cells["qwen3-f16-CPU"]["status"] == "pass"
    assert data["complete"] is True


def test_predicted_metal_columns_are_labelled_predictions(real_run: tuple[Path, dict[str, object]]) -> None:
    project, data = real_run
    cells = {c["id"]: c for c in data["cells"]}  # type: ignore[attr-defined]
    predicted = [c for c in cells.values() if c["backend"].startswith("metal-predicted:")]
    assert {c["backend"] for c in predicted} == {
        "metal-predicted:apple7",
        "metal-predicted:apple9",
        "metal-predicted:paravirtual",
    }
    assert all(c["observed_by"] == "predicted-from-source" for c in predicted)
    # the hosted runners' VM device has no simdgroup reduction: MUL_MAT is rejected there
    vm = cells["llama-f16-metal-predicted:paravirtual"]
    assert vm["status"] == "unsupported"
    assert any(o["op"] == "MUL_MAT" and o["supported"] == "no" for o in vm["ops"])
    assert cells["llama-f16-metal-predicted:apple9"]["status"] == "pass"
    md = (project / ".toolchain" / "reports" / "coverage.md").read_text()
    assert "PREDICTIONS from this llama.cpp tree's own Metal supports_op source" in md


def test_dryrun_metal_columns_for_the_four_profiles(real_run: tuple[Path, dict[str, object]]) -> None:
    project, data = real_run
    cells = [c for c in data["cells"] if c["backend"].startswith("metal-dryrun:")]  # type: ignore[attr-defined]
    profiles = ("apple7", "apple9", "apple10", "paravirtual")
    assert {c["id"] for c in cells} == {
        f"{a}-{t}-metal-dryrun:{p}" for a in ("llama", "qwen3") for t in ("f16", "q8_0") for p in profiles
    }
    assert all(c["observed_by"] == "dry-run" for c in cells)
    by = {c["id"]: c for c in cells}
    assert by["llama-f16-metal-dryrun:apple9"]["status"] == "pass"
    assert by["llama-f16-metal-dryrun:apple9"]["checks"][0]["details"]["kernels_needed"]
    assert by["llama-f16-metal-dryrun:paravirtual"]["status"] == "unsupported"
    md = (project / ".toolchain" / "reports" / "coverage.md").read_text()
    assert "are DRY RUNS: this tree's own Metal backend" in md


def test_a_given_gguf_the_tree_cannot_load_fails_with_the_loaders_message(
    coverage_build: Path, tmp_path: Path
) -> None:
    """`coverage --model` on a GGUF the tree refuses: no ✓, exit 50, the loader's message named."""
    import gguf

    made = subprocess.run(
        [str(coverage_build / "bin" / "test-llama-archs"), "-a", "^llama$", "-o", str(tmp_path), "-s", "1"],
        capture_output=True,
        timeout=300,
    )
    source = next(p for p in tmp_path.glob("llama*.gguf") if p.name.startswith("llama-"))
    assert made.returncode == 0 or source.is_file(), made.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(source.read_bytes())
    reader = gguf.GGUFReader(str(bad), "r+")
    target = next(t for t in reader.tensors if t.name == "output.weight")
    dims = target.field.parts[3]
    assert dims[0] != dims[1]
    dims[0], dims[1] = (
        int(dims[1]),
        int(dims[0]),
    )  # same bytes, transposed: the loader's shape check refuses it
    del reader
    project = tmp_path / "project"
    project.mkdir()
    done = _coverage(
        project,
        "--build-dir",
        str(coverage_build),
        "--model",
        f"llama:f32:{bad}",
        "--types",
        "f32",
        "--backends",
        "CPU,BLAS",
        "--columns",
        "support,test,e2e",
        "--predict",
        "none",
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 50, out
    assert "✓" not in out, out
    assert "could not be covered" in out and "check_tensor_dims" in out and "wrong shape" in out, out
    data = json.loads((project / ".toolchain" / "reports" / "coverage.json").read_text())
    cells = [c for c in data["cells"] if not c["backend"].startswith(("metal-predicted:", "metal-dryrun:"))]
    assert {c["backend"] for c in cells} == {"CPU", "BLAS"}
    assert all(c["status"] == "error" and c["whose"] == "input" for c in cells), cells
    assert all("the tree cannot load this model: check_tensor_dims" in c["reason"] for c in cells)


def test_a_warm_rerun_reuses_the_off_device_columns(
    real_run: tuple[Path, dict[str, object]], coverage_build: Path, tmp_path: Path
) -> None:
    """A fresh work dir with the same cache (a warm CI job): each model's metal-predicted and
    metal-dryrun cells are the first run's, reused and said to be, with no export or dry run."""
    _project, first = real_run
    done = _coverage(tmp_path, *_real_args(coverage_build))
    out = done.stdout + done.stderr
    assert done.returncode in (0, 50), out
    for column in ("metal-predicted", "metal-dryrun"):
        assert f"{column}: 4 of 4 model(s) reused" in out, out
    assert "dryrun ops:" not in out, out  # the dry run's own line: it did not run
    data = json.loads((tmp_path / ".toolchain" / "reports" / "coverage.json").read_text())

    def off_device(d: dict[str, object]) -> dict[str, dict[str, object]]:
        return {
            c["id"]: {k: v for k, v in c.items() if k not in ("reused", "model")}
            for c in d["cells"]  # type: ignore[attr-defined]
            if c["backend"].startswith(("metal-predicted:", "metal-dryrun:"))
        }

    again = off_device(data)
    assert len(again) == 4 * (3 + 4) and again == off_device(first)
    assert all(
        c["reused"]
        for c in data["cells"]  # type: ignore[attr-defined]
        if c["backend"].startswith(("metal-predicted:", "metal-dryrun:"))
    )
