"""One real build of the 0.3.36 tree (blas profile), its manifest, and the no-op rebuild."""

import json
import time
from pathlib import Path

import pytest

from tests.conftest import RealBuild, Upstream

pytestmark = pytest.mark.slow


def test_manifest_says_what_was_built_from_what(built_blas: RealBuild, upstream: Upstream) -> None:
    m = built_blas.manifest
    assert m["schema_version"] == 1 and m["kind"] == "build-manifest"
    assert m["status"] == "built"
    src = m["source"]
    assert src["kind"] == "git" and src["location"] == upstream.url and src["ref"] == "v0.3.36"
    assert src["commit"] == upstream.commits["0.3.36"] and len(src["commit"]) == 40
    assert m["profile"] == "blas"
    defines = m["cmake_defines"]
    assert defines["GGML_BLAS"] == "ON" and defines["GGML_BLAS_VENDOR"] == "OpenBLAS"
    assert defines["CMAKE_BUILD_TYPE"] == "Release" and defines["LLAMA_BUILD_SERVER"] == "OFF"
    assert "LLAMA_CURL" in m["skipped_options"]
    tools = m["tools"]
    assert tools["cmake"]["version"] and tools["ninja"]["version"] and tools["generator"] == "Ninja"
    assert {c["language"] for c in tools["compilers"]} >= {"C", "CXX"}
    assert all(c["version"] for c in tools["compilers"] if c["language"] in ("C", "CXX"))
    assert m["host"]["platform"] == "linux"
    names = {a["target"] for a in m["artifacts"]}
    assert "llama-completion" in names and {"llama", "ggml-base", "ggml-cpu", "ggml-blas"} <= names
    for art in m["artifacts"]:
        path = Path(art["path"])
        assert path.is_file() and len(art["sha256"]) == 64 and art["size"] == path.stat().st_size
    assert m["compiler_cache"]["tool"] in ("ccache", "sccache", "none")
    assert m["durations"]["configure"] > 0 and m["durations"]["build"] > 0
    # the build dir describes itself too
    assert json.loads((built_blas.build_dir / "build-manifest.json").read_text())["source"] == src


def test_second_build_is_a_no_op_that_says_so(built_blas: RealBuild) -> None:
    start = time.monotonic()
    done = built_blas.run("build", "--profile", "blas", "--json")
    wall = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["status"] == "up-to-date"
    assert "nothing to rebuild" in done.stderr and "up to date" in done.stderr
    assert manifest["durations"]["configure"] == 0.0
    assert manifest["artifacts"] == built_blas.manifest["artifacts"]
    assert wall < 60  # sanity only; the 2-second goal is measured by bench/


def test_another_copy_of_the_same_cmake_does_not_configure_again(
    built_blas: RealBuild, tmp_path: Path
) -> None:
    """Each nox session has its own pip CMake and Ninja: `nox -s build` then `nox -s coverage` must
    not configure (and relink) the build dir again because the paths differ."""
    tools = built_blas.manifest["tools"]
    assert isinstance(tools, dict)
    other = tmp_path / "other-venv" / "bin"
    other.mkdir(parents=True)
    (other / "cmake").symlink_to(Path(str(tools["cmake"]["path"])).resolve())
    done = built_blas.run_env(
        {"CMAKE_EXECUTABLE": str(other / "cmake")}, "build", "--profile", "blas", "--json"
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["tools"]["cmake"]["path"] == str(other / "cmake")
    assert manifest["status"] == "up-to-date" and manifest["durations"]["configure"] == 0.0, done.stderr
    assert "already configured with these options" in done.stderr


def test_an_option_the_tree_does_not_know_stops_the_build(built_blas: RealBuild) -> None:
    done = built_blas.run("build", "--profile", "blas", "--", "-DGGML_METLA=ON")
    assert done.returncode == 24, done.stderr
    assert "GGML_METLA" in done.stderr and "--allow-unknown-options" in done.stderr
    assert not (built_blas.project / ".toolchain" / "reports" / "build-manifest.json").exists()
    # the good build is still there and the next plain run is again a no-op
    again = built_blas.run("build", "--profile", "blas", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "up-to-date"
