"""Content digests (toolchain/core/digests.py): a file is read once per process while it is unchanged,
and any change to it, even one that keeps its size and modification time, is a new digest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from toolchain.core import digests


def test_a_file_is_hashed_once_while_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF one")
    reads: list[Path] = []
    real = digests.sha256_file

    def counted(p: Path, chunk: int = 1 << 20) -> str:
        reads.append(p)
        return real(p, chunk)

    monkeypatch.setattr(digests, "sha256_file", counted)
    first = digests.file_sha256(path)
    assert first == hashlib.sha256(b"GGUF one").hexdigest()
    assert digests.file_sha256(path) == first and len(reads) == 1
    # same size, modification time put back: the change time still moves, so it is read again
    st = path.stat()
    path.write_bytes(b"GGUF two")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digests.file_sha256(path) == hashlib.sha256(b"GGUF two").hexdigest()
    assert len(reads) == 2


def test_a_tree_digest_sees_ggml_and_test_backend_ops_only(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "ggml" / "src").mkdir(parents=True)
    (tree / "tests").mkdir()
    (tree / "ggml" / "src" / "ggml.c").write_text("int x;")
    (tree / "tests" / "test-backend-ops.cpp").write_text("// cases")
    before = digests.tree_digest(tree)
    (tree / "README.md").write_text("not read")
    (tree / "tests" / "test-other.cpp").write_text("not read")
    assert digests.tree_digest(tree) == before
    (tree / "tests" / "test-backend-ops.cpp").write_text("// more cases")
    after = digests.tree_digest(tree)
    assert after != before
    (tree / "docs" / "ops").mkdir(parents=True)
    (tree / "docs" / "ops" / "Metal.csv").write_text("a,b")
    assert digests.tree_digest(tree) == after != digests.tree_digest(tree, Path("docs") / "ops")
