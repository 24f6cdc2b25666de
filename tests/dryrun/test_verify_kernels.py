"""`llama-toolchain verify` checks a build's embedded Metal library against the Metal dry run's needs.

The builds are the Mach-O fixtures (fixtures/macho, cross-built with clang + lld) embedding the
pin's own kernel sources, edited; the needs come from a coverage.json whose metal-dryrun cells are
a real dry run of the MoE ops (tests/dryrun/test_coverage_cells.py makes the same cells).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.macho.build_fixtures import build_with_library, tree_library, without_lines
from tests.conftest import ROOT
from tests.dryrun.conftest import FIXTURES
from toolchain.core.jsonio import to_jsonable
from toolchain.coverage.metal.dryrun import dryrun_cells
from toolchain.coverage.records import ModelInput
from toolchain.dryrun.build import DryRunProgram
from toolchain.dryrun.run import dry_run
from toolchain.records import COVERAGE, write_report

MOE = FIXTURES / "moe"
F16, BF16 = "1", "30"  # ggml_type ids at the pin
MATMULS = {"29", "30"}  # GGML_OP_MUL_MAT, GGML_OP_MUL_MAT_ID at the pin


def bf16_ops(src: Path, dest: Path) -> Path:
    """The f16 model's ops with its matmul weights as bf16 (same 2-byte strides): a bf16 model."""
    out = []
    for line in src.read_text().splitlines():
        tok = line.split()
        src0_type = 8 + int(tok[6])  # op type ne*4 n_params params* n_src (type ne*4 nb*4)* name
        if tok[0] in MATMULS and tok[src0_type] == F16:
            tok[src0_type] = BF16
        out.append(" ".join(tok))
    dest.write_text("\n".join(out) + "\n")
    return dest


def write_coverage(work: Path, tree: Path, cache: Path, model: str, batches: list[tuple[str, Path]]) -> None:
    """<work>/reports/coverage.json with the metal-dryrun cells of a real dry run of ``batches``."""
    run = dry_run(tree, cache, work / "dryrun", batches=list(batches))
    cells = dryrun_cells(ModelInput("qwen3moe", model, work / f"{model}.gguf", "fixture"), run)
    report = {"source": {"commit": run.commit}, "cells": to_jsonable(cells)}
    write_report(work / "reports" / COVERAGE.name, COVERAGE.kind, report)


def verify(path: Path, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "toolchain",
            "verify",
            str(path),
            "--profile",
            "metal",
            "--no-runtime",
            "--json",
        ],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOOLCHAIN_CACHE": str(cache), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def kernel_checks(cwd: Path) -> dict[str, dict[str, object]]:
    data = json.loads((cwd / ".toolchain" / "reports" / "verify.json").read_text())
    return {c["name"]: c for c in data["checks"] if c["name"].startswith("metal-dryrun-kernels")}


@pytest.fixture(scope="module")
def bf16_work(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A work dir whose last coverage run covered a bf16 MoE (3 experts per token)."""
    root = tmp_path_factory.mktemp("bf16")
    work = root / ".toolchain"
    batches = [
        ("generation", bf16_ops(MOE / "qwen3moe-k8-f16-generation.ops", root / "tg.ops")),
        ("prompt", bf16_ops(MOE / "qwen3moe-k8-f16-prompt.ops", root / "pp.ops")),
    ]
    write_coverage(work, tree_0336, dryrun_cache, "bf16", batches)
    return root


def test_a_library_without_bf16_kernels_fails_verify_for_a_bf16_model(
    bf16_work: Path, tree_0336: Path, dryrun_cache: Path
) -> None:
    lib = without_lines(tree_library(tree_0336), "bf16")
    build = build_with_library(bf16_work / ".toolchain" / "build", "metal-nobf16", lib)
    done = verify(build, bf16_work, dryrun_cache)
    assert done.returncode == 30, done.stderr
    err = " ".join(done.stderr.split())
    assert "metal-dryrun-kernels:apple9: __DATA,__ggml_metallib lacks" in err
    assert "kernel_mul_mm_bf16_f32" in err and "kernel_mul_mv_bf16_f32" in err
    checks = kernel_checks(bf16_work)
    for p in ("apple7", "apple9", "apple10"):
        c = checks[f"metal-dryrun-kernels:{p}"]
        assert c["status"] == "fail" and c["observed_by"] == "static+dry-run"
        assert c["evidence"] and all("bf16" in k for k in c["evidence"])  # type: ignore[union-attr]
        assert "the last coverage run's 1 model(s)" in str(c["found"])
    # paravirtual has no bfloat: its encoders never ask for a bf16 kernel
    assert checks["metal-dryrun-kernels:paravirtual"]["status"] == "pass"


def test_the_pins_own_library_passes_every_profile(
    bf16_work: Path, tree_0336: Path, dryrun_cache: Path
) -> None:
    build = build_with_library(bf16_work / ".toolchain" / "build", "metal-pin", tree_library(tree_0336))
    done = verify(build, bf16_work, dryrun_cache)
    assert done.returncode == 0, done.stderr
    checks = kernel_checks(bf16_work)
    assert len(checks) == 4 and all(c["status"] == "pass" for c in checks.values())


def test_a_library_older_than_its_host_code_fails_naming_the_kernel(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    work = tmp_path / ".toolchain"
    moe = [(b, MOE / f"qwen3moe-k8-f16-{b}.ops") for b in ("generation", "prompt")]
    write_coverage(work, tree_0336, dryrun_cache, "f16", moe)
    # before ne20_8 was instantiated
    lib = without_lines(tree_library(tree_0336), "kernel_mul_mm_id_map0_ne20_8")
    done = verify(build_with_library(work / "build", "metal-old", lib), tmp_path, dryrun_cache)
    assert done.returncode == 30, done.stderr
    checks = kernel_checks(tmp_path)
    for p in ("apple7", "apple9", "apple10"):
        assert checks[f"metal-dryrun-kernels:{p}"]["evidence"] == ["kernel_mul_mm_id_map0_ne20_8"]
    assert "lacks 1 of" in " ".join(done.stderr.split())


def test_without_a_coverage_run_the_trees_builtin_cases_are_the_needs(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    work = tmp_path / ".toolchain"
    work.mkdir()
    (work / "src").symlink_to(tree_0336)
    lib = without_lines(tree_library(tree_0336), "bf16")
    done = verify(build_with_library(work / "build", "metal-nobf16", lib), tmp_path, dryrun_cache)
    assert done.returncode == 30, done.stderr
    c = kernel_checks(tmp_path)["metal-dryrun-kernels:apple9"]
    assert "built-in test-backend-ops cases" in str(c["found"]) and "no coverage run" in str(c["found"])
    assert "kernel_mul_mm_bf16_f32" in c["evidence"]  # type: ignore[operator]


def test_a_build_outside_a_work_dir_is_unverifiable_not_passed(tree_0336: Path, tmp_path: Path) -> None:
    build = build_with_library(tmp_path / "elsewhere", "metal-x", tree_library(tree_0336))
    done = verify(build, tmp_path, tmp_path / "cache")
    assert done.returncode == 0, done.stderr  # the other checks establish the backend
    c = kernel_checks(tmp_path)["metal-dryrun-kernels"]
    assert c["status"] == "unverifiable" and "not a build of a toolchain work dir" in str(c["found"])
