"""Fixtures of the verify tests: the Mach-O fixture builds and the real BLAS build's dir.

``macho_fixtures`` cross-builds every variant of fixtures/macho once per session (a few
seconds). clang / lld missing is a failure (FixtureToolError), never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures.macho.build_fixtures import build_all


@pytest.fixture(scope="session")
def macho_fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """variant name -> the path to verify (see fixtures/macho/build_fixtures.py VARIANTS)."""
    return build_all(tmp_path_factory.mktemp("macho"))


@pytest.fixture(scope="session")
def blas_dir(request: pytest.FixtureRequest) -> Path:
    """The build dir of a real Linux BLAS build: the session fixture ``built_blas`` (tests/conftest.py,
    slow: builds llama.cpp once), or an existing build dir given in $TOOLCHAIN_TEST_BLAS_BUILD
    (a developer's ``.toolchain/build/blas-*``) to skip that build. Never skipped."""
    env = os.environ.get("TOOLCHAIN_TEST_BLAS_BUILD")
    if env:
        path = Path(env)
        assert (path / "bin").is_dir(), f"TOOLCHAIN_TEST_BLAS_BUILD={env} has no bin/"
        return path
    built = request.getfixturevalue("built_blas")
    return Path(built.build_dir) if hasattr(built, "build_dir") else Path(built)


@pytest.fixture(scope="session")
def sdk_fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The issue-#18 variants (fixtures/macho/sdk_variants.py): SDK versions, LC_VERSION_MIN_MACOSX,
    builds without the CPU backend."""
    from fixtures.macho.sdk_variants import SDK_VARIANTS

    return build_all(tmp_path_factory.mktemp("macho-sdk"), SDK_VARIANTS)
