"""doctor dry-runs the case of a "Function X was not found in the library" log with the tree given.

Real inputs: the llama.cpp trees vendored by llama-cpp-python 0.3.35 and 0.3.36 (sdists) and logs
written from 0.3.35's own format strings (tests/doctor/test_kernel_classes.py). The kernels are the
real crashes' (fixtures/real_crashes/corpus.toml): kernel_mul_mv_f32_f16_4 (llama.cpp PR #26212:
0.3.35's supports_op accepts f32 x f16 and no such kernel exists; 0.3.36 declines it) and
kernel_mul_mm_id_map0_ne20_3 (no tree instantiates 3 experts per token). The GGUFs are written with
the gguf package (their types and sizes are what the case is derived from).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest

from fixtures.macho.build_fixtures import build_variant, variant
from fixtures.real_builds import CORPUS
from fixtures.upstream.build_upstream import fetch_sdists
from tests.conftest import test_cache_dir as cache_root
from tests.doctor.test_kernel_classes import _missing_log, _sources
from tests.dryrun.conftest import BUILD_LOCK, sdist_tree
from tests.verify.test_real_builds import real_build
from toolchain.core.locking import exclusive
from toolchain.doctor.diagnose import DoctorInputs, diagnose
from toolchain.doctor.findings import DoctorReport, Finding
from toolchain.doctor.gguf_reader import read_gguf
from toolchain.doctor.kernel_dryrun import derive
from toolchain.dryrun.build import ensure_program


@pytest.fixture(scope="module")
def cache() -> Path:
    return cache_root() / "dryrun-cache"


@pytest.fixture(scope="module")
def tree_0335(cache: Path) -> Path:
    tree = sdist_tree("0.3.35")
    ensure_program(tree, cache, compiler_cache_dir=cache_root() / "ccache", build_lock=BUILD_LOCK)
    return tree


def _moe_gguf(path: Path, used: int) -> Path:
    w = gguf.GGUFWriter(str(path), "qwen3moe")
    w.add_block_count(1)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_expert_count(8)
    w.add_expert_used_count(used)
    w.add_tensor("blk.0.ffn_gate_exps.weight", np.ones((8, 128, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _log(tmp: Path, kernel: str) -> Path:
    log = tmp / "crash.log"
    log.write_text(_missing_log(_sources("0.3.35"), kernel) + "\n", encoding="utf-8")
    return log


def _dry(report: DoctorReport) -> list[Finding]:
    return [f for f in report.findings if f.observed_by == "dry-run"]


def test_the_pr_26212_case_is_named_on_0335(
    tree_0335: Path, cache: Path, tmp_path: Path, write_gguf: Callable[..., Path]
) -> None:
    # ffn_up f32 [64, 128]: kernel_mul_mv_f32_f16_4 is f32 weights by an f16 activation
    model = write_gguf()
    inputs = DoctorInputs(
        log=_log(tmp_path, "kernel_mul_mv_f32_f16_4"),
        gguf=model,
        tree=tree_0335,
        system=False,
        cache_dir=cache,
    )
    report = diagnose(inputs)
    (finding,) = _dry(report)
    assert finding.class_id == "kernel-missing" and finding.severity == "info"
    assert "dry-run with the tree" in finding.summary and "0.3.35" in finding.summary
    assert "tensor blk.0.ffn_up.weight (f32, [64, 128])" in finding.summary
    assert "apple9: missing-kernel: kernel_mul_mv_f32_f16_4" in finding.summary
    (run,) = report.dry_run
    assert run.named and set(run.verdicts) == {"apple7", "apple9", "apple10"}
    # the first error stays the log's own kernel-missing finding; the dry run is an info beside it
    assert report.problems[0].class_id == "kernel-missing" and report.problems[0].observed_by == "log"


def test_the_same_case_is_not_named_on_0336(
    tree_0336: Path, cache: Path, tmp_path: Path, write_gguf: Callable[..., Path]
) -> None:
    ensure_program(tree_0336, cache, compiler_cache_dir=cache_root() / "ccache", build_lock=BUILD_LOCK)
    inputs = DoctorInputs(
        log=_log(tmp_path, "kernel_mul_mv_f32_f16_4"),
        gguf=write_gguf(),
        tree=tree_0336,
        system=False,
        cache_dir=cache,
    )
    (run,) = diagnose(inputs).dry_run
    assert not run.named, run.verdicts  # 0.3.36's supports_op declines f32 x f16 (PR #26212)
    (finding,) = _dry(diagnose(inputs))
    assert "does not name kernel_mul_mv_f32_f16_4" in finding.summary


def test_a_moe_with_3_experts_per_token_is_named(tree_0335: Path, cache: Path, tmp_path: Path) -> None:
    model = _moe_gguf(tmp_path / "moe.gguf", 3)
    inputs = DoctorInputs(
        log=_log(tmp_path, "kernel_mul_mm_id_map0_ne20_3"),
        gguf=model,
        tree=tree_0335,
        system=False,
        cache_dir=cache,
    )
    report = diagnose(inputs)
    (run,) = report.dry_run
    assert run.named and "qwen3moe.expert_used_count = 3" in run.from_gguf
    assert run.line.split()[-1] == "doctor:kernel_mul_mm_id_map0_ne20_3"


def test_a_case_that_cannot_be_derived_says_why(tree_0335: Path, cache: Path, tmp_path: Path) -> None:
    # the GGUF says 8 experts per token: it never asks for ne20_3
    info = read_gguf(_moe_gguf(tmp_path / "moe8.gguf", 8))
    with pytest.raises(Exception, match="expert_used_count is 8: this model does not ask for it"):
        derive("kernel_mul_mm_id_map0_ne20_3", info, tree_0335)
    report = diagnose(
        DoctorInputs(
            log=_log(tmp_path, "kernel_mul_mm_id_map0_ne20_3"),
            gguf=tmp_path / "moe8.gguf",
            tree=tree_0335,
            system=False,
            cache_dir=cache,
        )
    )
    assert report.dry_run == [] and not _dry(report)
    assert any("dry-run: kernel_mul_mm_id_map0_ne20_3: the case cannot be derived" in n for n in report.notes)
    # no GGUF: nothing is invented
    report = diagnose(
        DoctorInputs(
            log=_log(tmp_path, "kernel_mul_mv_f32_f16_4"), tree=tree_0335, system=False, cache_dir=cache
        )
    )
    assert any("no GGUF given (--gguf)" in n for n in report.notes)


def test_the_cli_reports_the_dry_run(
    tree_0335: Path,
    cache: Path,
    tmp_path: Path,
    write_gguf: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from toolchain.cli import main

    monkeypatch.setenv("TOOLCHAIN_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    log = _log(tmp_path, "kernel_mul_mv_f32_f16_4")
    rc = main(
        ["doctor", str(log), "--gguf", str(write_gguf()), "--tree", str(tree_0335), "--no-system", "--json"]
    )
    out = capsys.readouterr()
    assert rc == 60
    data = json.loads(out.out[out.out.index("{") :])
    assert data["dry_run"][0]["named"] is True
    assert any(f["observed_by"] == "dry-run" for f in data["findings"])
    assert "missing-kernel: kernel_mul_mv_f32_f16_4" in " ".join((out.out + out.err).split())


def _fa_gguf(path: Path, key_length: int, value_length: int) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_embedding_length(384)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_key_length(key_length)
    w.add_value_length(value_length)
    w.add_tensor("blk.0.attn_q.weight", np.ones((4 * key_length, 384), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_flash_attention_head_size_pair_from_the_gguf_via_the_builds_checkout(
    tree_0335: Path, cache: Path, tmp_path: Path
) -> None:
    """K 96 / V 64 heads (the corpus's fa-dk96-dv64-vec: llama.cpp #28602): 0.3.35's library has no
    kernel_flash_attn_ext_vec_f16_dk96_dv64. The tree comes from --build's CMakeCache.txt."""
    # a Mach-O build dir cross-built here (fixtures/macho) whose CMakeCache.txt names the checkout
    build = build_variant(
        replace(variant("shared"), cache={"CMAKE_HOME_DIRECTORY:INTERNAL": str(tree_0335)}), tmp_path
    )
    kernel = "kernel_flash_attn_ext_vec_f16_dk96_dv64"
    inputs = DoctorInputs(
        log=_log(tmp_path, kernel),
        gguf=_fa_gguf(tmp_path / "fa.gguf", 96, 64),
        build=build,
        system=False,
        cache_dir=cache,
    )
    (run,) = diagnose(inputs).dry_run
    assert run.named, run.verdicts
    assert "llama.attention.key_length = 96" in run.from_gguf and "value_length = 64" in run.from_gguf
    # a model with 128/128 heads does not ask for that kernel: said, not run
    other = DoctorInputs(
        log=_log(tmp_path, kernel), gguf=_fa_gguf(tmp_path / "fa128.gguf", 128, 128), build=build,
        system=False, cache_dir=cache,
    )  # fmt: skip
    report = diagnose(other)
    assert report.dry_run == []
    assert any("key_length 128 / value_length 128: this model does not ask for it" in n for n in report.notes)


def test_a_shipped_build_is_dry_run_with_the_tree_its_library_matches(
    cache: Path, tmp_path: Path, write_gguf: Callable[..., Path]
) -> None:
    """doctor LOG --build <a real wheel> --gguf M: no checkout named anywhere, so the tree is the
    fetchable one whose library the wheel ships byte for byte (llama-cpp-py-sync 0.9756 ->
    llama-cpp-python 0.3.31, verify's tree match); kernel_mul_mv_f32_f16_4 is one of the kernels
    0.3.31's encoders ask for and its library lacks: named."""
    ensure_program(
        sdist_tree("0.3.31"), cache, compiler_cache_dir=cache_root() / "ccache", build_lock=BUILD_LOCK
    )
    with exclusive(cache_root() / ".sdists.lock", wait=1800):
        sdist = fetch_sdists(("0.3.31",), cache_root())["0.3.31"]
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    (sdists / sdist.name).symlink_to(sdist)
    wheel = real_build(next(b for b in CORPUS if (b.project, b.version) == ("llama-cpp-py-sync", "0.9756")))
    log = tmp_path / "crash.log"
    log.write_text(_missing_log(_sources("0.3.31"), "kernel_mul_mv_f32_f16_4") + "\n", encoding="utf-8")
    report = diagnose(
        DoctorInputs(
            log=log, gguf=write_gguf(), build=wheel, system=False, cache_dir=cache, sdists_dir=sdists
        )
    )
    assert any(
        n.startswith("dry-run tree: tree llama-cpp-python 0.3.31 sdist: the embedded Metal library")
        for n in report.notes
    )
    (run,) = report.dry_run
    assert run.named and "llama-cpp-python-0.3.31" in run.tree, run.verdicts
