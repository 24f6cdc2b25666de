"""Shared fixtures: the local llama.cpp upstream, a checked-out tree, fresh settings.

Inputs that are expensive and read-only (downloaded sdists, the local upstream built from them,
an unpacked tree) live in ``$TOOLCHAIN_TEST_CACHE`` (default ``~/.cache/llama-toolchain-tests``)
and are reused across runs; everything a test writes goes to its own tmp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.upstream.build_upstream import DEFAULT_VERSIONS, build_upstream, fetch_sdists  # noqa: E402
from toolchain.config import Settings  # noqa: E402
from toolchain.core.locking import exclusive  # noqa: E402


def test_cache_dir() -> Path:
    env = os.environ.get("TOOLCHAIN_TEST_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "llama-toolchain-tests"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@dataclass(frozen=True)
class Upstream:
    path: Path
    commits: dict[str, str]  # version -> commit id

    @property
    def url(self) -> str:
        return self.path.as_uri()


@pytest.fixture(scope="session")
def sdist_paths() -> dict[str, Path]:
    cache = test_cache_dir()
    with exclusive(cache / ".sdists.lock", wait=1800):
        return fetch_sdists(DEFAULT_VERSIONS, cache)


@pytest.fixture(scope="session")
def upstream(sdist_paths: dict[str, Path]) -> Upstream:
    """A bare repo with one commit per sdist version (tags v0.3.20, v0.3.36; master = newest)."""
    cache = test_cache_dir()
    with exclusive(cache / ".upstream.lock", wait=1800):
        commits = build_upstream(cache / "upstream.git", sdist_paths)
    return Upstream(cache / "upstream.git", commits)


def _tree(upstream: Upstream, version: str) -> Path:
    cache = test_cache_dir()
    dest = cache / f"tree-{version}"
    with exclusive(cache / f".tree-{version}.lock", wait=1800):
        marker = dest / ".toolchain-test-tree"
        if not marker.is_file() or marker.read_text() != upstream.commits[version]:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            archive = subprocess.run(
                ["git", "-C", str(upstream.path), "archive", "--format=tar", upstream.commits[version]],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
            marker.write_text(upstream.commits[version])
    return dest


@pytest.fixture(scope="session")
def tree_0336(upstream: Upstream) -> Path:
    """An unpacked llama.cpp tree (0.3.36 = upstream 0c1e57098). Read-only: do not modify."""
    return _tree(upstream, "0.3.36")


@pytest.fixture(scope="session")
def tree_0320(upstream: Upstream) -> Path:
    """An unpacked llama.cpp tree (0.3.20 = upstream f49e9178). Read-only: do not modify."""
    return _tree(upstream, "0.3.20")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fresh work dir and cache for one test; sdists are linked in from the test cache."""
    project = tmp_path / "project"
    project.mkdir()
    cache = tmp_path / "cache"
    (cache / "sdists").mkdir(parents=True)
    for sdist in (test_cache_dir() / "sdists").glob("*.tar.gz"):
        (cache / "sdists" / sdist.name).symlink_to(sdist)
    return Settings(
        project_root=project,
        work_dir=project / ".toolchain",
        cache_dir=cache,
        lock_path=project / "llama.lock",
        network_timeout=30.0,
    )


@pytest.fixture
def cli(settings: Settings) -> Iterator[object]:
    """Run ``llama-toolchain`` as a real subprocess in the test project; returns CompletedProcess."""

    def run(
        *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "TOOLCHAIN_CACHE": str(settings.cache_dir), "NO_COLOR": "1", **(env or {})}
        full_env.pop("GITHUB_ACTIONS", None)
        return subprocess.run(
            [sys.executable, "-m", "toolchain", *args],
            cwd=settings.project_root,
            env={**full_env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    yield run


@dataclass(frozen=True)
class RealBuild:
    project: Path
    cache: Path
    manifest: dict[str, object]

    @property
    def build_dir(self) -> Path:
        return Path(str(self.manifest["build_dir"]))

    def run(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return self.run_env({}, *args, timeout=timeout)

    def run_env(
        self, extra: dict[str, str], *args: str, timeout: float = 3600
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "TOOLCHAIN_CACHE": str(self.cache),
            "NO_COLOR": "1",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
        env.pop("GITHUB_ACTIONS", None)
        return subprocess.run(
            [sys.executable, "-m", "toolchain", *args],
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def built_blas(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    """A real build of the 0.3.36 tree of the local upstream with the blas profile (slow, once).

    The compiler cache is shared through the test cache dir, so a rerun on the same machine is
    fast; on a fresh machine (CI) this is a cold build of the `build` target group.
    """
    import json

    project = tmp_path_factory.mktemp("real-build")
    cache = project / "cache"
    (cache / "sdists").mkdir(parents=True)
    shared_ccache = test_cache_dir() / "ccache"
    shared_ccache.mkdir(exist_ok=True)
    (cache / "ccache").symlink_to(shared_ccache)
    build = RealBuild(project, cache, {})
    done = build.run("update", "--git", upstream.url, "--ref", "v0.3.36")
    assert done.returncode == 0, done.stderr
    done = build.run("build", "--profile", "blas")
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((project / ".toolchain" / "reports" / "build-manifest.json").read_text())
    return RealBuild(project, cache, manifest)


@pytest.fixture(scope="session")
def coverage_build(request: pytest.FixtureRequest) -> Path:
    """A real 0.3.36 blas build dir with the `coverage` target group (and llama-debug): the session's
    ``built_blas`` plus those targets (incremental), or ``$COVERAGE_TEST_BUILD_DIR`` (a developer's
    existing build of the same tree, to iterate fast)."""
    given = os.environ.get("COVERAGE_TEST_BUILD_DIR")
    if given:
        return Path(given).resolve()
    built: RealBuild = request.getfixturevalue("built_blas")
    done = built.run("build", "--profile", "blas", "--targets", "build,coverage", "--target", "llama-debug")
    assert done.returncode == 0, done.stdout + done.stderr
    return built.build_dir


def shared_settings(tmp: Path) -> Settings:
    """Settings whose cache is the test cache (the converter venv is reused across runs); work dir in tmp."""
    return Settings(
        project_root=tmp,
        work_dir=tmp / ".toolchain",
        cache_dir=test_cache_dir() / "convert-cache",
        lock_path=tmp / "llama.lock",
    )


@pytest.fixture(scope="session")
def converter_env(tree_0336: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    """The converter environment for the 0.3.36 tree (built once into the test cache: ~3 min cold)."""
    from toolchain.convert.env import ensure_env

    return ensure_env(tree_0336, shared_settings(tmp_path_factory.mktemp("env")))
