"""The dry-run program, built once per tree content into the test cache.

Compiling it (ggml, test-backend-ops.cpp at -O0, the six Metal C++ files) takes a few minutes on
2 cores; the compile holds the cache's native-build lock and, passed by these tests only, this
machine's build lock (/tmp/llama-build.lock), as every llama.cpp build here must. Later sessions find
it cached.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import test_cache_dir
from toolchain.dryrun.build import DryRunProgram, ensure_program
from toolchain.dryrun.records import DryRun

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dryrun"
# the machine's build lock (TOOLCHAIN_BUILD_LOCK where the machine has its own, e.g. /work/locks/build.lock)
BUILD_LOCK = Path(os.environ.get("TOOLCHAIN_BUILD_LOCK", "/tmp/llama-build.lock"))


@pytest.fixture(scope="session")
def dryrun_cache() -> Path:
    path = test_cache_dir() / "dryrun-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def program_0336(tree_0336: Path, dryrun_cache: Path) -> DryRunProgram:
    return ensure_program(
        tree_0336, dryrun_cache, compiler_cache_dir=test_cache_dir() / "ccache", build_lock=BUILD_LOCK
    )


def moe_run(
    tree: Path,
    cache: Path,
    work: Path,
    k: int,
    profiles: list[str] | None = None,
    batches: tuple[str, ...] = ("generation", "prompt"),
) -> DryRun:
    """The dry run of the tiny Qwen3-MoE with ``k`` experts per token (fixtures/dryrun/moe), both
    batches unless told which."""
    from toolchain.dryrun.run import dry_run

    moe = FIXTURES / "moe"
    files = [(b, moe / f"qwen3moe-k{k}-f16-{b}.ops") for b in batches]
    return dry_run(tree, cache, work, batches=files, profiles=profiles)


def sdist_tree(version: str) -> Path:
    """The llama.cpp tree vendored by llama-cpp-python ``version``, unpacked once into the test
    cache from its sdist (downloaded into the cache when missing). Read-only: do not modify."""
    from fixtures.upstream.build_upstream import fetch_sdists
    from toolchain.core.locking import exclusive
    from toolchain.source.sdist import extract_vendor_tree

    cache = test_cache_dir()
    dest = cache / f"sdist-tree-{version}"
    with exclusive(cache / f".sdist-tree-{version}.lock", wait=1800):
        done = dest / ".toolchain-test-tree"
        if not done.is_file():
            with exclusive(cache / ".sdists.lock", wait=1800):
                sdist = fetch_sdists((version,), cache)[version]
            dest.mkdir(parents=True, exist_ok=True)
            tree, _ = extract_vendor_tree(sdist, dest / "src")
            done.write_text(str(tree.relative_to(dest)))
        return dest / done.read_text()


# a ggml-org/ggml clone (the session's snapshot by default): trees of commits no sdist carries
GGML_GIT = Path(os.environ.get("TOOLCHAIN_GGML_GIT", "/work/.mirror/ggml-org+ggml/repo"))
needs_ggml_git = pytest.mark.skipif(
    not (GGML_GIT / "HEAD").is_file(), reason=f"no ggml-org/ggml clone at {GGML_GIT} (TOOLCHAIN_GGML_GIT)"
)


def ggml_git_tree(commit: str) -> Path:
    """A tree in llama.cpp's layout from a ggml-org/ggml commit of ``GGML_GIT`` (the repository as
    ``ggml/``, its own ``tests/test-backend-ops.cpp`` as ``tests/``, as bench/replay_corpus.py
    makes it), written once into the test cache. Read-only: do not modify."""
    import subprocess

    from toolchain.core.locking import exclusive

    cache = test_cache_dir()
    dest = cache / f"ggml-tree-{commit}"
    with exclusive(cache / f".ggml-tree-{commit}.lock", wait=1800):
        done = dest / ".toolchain-test-tree"
        if not done.is_file():
            import shutil

            shutil.rmtree(dest, ignore_errors=True)
            (dest / "ggml").mkdir(parents=True)
            archive = subprocess.run(
                ["git", "-C", str(GGML_GIT), "archive", "--format=tar", commit],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(dest / "ggml")], input=archive, check=True)
            (dest / "tests").mkdir()
            shutil.copy(dest / "ggml/tests/test-backend-ops.cpp", dest / "tests/test-backend-ops.cpp")
            done.write_text(commit)
    return dest
