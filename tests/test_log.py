"""Output under GitHub Actions: folded groups and error annotations."""

import pytest

from toolchain.log import Log


def test_github_groups_and_annotations(capsys: pytest.CaptureFixture[str]) -> None:
    log = Log(github=True)
    with log.step("build llama-completion"):
        log.info("compiling")
    log.error("the build failed:\n  FAILED: x.o 100%", title="build failed")
    log.warn("careful")
    err = capsys.readouterr().err
    assert "::group::build llama-completion" in err and "::endgroup::" in err
    assert "::error title=build failed::the build failed:%0A  FAILED: x.o 100%25" in err
    assert "::warning::careful" in err


def test_progress_without_a_terminal_prints_a_line_per_decile(capsys: pytest.CaptureFixture[str]) -> None:
    log = Log(github=True)
    with log.progress("compiling", total=None) as bar:
        for i in range(1, 101):
            bar.update(i, 100)
    lines = [line for line in capsys.readouterr().err.splitlines() if "compiling" in line]
    assert 5 <= len(lines) <= 11 and lines[-1].strip().endswith("100/100")
