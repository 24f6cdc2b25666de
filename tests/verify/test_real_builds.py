"""verify on real macOS builds other people made (PyPI wheels, downloaded and cached): every build
judged right and its era named. The CI share is ``ci=True`` in fixtures/real_builds.py; the whole
corpus runs with TOOLCHAIN_REAL_BUILDS=all (or bench/bench_real_builds.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures.real_builds import CORPUS, RealBuild, target
from tests.conftest import test_cache_dir as cache_dir
from toolchain.core.locking import exclusive
from toolchain.profiles import PROFILES
from toolchain.verify import verify_path

ALL = os.environ.get("TOOLCHAIN_REAL_BUILDS") == "all"
CHOSEN = [b for b in CORPUS if b.ci or ALL]


def real_build(build: RealBuild) -> Path:
    cache = cache_dir()
    with exclusive(cache / ".real-builds.lock", wait=1800):
        return target(build, cache)


@pytest.mark.parametrize(
    "build", CHOSEN, ids=[f"{b.id}:{b.path.rsplit('/', 1)[-1] or 'wheel'}" for b in CHOSEN]
)
def test_real_build_verdict_and_era(build: RealBuild) -> None:
    path = real_build(build)
    v = verify_path(path, PROFILES["metal"], runtime=False)
    ok = v.ok and v.verified
    failed = {c.name for c in v.failures}
    assert ok == build.ok, [(c.name, c.arch, c.found) for c in v.failures]
    if not build.ok:
        assert failed == build.failing, [(c.name, c.arch, c.found) for c in v.failures]
    assert v.era == build.era
    regs = [c for c in v.checks if c.name == "registration"]
    assert sorted(c.arch or "arm64" for c in regs) == sorted(
        build.archs if len(build.archs) > 1 else ("arm64",)
    )
    if build.era:
        assert all(f"(era: {build.era}, " in c.found for c in regs if c.status == "pass")
