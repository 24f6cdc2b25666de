"""Output under GitHub Actions: folded groups and error annotations."""

import pytest

from toolchain.log import Log, verbatim


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


@pytest.mark.parametrize("github", [False, True])
def test_text_is_printed_verbatim_never_as_markup_or_emoji(
    github: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Brackets, closing tags and emoji codes from logs, refs and paths survive as they are."""
    log = Log(github=github)
    for text in ("[/Users/me/q.gguf]", "missing [source] table", "ggml-metal.m:1234: x", "ref a[/x] [bold]b"):
        log.info(text)
        log.warn(text)
        log.error(text, title="[t]")
        log.ok(text)
        with log.step(text):
            pass
    err = capsys.readouterr().err
    for text in ("[/Users/me/q.gguf]", "missing [source] table", "ggml-metal.m:1234: x", "ref a[/x] [bold]b"):
        assert err.count(text) >= (4 if github else 5), (text, err)
    assert "🔢" not in err and "[t]" in err


@pytest.mark.parametrize("github", [False, True])
def test_terminal_escape_sequences_are_neutralised(github: bool, capsys: pytest.CaptureFixture[str]) -> None:
    log = Log(github=github)
    hostile = "clear\x1b[2J\x1b[H osc52\x1b]52;c;ZXZpbA==\x07 csi\x9b31m bell\x07"
    log.info(hostile)
    log.warn(hostile)
    log.error(hostile)
    err = capsys.readouterr().err
    assert "\x1b[2J" not in err and "\x1b]52" not in err and "\x9b" not in err and "\x07" not in err
    assert "\\x1b[2J" in err and "\\x1b]52;c;ZXZpbA==" in err


def test_verbatim_keeps_printable_text() -> None:
    assert verbatim("a\tb\n[c] :d: é") == "a\tb\n[c] :d: é"
    assert verbatim("\x1b[31m\x00\x7f") == "\\x1b[31m\\x00\\x7f"
