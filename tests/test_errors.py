from toolchain.errors import ToolchainError, all_error_classes


def test_every_failure_class_has_its_own_exit_code() -> None:
    # a subclass that keeps its parent's code is a refinement of that failure class (e.g. doctor's
    # "verify stage not available" is a usage error); every class that sets a code owns it
    classes = [c for c in all_error_classes() if c is not ToolchainError and "exit_code" in vars(c)]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)), {c.__name__: c.exit_code for c in classes}
    assert all(0 < code < 256 for code in codes)


def test_message_carries_the_next_step() -> None:
    err = ToolchainError("it broke", "do this")
    assert str(err) == "it broke\n  -> do this"


def test_readme_documents_every_exit_code() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for cls in all_error_classes():
        if cls is ToolchainError:
            continue
        assert f"| {cls.exit_code} |" in readme, f"README lacks exit code {cls.exit_code} ({cls.__name__})"
