"""The README's first two commands on an externally managed Python (PEP 668), as a new user runs them.

Debian's /usr/bin/python3 carries the EXTERNALLY-MANAGED marker (as Homebrew's and Ubuntu's do): the
old `python3 -m pip install nox && …` is refused there. The README now runs nox the way nox documents
it, `pipx run nox …` (Debian's own pipx package, on that same Python; .ci/run installs it).

What runs here, honestly: the README's command up to a fast, real point. `pipx run nox -l` (pipx
fetches nox from PyPI into its own venv on the externally managed Python and loads the noxfile), then
`pipx run nox -s build -- --help`: the session's venv is made from that Python, the toolchain is
installed into it and its `build` command starts. The build itself (minutes) is what the rest of
the suite and the act rehearsal run; it is not repeated here.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from tests.ci.act import ROOT, export_toolchain

SYSTEM_PYTHON = Path("/usr/bin/python3")
PIPX = Path("/usr/bin/pipx")


def readme_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def _env(tmp: Path) -> dict[str, str]:
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "NOX_CURRENT_SESSION", "PIP_USER", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # a PATH with the system's tools only: no venv, no pyenv shim in front of /usr/bin/python3
    env["PATH"] = os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])
    env |= {"PIPX_HOME": str(tmp / "pipx"), "PIPX_BIN_DIR": str(tmp / "pipx-bin"), "NO_COLOR": "1"}
    env |= {"TOOLCHAIN_CACHE": str(tmp / "cache")}
    return env


def test_the_readme_runs_nox_the_way_nox_documents() -> None:
    first, second = readme_commands()[:2]
    assert first == ["pipx", "run", "nox", "-s", "build", "coverage"]
    assert second == ["pipx", "run", "nox", "-s", "tests"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 -m pip install nox" not in readme
    assert "uvx nox" in readme and "brew install pipx" in readme and "apt install pipx" in readme


def test_the_first_command_on_an_externally_managed_python(tmp_path: Path) -> None:
    marker = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (Path(marker) / "EXTERNALLY-MANAGED").is_file(), f"{SYSTEM_PYTHON} must be externally managed"
    assert PIPX.is_file(), "Debian's pipx (apt-get install pipx; .ci/run does) runs on that Python"
    assert PIPX.read_text(encoding="utf-8", errors="replace").startswith(f"#!{SYSTEM_PYTHON}")
    env = _env(tmp_path)
    refused = subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "pip", "install", "--dry-run", "--no-index", "nox"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, refused.stderr
    clone = export_toolchain(tmp_path / "clone")
    command = readme_commands()[0]
    assert command[:3] == ["pipx", "run", "nox"]
    listed = subprocess.run(
        [*command[:3], "-l"], cwd=clone, capture_output=True, text=True, env=env, timeout=600
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "* build" in listed.stdout and "* coverage" in listed.stdout  # the default sessions
    started = subprocess.run(
        [*command[:3], "-s", "build", "--", "--help"],
        cwd=clone,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert started.returncode == 0, started.stdout[-4000:] + started.stderr[-4000:]
    assert "usage: llama-toolchain build" in started.stdout, started.stdout[-2000:]
    base = subprocess.run(
        [str(clone / ".nox" / "build" / "bin" / "python"), "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert base == "/usr", "the session's venv is made from the externally managed Python"
