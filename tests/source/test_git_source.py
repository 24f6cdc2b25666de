"""The git source against the local upstream (file://): every ref form, offline, dirty trees."""

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Upstream
from toolchain import source
from toolchain.config import Settings
from toolchain.errors import (
    AmbiguousRefError,
    DirtyWorkTreeError,
    OfflineMissingError,
    RefNotFoundError,
)
from toolchain.source.spec import SourceSpec


def resolve(settings: Settings, url: str, ref: str, offline: bool = False) -> str:
    return source.resolve(SourceSpec("git", url, ref), settings, offline=offline).commit


def test_every_ref_form_resolves_to_the_full_id(settings: Settings, upstream: Upstream) -> None:
    old, new = upstream.commits["0.3.20"], upstream.commits["0.3.36"]
    assert resolve(settings, upstream.url, "HEAD") == new
    assert resolve(settings, upstream.url, "master") == new
    assert resolve(settings, upstream.url, "release-0.3.20") == old
    assert resolve(settings, upstream.url, "v0.3.20") == old
    assert resolve(settings, upstream.url, old) == old
    assert resolve(settings, upstream.url, new[:9]) == new
    assert resolve(settings, upstream.url, old[:7].upper().lower()) == old


def test_plain_path_remote_works_too(settings: Settings, upstream: Upstream) -> None:
    assert resolve(settings, str(upstream.path), "v0.3.36") == upstream.commits["0.3.36"]


def test_shallow_fetch_of_a_pinned_commit(settings: Settings, upstream: Upstream) -> None:
    new = upstream.commits["0.3.36"]
    resolve(settings, upstream.url, new)
    mirror = source.git_source.mirror_for(settings, upstream.url)
    assert mirror.is_shallow(), "a pinned commit should be fetched with --depth=1"
    count = mirror.run(["rev-list", "--count", "--all"]).strip()
    assert count == "1"


def test_unknown_ref_and_commit(settings: Settings, upstream: Upstream) -> None:
    with pytest.raises(RefNotFoundError) as info:
        resolve(settings, upstream.url, "no-such-branch")
    assert info.value.exit_code == 11
    with pytest.raises(RefNotFoundError):
        resolve(settings, upstream.url, "f" * 40)
    with pytest.raises(RefNotFoundError):
        resolve(settings, upstream.url, "fffffff")


def test_offline_uses_the_mirror_only(settings: Settings, upstream: Upstream) -> None:
    new = upstream.commits["0.3.36"]
    with pytest.raises(OfflineMissingError) as info:
        resolve(settings, upstream.url, "HEAD", offline=True)
    assert "without --offline" in info.value.hint
    resolve(settings, upstream.url, "HEAD")
    # names and ids resolve offline once fetched; a remote that vanished does not matter
    gone = settings.project_root / "gone.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(upstream.path), str(gone)], check=True)
    url = gone.as_uri()
    resolve(settings, url, "v0.3.36")
    subprocess.run(["rm", "-rf", str(gone)], check=True)
    assert resolve(settings, url, "v0.3.36", offline=True) == new
    assert resolve(settings, url, new, offline=True) == new
    with pytest.raises(OfflineMissingError):
        resolve(settings, url, upstream.commits["0.3.20"], offline=True)


def test_ambiguous_abbreviation_lists_candidates(settings: Settings, tmp_path: Path) -> None:
    repo = tmp_path / "many.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    stream = []
    for i in range(1500):
        msg = f"c{i}".encode()
        stream.append(
            b"commit refs/heads/master\ncommitter t <t@t> 1000000000 +0000\n"
            + f"data {len(msg)}\n".encode()
            + msg
            + b"\n"
        )
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=b"".join(stream), check=True)
    ids = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--all"], capture_output=True, text=True
    ).stdout.split()
    prefix = next(p for p, n in Counter(i[:4] for i in ids).items() if n >= 2)
    url = repo.as_uri()
    resolve(settings, url, "master")
    with pytest.raises(AmbiguousRefError) as info:
        resolve(settings, url, prefix)
    assert info.value.exit_code == 12
    assert "more digits" in info.value.hint
    assert sum(1 for i in ids if i.startswith(prefix)) >= 2


def test_checkout_switches_and_refuses_dirty_trees(settings: Settings, upstream: Upstream) -> None:
    old, new = upstream.commits["0.3.20"], upstream.commits["0.3.36"]
    first = source.fetch(
        source.resolve(SourceSpec("git", upstream.url, "v0.3.20"), settings), settings, locked=False
    )
    assert first.commit == old and (first.path / "CMakeLists.txt").is_file()
    again = source.fetch(
        source.resolve(SourceSpec("git", upstream.url, "v0.3.20"), settings), settings, locked=False
    )
    assert again.reused

    readme = first.path / "README.md"
    original = readme.read_text()
    readme.write_text(original + "\nmy local note\n")
    (first.path / "my-new-file.txt").write_text("keep me")
    target = source.resolve(SourceSpec("git", upstream.url, "v0.3.36"), settings)
    with pytest.raises(DirtyWorkTreeError) as info:
        source.fetch(target, settings, locked=False)
    assert info.value.exit_code == 14
    assert "README.md" in info.value.message and "my-new-file.txt" in info.value.message
    assert readme.read_text().endswith("my local note\n"), "local change must survive"

    # --allow-dirty only where the tree already is at the wanted commit
    with pytest.raises(DirtyWorkTreeError):
        source.fetch(target, settings, locked=False, allow_dirty=True)
    same = source.resolve(SourceSpec("git", upstream.url, "v0.3.20"), settings)
    kept = source.fetch(same, settings, locked=False, allow_dirty=True)
    assert set(kept.local_changes) == {"README.md", "my-new-file.txt"}

    # --force moves the tree aside with every change in it, then checks out afresh
    moved = source.fetch(target, settings, locked=False, force=True)
    assert moved.commit == new
    saved = [p for p in settings.work_dir.iterdir() if p.name.startswith("src.saved-")]
    assert len(saved) == 1
    assert (saved[0] / "README.md").read_text().endswith("my local note\n")
    assert (saved[0] / "my-new-file.txt").read_text() == "keep me"


def test_a_foreign_directory_is_never_overwritten(settings: Settings, upstream: Upstream) -> None:
    settings.src_dir.mkdir(parents=True)
    (settings.src_dir / "precious.txt").write_text("mine")
    target = source.resolve(SourceSpec("git", upstream.url, "v0.3.36"), settings)
    with pytest.raises(DirtyWorkTreeError) as info:
        source.fetch(target, settings, locked=False)
    assert "not a checkout made by llama-toolchain" in info.value.message
    assert (settings.src_dir / "precious.txt").read_text() == "mine"
    source.fetch(target, settings, locked=False, force=True)
    orphan = next(p for p in settings.work_dir.iterdir() if p.name.startswith("src.orphaned-"))
    assert (orphan / "precious.txt").read_text() == "mine"


def test_lock_pins_survive_a_moved_branch(settings: Settings, upstream: Upstream, tmp_path: Path) -> None:
    """The lock stores the full id: building from it never re-resolves the branch name."""
    from toolchain.source import ensure_locked

    fork = tmp_path / "fork.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(upstream.path), str(fork)], check=True)
    locked = source.resolve(SourceSpec("git", fork.as_uri(), "master"), settings)
    subprocess.run(
        ["git", "-C", str(fork), "update-ref", "refs/heads/master", upstream.commits["0.3.20"]], check=True
    )
    assert ensure_locked(locked, settings).commit == upstream.commits["0.3.36"]
