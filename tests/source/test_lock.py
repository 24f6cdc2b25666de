from pathlib import Path

import pytest

from toolchain.errors import ConfigError
from toolchain.source.lock import ResolvedSource, SdistInfo, read_lock, write_lock

GIT = ResolvedSource(
    kind="git",
    location="https://github.com/ggml-org/llama.cpp",
    ref="HEAD",
    commit="0c1e57098" + "0" * 31,
    resolved_at="2026-11-26T00:00:00Z",
)
SDIST = ResolvedSource(
    kind="pypi-sdist",
    location="llama-cpp-python==0.3.36",
    ref="0.3.36",
    commit="a" * 40,
    resolved_at="2026-11-26T00:00:00Z",
    sdist=SdistInfo(
        "llama_cpp_python-0.3.36.tar.gz", "b" * 64, "https://files/x.tar.gz", "0.3.36", "0c1e57098"
    ),
)


@pytest.mark.parametrize("source", [GIT, SDIST])
def test_round_trip(tmp_path: Path, source: ResolvedSource) -> None:
    path = tmp_path / "llama.lock"
    write_lock(path, source)
    assert read_lock(path) == source
    assert path.read_text().startswith("# llama.lock")


def test_shipped_lock_is_valid() -> None:
    lock = read_lock(Path(__file__).resolve().parents[2] / "llama.lock")
    assert lock.kind == "pypi-sdist"
    assert lock.sdist is not None and lock.sdist.upstream_commit


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace('commit = "' + "a" * 40, 'commit = "' + "a" * 12), "not a full commit id"),
        (lambda t: t.replace('commit = "' + "a" * 40, 'commit = "' + "z" * 40), "not a full commit id"),
        (lambda t: t.replace('kind = "pypi-sdist"', 'kind = "svn"'), "kind must be"),
        (lambda t: t.replace("schema_version = 1", "schema_version = 9"), "schema_version"),
        (lambda t: t.replace('sha256 = "' + "b" * 64, 'sha256 = "xyz'), "sha256"),
        (lambda t: t + "\n[[[broken", "not valid TOML"),
        (
            lambda t: t.replace('location = "llama-cpp-python==0.3.36"', 'location = "numpy==1"'),
            "names 'numpy'",
        ),
        (lambda t: t.split("[source]")[0], "missing [source]"),
    ],
)
def test_hand_edited_lock_is_refused_with_the_field_named(tmp_path: Path, edit, needle: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "llama.lock"
    write_lock(path, SDIST)
    path.write_text(edit(path.read_text()))
    with pytest.raises(ConfigError) as info:
        read_lock(path)
    assert needle in info.value.message
    assert info.value.exit_code == 3


def test_missing_lock_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_lock(tmp_path / "llama.lock")
    assert "llama-toolchain update" in info.value.hint
