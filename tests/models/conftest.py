"""The converter environment for the 0.3.36 tree (built once into the test cache: ~3 min cold)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import test_cache_dir
from toolchain.config import Settings
from toolchain.convert.env import ConverterEnv, ensure_env


def shared_settings(tmp: Path) -> Settings:
    """Settings whose cache is the test cache (the venv is reused across runs); work dir in tmp."""
    return Settings(
        project_root=tmp,
        work_dir=tmp / ".toolchain",
        cache_dir=test_cache_dir() / "convert-cache",
        lock_path=tmp / "llama.lock",
    )


@pytest.fixture(scope="session")
def converter_env(tree_0336: Path, tmp_path_factory: pytest.TempPathFactory) -> ConverterEnv:
    return ensure_env(tree_0336, shared_settings(tmp_path_factory.mktemp("env")))
