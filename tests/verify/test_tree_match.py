"""verify's tree match on real artifacts: which fetchable llama.cpp tree (a llama-cpp-python sdist's
vendored tree) a real wheel's embedded Metal library comes from, byte for byte, and the dry run of
that tree's built-in cases against the shipped library.

The real match: llama-cpp-py-sync 0.9756 (built from llama.cpp d0f9d2e5a, ggml 0.15.2) embeds
exactly what the embed step of the tree vendored by llama-cpp-python 0.3.31 (and 0.3.32) writes.
Searched for it: the llama-cpp-py-sync release history pairs each wheel with its llama.cpp commit;
its only sync at a commit an sdist names (f449e05 = 0.3.31's) was released as b9756, whose wheel was
in fact built at d0f9d2e5a, with the same library text. b7769 / b11739 (ggml 0.9.5 / 0.27.0),
xllamacpp 2026.10.11549 (0.26.0) and pywhispercpp 1.5.1 (0.13.1, 108 diff lines from 0.3.24's)
match no sdist tree. llama-cpp-python itself has no macOS wheels on PyPI.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from fixtures.real_builds import CORPUS, RealBuild
from fixtures.upstream.build_upstream import fetch_sdists
from tests.conftest import test_cache_dir as cache_dir
from tests.dryrun.conftest import BUILD_LOCK, sdist_tree
from tests.verify.test_real_builds import real_build
from toolchain.core.binlayout import macho_sections
from toolchain.core.locking import exclusive
from toolchain.dryrun.build import ensure_program
from toolchain.profiles import PROFILES
from toolchain.verify import verify_path
from toolchain.verify.tree_match import digests, kernel_files_embed, match_library

# the trees compared in CI: the match, its twin, the one before, the one per-kernel-file tree
VERSIONS = ("0.3.30", "0.3.31", "0.3.32", "0.3.36")


def _build(project: str, version: str) -> RealBuild:
    return next(b for b in CORPUS if b.project == project and b.version == version)


@pytest.fixture(scope="module")
def sdists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sdist cache holding the compared versions only (links to the tests' downloads)."""
    cache = cache_dir()
    with exclusive(cache / ".sdists.lock", wait=1800):
        paths = fetch_sdists(VERSIONS, cache)
    out = tmp_path_factory.mktemp("sdists")
    for p in paths.values():
        (out / p.name).symlink_to(p)
    return out


def _library(path: Path) -> bytes:
    ((_arch, raw),) = macho_sections(path.read_bytes(), "__DATA", "__ggml_metallib")
    return raw


def test_a_real_wheel_matches_its_sdist_tree_byte_for_byte(sdists: Path, tmp_path: Path) -> None:
    wheel = real_build(_build("llama-cpp-py-sync", "0.9756"))
    lib = wheel / "libggml-metal.dylib"
    trees = digests(sdists, tmp_path / "index")
    assert [t.version for t in trees] == list(VERSIONS)
    assert trees[-1].layout == "kernel-files" and trees[-1].embed_sha256  # 0.3.36: one piece per kernel file
    result = match_library(_library(lib), "embedded", lib.name, trees, sorted(wheel.glob("*.dylib")))
    assert result.match is not None, result.why
    m = result.match
    assert m.digest.name == "llama-cpp-python 0.3.31 sdist"
    assert m.also == ("llama-cpp-python 0.3.32 sdist",)  # the same library text, ggml 0.15.3
    assert m.digest.embed_sha256 == hashlib.sha256(_library(lib)).hexdigest()
    text = " ".join(m.evidence)
    assert "byte-identical to what its embed step writes" in text and "__embed_ggml-common.h__" in text
    assert "ggml version 0.15.2: the same string is in libggml-base" in text
    assert "f449e0553: not among the build's strings (a different commit with the same Metal library)" in text
    # the index is reused: a second read does not open the sdists
    assert digests(sdists, tmp_path / "index") == trees


def test_no_fetchable_tree_matches_a_newer_build(sdists: Path, tmp_path: Path) -> None:
    wheel = real_build(_build("llama-cpp-py-sync", "0.11739"))
    lib = wheel / "libggml-metal.dylib"
    trees = digests(sdists, tmp_path / "index")
    result = match_library(_library(lib), "embedded", lib.name, trees, [lib])
    assert result.match is None
    assert result.why.startswith(
        "no fetchable tree matches: the embedded Metal library of libggml-metal.dylib"
    )
    assert "none of the 4 trees compared" in result.why and "not compared" not in result.why


