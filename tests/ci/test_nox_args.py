"""`nox -s build coverage -- …`: nox gives both sessions the same arguments."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def noxfile() -> ModuleType:
    if "toolchain_noxfile" in sys.modules:  # once: nox refuses a session registered twice
        return sys.modules["toolchain_noxfile"]
    spec = importlib.util.spec_from_file_location("toolchain_noxfile", ROOT / "noxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["toolchain_noxfile"] = module
    spec.loader.exec_module(module)
    return module


def test_the_build_session_leaves_the_architectures_to_coverage() -> None:
    """`nox -s build coverage -- -a llama,qwen3` used to fail the build with "unrecognized
    arguments: -a" before coverage ran."""
    nf = noxfile()
    for given in (
        ["-a", "llama,qwen3", "--profile", "blas"],
        ["--profile", "blas", "--architectures", "llama"],
        ["--arch=llama", "--profile", "blas"],
        ["-allama", "--profile", "blas"],
    ):
        assert nf.options.without_archs(given) == ["--profile", "blas"], given
    assert nf.options.without_archs(["--ref", "v1", "--offline"]) == ["--ref", "v1", "--offline"]
    build, archs, rest = nf.options.split_job_args(
        ["-a", "llama,qwen3", "--profile", "blas", "--fail-on", "crash"]
    )
    assert (build, archs, rest) == (["--profile", "blas"], ["llama", "qwen3"], ["--fail-on", "crash"])


def test_a_project_without_oracle_older_still_checks_staleness(tmp_path: Path) -> None:
    """From a user's own project (no `[tool.llama-toolchain] oracle-older`), `oracle validate` stopped
    the job: 602 stale rows of the pin's Metal.csv unexplained for want of an older tree. The default
    is the toolchain's own (config.py), one definition read by the CLI and the nox sessions alike."""
    from toolchain.config import _DEFAULTS, DEFAULT_ORACLE_OLDER, NO_ORACLE_OLDER, Settings, load_settings

    assert load_settings(tmp_path).oracle_older == DEFAULT_ORACLE_OLDER == "llama-cpp-python==0.3.20"
    assert _DEFAULTS["oracle-older"] == DEFAULT_ORACLE_OLDER  # one default
    assert Settings.oracle_older == DEFAULT_ORACLE_OLDER
    (tmp_path / "pyproject.toml").write_text('[tool.llama-toolchain]\noracle-older = "v0.3.20"\n')
    assert load_settings(tmp_path).oracle_older == "v0.3.20"
    (tmp_path / "pyproject.toml").write_text(f'[tool.llama-toolchain]\noracle-older = "{NO_ORACLE_OLDER}"\n')
    assert load_settings(tmp_path).oracle_older == NO_ORACLE_OLDER
    source = (ROOT / "noxfile.py").read_text()
    assert "0.3.20" not in source and "--older" not in source  # the sessions pass no default of their own
