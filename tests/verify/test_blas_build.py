"""The real Linux BLAS build of llama.cpp: static (ELF) and run-time verification for real.

``blas_dir`` (tests/verify/conftest.py) is the build dir of the ``built_blas`` session fixture
(bin/ with llama-completion and libggml*.so).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toolchain.errors import VerifyError
from toolchain.profiles import PROFILES
from toolchain.verify import require_ok, verify_path

pytestmark = pytest.mark.slow


def test_blas_build_verifies_statically(blas_dir: Path) -> None:
    v = verify_path(blas_dir, PROFILES["blas"], runtime=False)
    assert v.ok, v.failures
    checks = {c.name: c for c in v.checks}
    assert checks["registration"].found.startswith("ggml_backend_blas_reg linked: llama-completion ->")
    assert checks["registration"].file.startswith("bin/libggml-blas.so")
    assert checks["linked-libraries"].found == "links libopenblas.so.0"
    assert checks["registration:cpu"].status == "pass"
    assert {c.observed_by for c in v.checks} == {"static"}


def test_blas_build_verifies_at_run_time(blas_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "reports" / "verify.json"
    v = verify_path(blas_dir, PROFILES["blas"], runtime=True, report=report, timeout=300)
    assert v.ok, v.failures
    assert v.device_class == "real"
    (dev,) = v.devices
    assert (dev.name, dev.description, dev.device_class) == ("BLAS", "OpenBLAS", "real")
    checks = {c.name: c for c in v.checks}
    assert checks["runtime.device"].status == "pass"
    assert checks["runtime.one-token"].status == "pass"
    assert checks["runtime.graph"].status == "pass" and "BLAS" in checks["runtime.graph"].found
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["kind"] == "verify" and data["ok"] is True and data["device_class"] == "real"
    assert {c["observed_by"] for c in data["checks"]} == {"static", "device"}
    assert (tmp_path / "reports" / "verify-logs" / "one-token.log").is_file()


def test_blas_build_is_not_a_vulkan_build(blas_dir: Path) -> None:
    v = verify_path(blas_dir, PROFILES["vulkan"], runtime=False)
    (failure,) = v.failures
    assert failure.name == "registration"
    assert failure.hint == "built without Vulkan: rebuild with -DGGML_VULKAN=ON"
    with pytest.raises(VerifyError, match="ggml_backend_vk_reg"):
        require_ok(v)


def _relocatable_copy(built: Path, dest: Path) -> Path:
    """bin/ copied with every RUNPATH rewritten to $ORIGIN (as an install would have it); the
    build tree's own RUNPATH is absolute and would still find the originals."""
    import lief

    shutil.copytree(built / "bin", dest / "bin", symlinks=True)
    for path in (dest / "bin").iterdir():
        if path.is_symlink() or path.read_bytes()[:4] != b"\x7fELF":
            continue
        binary = lief.ELF.parse(str(path))
        for entry in binary.dynamic_entries:
            if entry.tag == lief.ELF.DynamicEntry.TAG.RUNPATH:
                entry.paths = ["$ORIGIN"]
        binary.write(str(path))
    return dest


def test_origin_runpath_resolves_in_a_relocated_copy(blas_dir: Path, tmp_path: Path) -> None:
    copy = _relocatable_copy(blas_dir, tmp_path / "build")
    v = verify_path(copy, PROFILES["blas"], runtime=False)
    assert v.ok, v.failures


def test_a_missing_backend_library_breaks_the_graph(blas_dir: Path, tmp_path: Path) -> None:
    copy = _relocatable_copy(blas_dir, tmp_path / "build")
    for lib in (copy / "bin").glob("libggml-blas.so*"):
        lib.unlink()
    v = verify_path(copy, PROFILES["blas"], runtime=False)
    failed = {c.name for c in v.failures}
    assert failed == {"dependencies"}, v.failures
    (failure,) = v.failures
    assert failure.found.startswith("libggml.so") and "needs libggml-blas.so.0: not found" in failure.found
    assert "moved away from its libraries" in failure.hint
    reg = next(c for c in v.checks if c.name == "registration")
    assert reg.status == "unverifiable"  # the library that would carry it is gone: no false "built without"


def test_a_crashing_build_is_a_verdict_with_its_last_lines(blas_dir: Path, tmp_path: Path) -> None:
    bad_model = tmp_path / "broken.gguf"
    bad_model.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    v = verify_path(
        blas_dir, PROFILES["blas"], runtime=True, model=bad_model, log_dir=tmp_path / "logs", timeout=120
    )
    run = next(c for c in v.checks if c.name == "runtime.one-token")
    assert run.status == "fail" and run.evidence
    assert not v.ok