def test_the_per_kernel_file_embed_step_as_a_real_build_wrote_it(tmp_path: Path) -> None:
    """0.3.36's embed step read from its CMakeLists.txt (headers per kernel file, line deletions,
    inlining) gives a tri.metal piece that differs from the one b11739 (a later tree) ships only
    inside the inlined ggml-metal-impl.h: the procedure is the one real builds run."""
    tree = sdist_tree("0.3.36")
    rel = "ggml/src/ggml-metal/CMakeLists.txt"
    cmake = (tree / rel).read_text(encoding="utf-8")
    listed = re.search(r"set\(METALLIB_KERNEL_SOURCES\n(.*?)\)", cmake, re.S)
    assert listed is not None and "kernels/tri.metal" in listed.group(1)
    only_tri = cmake.replace(listed.group(1), "\n    kernels/tri.metal\n")

    def read(r: str) -> bytes | None:
        return (tree / r).read_bytes() if r and (tree / r).is_file() else None

    _layout, piece, _how = kernel_files_embed(read, rel, only_tri)
    assert piece is not None
    shipped = _library(real_build(_build("llama-cpp-py-sync", "0.11739")) / "libggml-metal.dylib").decode()
    starts = [m.start() for m in re.finditer(r"\n#ifndef GGML_METAL_IMPL\n", shipped)] + [len(shipped)]
    theirs = next(
        shipped[a:b] for a, b in zip(starts, starts[1:], strict=False) if "kernel_tri_" in shipped[a:b]
    )
    mine = piece.decode()
    assert mine.startswith("\n#ifndef GGML_METAL_IMPL\n") and '#include "' not in mine
    diff = [d for d in difflib.unified_diff(mine.splitlines(), theirs.splitlines(), lineterm="", n=0)]
    changed = [d[1:] for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    impl = (tree / "ggml/src/ggml-metal/ggml-metal-impl.h").read_text(encoding="utf-8").splitlines()
    assert 0 < len(changed) < 40
    removed = [d[1:] for d in diff if d.startswith("-") and not d.startswith("---")]
    assert removed and all(line in impl for line in removed), removed  # only ggml-metal-impl.h lines differ


def test_one_changed_byte_is_no_match(sdists: Path, tmp_path: Path) -> None:
    wheel = real_build(_build("llama-cpp-py-sync", "0.9756"))
    raw = bytearray(_library(wheel / "libggml-metal.dylib"))
    raw[len(raw) // 2] ^= 0x20
    result = match_library(bytes(raw), "embedded", "edited", digests(sdists, tmp_path / "index"), [])
    assert result.match is None and result.why.startswith("no fetchable tree matches")
    # unit: had 0.3.31's CHANGELOG named the commit the build carries (d0f9d2e5a), version and commit
    # would agree around another library text: a patched library, still no match
    trees = [
        replace(t, commit="d0f9d2e5a") if t.version == "0.3.31" else t
        for t in digests(sdists, tmp_path / "index")
    ]
    result = match_library(bytes(raw), "embedded", "edited", trees, sorted(wheel.glob("*.dylib")))
    assert result.match is None
    assert "ggml version 0.15.2 and llama.cpp d0f9d2e5a are llama-cpp-python 0.3.31 sdist's" in result.why
    assert "a patched library, not matched" in result.why


def test_verify_runs_the_dry_run_with_the_matched_tree(sdists: Path, tmp_path: Path) -> None:
    dryrun_cache = cache_dir() / "dryrun-cache"
    # the program of 0.3.31's tree, built under the machine's build lock (verify would build the
    # same content without it); the key is the tree's content, so verify's own unpacking finds it
    ensure_program(
        sdist_tree("0.3.31"), dryrun_cache, compiler_cache_dir=cache_dir() / "ccache", build_lock=BUILD_LOCK
    )
    wheel = real_build(_build("llama-cpp-py-sync", "0.9756"))
    v = verify_path(wheel, PROFILES["metal"], runtime=False, sdists_dir=sdists, cache_dir=dryrun_cache)
    assert v.tree_match.startswith("tree llama-cpp-python 0.3.31 sdist: the embedded Metal library")
    checks = [c for c in v.checks if c.name.startswith("metal-dryrun-kernels:")]
    assert {c.name.split(":", 1)[1] for c in checks} >= {"apple7", "apple9", "paravirtual"}
    for c in checks:
        assert c.observed_by == "static+dry-run"
        assert "dry-run with the tree llama-cpp-python 0.3.31 sdist" in c.found
        assert "built-in test-backend-ops cases" in c.found
    # 0.3.31's own built-in cases reach mat-vec kernels with f16 activations its library never had
    # (the llama.cpp PR #26212 / #27949 class): upstream's gap, named, with upstream's hint
    by = {c.name.split(":", 1)[1]: c for c in checks}
    assert by["paravirtual"].status == "pass"
    for p in ("apple7", "apple9", "apple10"):
        assert by[p].status == "fail" and "kernel_mul_mv_f32_f16_4" in by[p].evidence
        assert all(k.endswith(("_f16", "_f16_4", "_f16_short")) for k in by[p].evidence), by[p].evidence
        assert by[p].hint.startswith("upstream's gap, not this build's: llama-cpp-python 0.3.31 sdist's own")
    assert v.verified and v.era == "registry"


def test_without_sdists_no_match_is_attempted() -> None:
    v = verify_path(real_build(_build("llama-cpp-py-sync", "0.9756")), PROFILES["metal"], runtime=False)
    assert v.tree_match == ""
    (c,) = [c for c in v.checks if c.name == "metal-dryrun-kernels"]
    assert c.status == "unverifiable"


def test_a_source_library_beside_the_binary_is_compared_as_it_is(tmp_path: Path) -> None:
    """gpt4all 2.0.2 (2023) ships ggml-metal.metal beside its library: compared with the trees'
    ggml-metal.metal as it is (0.1.85, the sdist of that era): not the same text."""
    cache = cache_dir()
    with exclusive(cache / ".sdists.lock", wait=1800):
        paths = fetch_sdists(("0.1.85",), cache)
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    (sdists / paths["0.1.85"].name).symlink_to(paths["0.1.85"])
    (tree,) = digests(sdists, tmp_path / "index")
    assert tree.layout == "none" and tree.source_sha256  # no embed step in 2023, a source file
    lib = real_build(_build("gpt4all", "2.0.2")).parent / "ggml-metal.metal"
    result = match_library(lib.read_bytes(), "beside", lib.name, [tree], [])
    assert result.match is None
    assert result.why.startswith(
        "no fetchable tree matches: the Metal source ggml-metal.metal beside the binary"
    )
    same = match_library((sdist_tree("0.1.85") / "ggml-metal.metal").read_bytes(), "beside", "x", [tree], [])
    assert same.match is not None and "its ggml-metal.metal" in same.match.evidence[0]


def test_the_cli_says_no_fetchable_tree_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolchain.cli import main

    cache = tmp_path / "cache"
    (cache / "sdists").mkdir(parents=True)
    with exclusive(cache_dir() / ".sdists.lock", wait=1800):
        sdist = fetch_sdists(("0.3.36",), cache_dir())["0.3.36"]
    (cache / "sdists" / sdist.name).symlink_to(sdist)
    monkeypatch.setenv("TOOLCHAIN_CACHE", str(cache))
    monkeypatch.setenv("COLUMNS", "400")
    path = real_build(_build("llama-cpp-py-sync", "0.11739"))
    rc = main(["verify", str(path), "--no-runtime", "--profile", "metal", "--work-dir", str(tmp_path / "w")])
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())
    assert rc == 0  # the static checks establish the backend; the dry-run check is unverifiable
    assert "tree match (static only): no fetchable tree matches: the embedded Metal library of" in text
    assert "equals none of the 1 trees compared (llama-cpp-python 0.3.36 sdist)" in text
    data = json.loads((tmp_path / "w" / "reports" / "verify.json").read_text(encoding="utf-8"))
    assert data["tree_match"].startswith("no fetchable tree matches")


def test_the_same_ggml_version_is_not_a_match(tmp_path: Path) -> None:
    """pywhispercpp 1.5.1 (whisper.cpp) ships ggml 0.13.1, the version of the trees of 0.3.24 … 0.3.28,
    but another library text: no match, and the version is named as shared, not as evidence."""
    cache = cache_dir()
    with exclusive(cache / ".sdists.lock", wait=1800):
        paths = fetch_sdists(("0.3.24", "0.3.25"), cache)
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    for p in paths.values():
        (sdists / p.name).symlink_to(p)
    wheel = real_build(_build("pywhispercpp", "1.5.1"))
    lib = wheel / "libggml-metal.dylib"
    result = match_library(
        _library(lib), "embedded", lib.name, digests(sdists, tmp_path / "i"), sorted(wheel.glob("*.dylib"))
    )
    assert result.match is None
    assert "the build's ggml version 0.13.1 (libggml-base" in result.why
    assert "is also that of 0.3.24, 0.3.25, whose libraries differ" in result.why


def test_verify_reports_the_source_beside_the_binary_unmatched(tmp_path: Path) -> None:
    cache = cache_dir()
    with exclusive(cache / ".sdists.lock", wait=1800):
        paths = fetch_sdists(("0.1.85",), cache)
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    (sdists / paths["0.1.85"].name).symlink_to(paths["0.1.85"])
    build = real_build(_build("gpt4all", "2.0.2"))
    v = verify_path(build, PROFILES["metal"], runtime=False, sdists_dir=sdists, cache_dir=tmp_path / "c")
    assert v.tree_match.startswith(
        "no fetchable tree matches: the Metal source ggml-metal.metal beside the binary"
    )
    assert "none of the 1 trees compared (llama-cpp-python 0.1.85 sdist)" in v.tree_match
    assert v.ok and v.era == "pre-backend"
