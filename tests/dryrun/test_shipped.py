"""The shipped-library check on Mach-O objects cross-built here (clang, the embed step's own .incbin)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from toolchain.dryrun.build import DryRunProgram
from toolchain.dryrun.records import DryRun
from toolchain.dryrun.run import dry_run
from toolchain.dryrun.shipped import check_shipped

KERNELS = Path("ggml/src/ggml-metal/kernels")

pytestmark = pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang to cross-build Mach-O")


def _macho(text: str, tmp: Path, name: str) -> Path:
    """What ggml-metal/CMakeLists.txt emits for an embedded library: the source in __DATA,__ggml_metallib."""
    src = tmp / f"{name}.metal"
    src.write_text(text, encoding="utf-8")
    asm = tmp / f"{name}.s"
    asm.write_text(
        ".section __DATA,__ggml_metallib\n"
        ".globl _ggml_metallib_start\n_ggml_metallib_start:\n"
        f'.incbin "{src}"\n'
        ".globl _ggml_metallib_end\n_ggml_metallib_end:\n",
        encoding="utf-8",
    )
    out = tmp / f"{name}.o"
    subprocess.run(["clang", "-target", "arm64-apple-macos13", "-c", str(asm), "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def mul_mat_run(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> DryRun:
    return dry_run(
        tree_0336,
        dryrun_cache,
        tmp_path_factory.mktemp("mm"),
        batches=[("built-in", None)],
        profiles=["apple9", "paravirtual"],
        ops="MUL_MAT",
    )


def _sources(tree: Path, files: tuple[str, ...] = ("mul_mv.metal", "mul_mm.metal")) -> str:
    return "".join((tree / KERNELS / f).read_text() for f in files)


def test_a_library_without_bf16_kernels_is_flagged_for_bf16_matmuls(
    mul_mat_run: DryRun, tree_0336: Path, tmp_path: Path
) -> None:
    text = "\n".join(
        line for line in _sources(tree_0336).splitlines() if not ("host_name" in line and "bf16" in line)
    )
    (lib,) = check_shipped(_macho(text, tmp_path, "nobf16"), mul_mat_run)
    assert lib.arch == "arm64" and not lib.ok
    by = {p.profile: p for p in lib.profiles}
    assert "kernel_mul_mm_bf16_f32" in by["apple9"].missing
    assert all("bf16" in k for k in by["apple9"].missing)
    assert by["paravirtual"].missing == ()  # no bfloat there: the encoders never ask for bf16 kernels


def test_the_pins_own_library_holds_every_kernel(
    mul_mat_run: DryRun, tree_0336: Path, tmp_path: Path
) -> None:
    (lib,) = check_shipped(_macho(_sources(tree_0336), tmp_path, "pin"), mul_mat_run)
    assert lib.ok and all(p.needed > 0 for p in lib.profiles if p.profile == "apple9")


def test_an_older_library_lacks_the_newer_map0_instantiations(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    from tests.dryrun.conftest import moe_run

    run = moe_run(tree_0336, dryrun_cache, tmp_path / "w", 8, profiles=["apple9"], batches=("prompt",))
    # a library older than its host code: the map0 list before ne20_8 existed
    every = tuple(sorted(p.name for p in (tree_0336 / KERNELS).glob("*.metal")))
    text = "\n".join(
        line for line in _sources(tree_0336, every).splitlines() if "kernel_mul_mm_id_map0_ne20_8" not in line
    )
    (lib,) = check_shipped(_macho(text, tmp_path, "old"), run)
    assert lib.profiles[0].missing == ("kernel_mul_mm_id_map0_ne20_8",)


def test_the_command_fails_with_verify_exit_code_naming_the_kernel(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    import os
    import sys

    from tests.conftest import ROOT
    from tests.dryrun.conftest import FIXTURES

    every = tuple(sorted(p.name for p in (tree_0336 / KERNELS).glob("*.metal")))
    text = "\n".join(
        line for line in _sources(tree_0336, every).splitlines() if "kernel_mul_mm_id_map0_ne20_8" not in line
    )
    lib = _macho(text, tmp_path, "old")
    done = subprocess.run(
        [sys.executable, "-m", "toolchain", "dryrun", "shipped", str(lib), "--tree", str(tree_0336)]
        + ["--profiles", "apple9", "--ops", str(FIXTURES / "moe" / "qwen3moe-k8-f16-prompt.ops")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TOOLCHAIN_CACHE": str(dryrun_cache), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 30, done.stderr
    assert "apple9 (arm64): kernel_mul_mm_id_map0_ne20_8" in " ".join(done.stderr.split())
    assert (tmp_path / ".toolchain" / "reports" / "dryrun-shipped.json").is_file()
