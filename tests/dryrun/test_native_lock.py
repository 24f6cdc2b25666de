"""Native builds of the toolchain (oracle probe, dry run) hold the cache's own lock: two runs
sharing a cache never compile at once, with no environment variable to set."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from toolchain.builder.native import cmake_build, native_build_lock
from toolchain.log import LOG


def _project(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.14)\nproject(t C)\nadd_executable(hello hello.c)\n"
    )
    (src / "hello.c").write_text("int main(void) { return 0; }\n")
    return src


def test_a_build_waits_for_the_cache_lock_held_by_another_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, cache, root = _project(tmp_path), tmp_path / "cache", tmp_path / "program"
    build = root / "build"
    waiting = threading.Event()
    info = LOG.info

    def spy(message: str) -> None:
        if message.startswith("waiting for native builds of the toolchain in"):
            waiting.set()
        info(message)

    monkeypatch.setattr(LOG, "info", spy)
    result: list[str | None] = []
    with native_build_lock(cache):  # another run compiling in this cache
        worker = threading.Thread(
            target=lambda: result.append(
                cmake_build(src, root, "hello", {}, cache, None, name="hello", log=tmp_path / "build.log")
            )
        )
        worker.start()
        assert waiting.wait(timeout=120), "the build did not wait for the lock"
        assert not build.exists()  # nothing configured while the other run holds the lock
    worker.join(timeout=300)
    assert result == [None]
    assert (build / "hello").is_file()


def test_a_failed_compile_names_the_step_and_the_error(tmp_path: Path) -> None:
    src = _project(tmp_path)
    (src / "hello.c").write_text("int main(void) { return undefined_thing; }\n")
    failed = cmake_build(
        src, tmp_path / "p", "hello", {}, tmp_path / "c", None, name="hello", log=tmp_path / "log"
    )
    assert failed is not None and failed.startswith("hello does not compile against this tree: ")
    assert "undefined_thing" in failed
