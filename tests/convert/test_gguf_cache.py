"""Validated GGUFs in the toolchain cache: a fresh work dir with the cache restored (a warm CI job)
converts nothing, and a changed converter converts again. Real converter (the 0.3.36 tree's, in
the test cache's converter environment); no build: without a loader the verdict is "not-loaded",
which the cache keeps like a pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import test_cache_dir as shared_test_cache
from toolchain.config import Settings
from toolchain.convert.env import ConverterEnv
from toolchain.convert.results import Conversion
from toolchain.convert.stage import convert_architectures
from toolchain.core.hashing import sha256_file
from toolchain.models.spec import load_specs

LLAMA = load_specs()["llama"]


def _settings(root: Path, cache: Path) -> Settings:
    return Settings(
        project_root=root, work_dir=root / ".toolchain", cache_dir=cache, lock_path=root / "llama.lock"
    )


def _cache(tmp_path: Path) -> Path:
    """A cache of its own (no GGUF in it yet), sharing the test cache's converter env and tokenizers."""
    cache = tmp_path / "cache"
    cache.mkdir()
    shared = shared_test_cache() / "convert-cache"
    for name in ("converter-envs", "tokenizers"):
        # made here when no earlier test has (a link to nothing trips the stage's mkdir)
        (shared / name).mkdir(parents=True, exist_ok=True)
        (cache / name).symlink_to(shared / name)
    return cache


def _convert(tree: Path, work: Path, cache: Path, bin_dir: Path) -> Conversion:
    return convert_architectures(
        [LLAMA], ("f16",), _settings(work, cache), tree=tree, write=False, bin_dir=bin_dir
    )


@pytest.fixture
def first(tree_0336: Path, converter_env: ConverterEnv, tmp_path: Path) -> tuple[Conversion, Path, Path]:
    """A conversion in work dir a/ with a cache of its own: (conversion, cache, bin dir without a loader)."""
    cache, no_loader = _cache(tmp_path), tmp_path / "bin"
    no_loader.mkdir()
    return _convert(tree_0336, tmp_path / "a", cache, no_loader), cache, no_loader


def test_a_fresh_work_dir_converts_nothing_the_cache_holds(
    tree_0336: Path, first: tuple[Conversion, Path, Path], tmp_path: Path
) -> None:
    conversion, cache, no_loader = first
    made = conversion.results[0]
    assert made.status == "not-loaded" and not made.cached and conversion.converter_startup_seconds > 0
    again = _convert(tree_0336, tmp_path / "b", cache, no_loader)
    kept = again.results[0]
    assert kept.cached and kept.status == made.status and kept.tensor_count == made.tensor_count
    assert again.converter_startup_seconds == 0.0  # the converter never started
    assert not list((tmp_path / "b" / ".toolchain" / "models").glob("toolchain-convert*.log"))
    assert kept.gguf is not None and made.gguf is not None and kept.gguf.parent.is_relative_to(tmp_path / "b")
    assert sha256_file(kept.gguf) == sha256_file(made.gguf)
    # one file on disk for the two work dirs and the cache (hard links), not three copies
    assert kept.gguf.stat().st_ino == made.gguf.stat().st_ino and kept.gguf.stat().st_nlink == 3


def test_a_changed_converter_converts_again(
    tree_0336: Path, first: tuple[Conversion, Path, Path], tmp_path: Path
) -> None:
    conversion, cache, no_loader = first
    # the same tree but for two bytes more in the converter (the converter's requirements and
    # gguf-py copied, the converter environment stays the same; everything else a symlink)
    changed = tmp_path / "tree"
    changed.mkdir()
    for entry in tree_0336.iterdir():
        if entry.name.startswith("requirements") or entry.name == "gguf-py":
            copy = shutil.copytree if entry.is_dir() else shutil.copyfile
            copy(entry, changed / entry.name)
        elif entry.name != "convert_hf_to_gguf.py":
            (changed / entry.name).symlink_to(entry)
    (changed / "convert_hf_to_gguf.py").write_text(
        (tree_0336 / "convert_hf_to_gguf.py").read_text() + "\n#\n"
    )
    made = conversion.results[0].gguf
    assert made is not None
    digest = sha256_file(made)
    # converted again in the same work dir: the file is replaced, the cache entry it was linked to kept
    again = _convert(changed, tmp_path / "a", cache, no_loader)
    assert again.converter_env == conversion.converter_env
    assert not again.results[0].cached and again.converter_startup_seconds > 0
    restored = _convert(tree_0336, tmp_path / "c", cache, no_loader).results[0]
    assert restored.cached and restored.gguf is not None and sha256_file(restored.gguf) == digest


def test_a_new_loader_checks_the_cached_files_again_once(
    tree_0336: Path, first: tuple[Conversion, Path, Path], coverage_build: Path, tmp_path: Path
) -> None:
    """A new build (a new loader) makes every kept verdict stale but not the files: they are
    checked again, not converted, and the new verdict goes back into the cache, so the next fresh
    work dir with the same build reuses it (a warm CI job after a rebuild validates nothing)."""
    conversion, cache, _ = first
    assert conversion.results[0].status == "not-loaded"
    bins = coverage_build / "bin"
    rechecked = _convert(tree_0336, tmp_path / "b", cache, bins)
    result = rechecked.results[0]
    assert result.status == "pass" and result.loaded_by and result.cached
    assert rechecked.converter_startup_seconds == 0.0  # checked again, not converted
    assert result.gguf is not None and result.gguf.with_name(result.gguf.name + ".load.log").is_file()
    reused = _convert(tree_0336, tmp_path / "c", cache, bins).results[0]
    assert reused.status == "pass" and reused.cached and reused.gguf is not None
    assert not reused.gguf.with_name(reused.gguf.name + ".load.log").exists(), "the loader ran again"
