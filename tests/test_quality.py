"""The code stays ruff- and mypy-clean, and never runs a subprocess through a shell."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


LINTED = ("toolchain", "tests", "fixtures", "bench", "kernels_tests", "noxfile.py")


def test_ruff() -> None:
    done = _run("ruff", "check", *LINTED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    done = _run("ruff", "format", "--check", *LINTED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy() -> None:
    done = _run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def _python_files() -> list[Path]:
    return [p for d in ("toolchain", "fixtures", "bench") for p in (ROOT / d).rglob("*.py")]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shell_strings(path: Path) -> None:
    """subprocess with shell=True, os.system and os.popen are banned: argument lists only."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    pytest.fail(f"{path}:{node.lineno}: shell= in a call")
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if func.value.id == "os" and func.attr in ("system", "popen"):
                    pytest.fail(f"{path}:{node.lineno}: os.{func.attr}")


def test_git_is_available() -> None:
    assert shutil.which("git"), "git is needed by the source stage"
