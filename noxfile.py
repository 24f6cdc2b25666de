"""Thin sessions over `llama-toolchain` (the package does the work; nox only makes the venv).

nox -s build                 # fetch the locked llama.cpp, build, verify, write the manifest
nox -s build -- --ref HEAD --git   # a one-off build of upstream HEAD (lock untouched)
nox -s update -- --pypi llama-cpp-python==0.3.36
nox -s tests                 # the project's own test suite
nox -s bench                 # build benchmarks (ratios, .toolchain/reports/bench.json)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["build", "coverage"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent


def install(session: nox.Session, extras: str = "") -> None:
    """Editable install, skipped when the venv already has it for this pyproject.toml."""
    target = f".[{extras}]" if extras else "."
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + target.encode()).hexdigest()
    stamp = Path(session.virtualenv.location) / ".llama-toolchain-installed"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    session.install("-e", target)
    stamp.write_text(digest)


def toolchain(session: nox.Session, *args: str) -> None:
    install(session)
    session.run("llama-toolchain", *args, *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Fetch the pinned llama.cpp, build the needed targets, verify, write build-manifest.json."""
    toolchain(session, "build")


@nox.session
def update(session: nox.Session) -> None:
    """Resolve a ref or version and rewrite llama.lock (`-- --git URL --ref TAG` / `-- --pypi REQ`)."""
    toolchain(session, "update")


@nox.session
def fetch(session: nox.Session) -> None:
    """Check the pinned source out into .toolchain/src without building."""
    toolchain(session, "fetch")


@nox.session
def coverage(session: nox.Session) -> None:
    """Kernel-coverage matrix of the pinned build: reports/coverage.{json,md,html}, junit-coverage.xml.

    Builds the coverage tools first (incremental after `nox -s build`), converts the tiny models,
    validates the Metal oracle against the tree's docs/ops tables; posargs go to the matrix,
    e.g. `nox -s coverage -- -a llama,qwen3 --baseline old/coverage.json`.
    """
    install(session)
    session.run("llama-toolchain", "build", "--targets", "build,coverage")
    session.run("llama-toolchain", "convert")
    session.run("llama-toolchain", "oracle", "validate")
    session.run("llama-toolchain", "coverage", *session.posargs)


@nox.session
def convert(session: nox.Session) -> None:
    """Tiny models for every architecture -> GGUF with the tree's own converter, validated (convert.json):
    f16 and q8_0 from the converter, q4_0 and q4_K from the tree's llama-quantize (built first)."""
    install(session)
    session.run("llama-toolchain", "build", "--targets", "build,coverage")
    session.run("llama-toolchain", "convert", "--types", "f16,q8_0,q4_0,q4_K", *session.posargs)


@nox.session
def models(session: nox.Session) -> None:
    """List the architectures (`-- --list`) or shrink your own model (`-- --from-config config.json`)."""
    toolchain(session, "models")


@nox.session
def oracle(session: nox.Session) -> None:
    """Metal oracle: `-- validate` against the tree's docs/ops/Metal.csv, or `-- predict --ops ops.txt`."""
    toolchain(session, "oracle")


@nox.session
def verify(session: nox.Session) -> None:
    """Is this build what I think it is? (`-- PATH` for a build dir, binary or Frameworks folder)"""
    toolchain(session, "verify")


@nox.session
def doctor(session: nox.Session) -> None:
    """Explain a failing run: `nox -s doctor -- run.log --gguf model.gguf -c 32768`."""
    toolchain(session, "doctor")


@nox.session
def tests(session: nox.Session) -> None:
    """The project's own tests (real builds included: allow ~20 minutes on 2 cores when cold)."""
    install(session, "test")
    session.run("pytest", *session.posargs)


LINTED = ("toolchain", "tests", "fixtures", "bench", "kernels_tests", "noxfile.py")


@nox.session
def lint(session: nox.Session) -> None:
    install(session, "test")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("mypy")


# The steps of ci/github/coverage.yml, in order: `nox -s ci` reproduces a CI run locally
# (tests/ci/test_workflows.py keeps the two in step).
CI_STEPS = (
    ("llama-toolchain", "build", "--targets", "build,coverage"),
    ("llama-toolchain", "convert"),
    ("llama-toolchain", "oracle", "validate"),
    ("llama-toolchain", "coverage"),
)


@nox.session
def ci(session: nox.Session) -> None:
    """The CI workflow's steps, locally and in the same order (posargs go to the build step)."""
    install(session)
    build_step, *rest = CI_STEPS
    session.run(*build_step, *session.posargs)
    for step in rest:
        session.run(*step)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, ratios measured in one run: build (targeted vs everything, warm cache, pin move,
    no-op), convert (seconds per architecture), coverage (the full matrix). `-- build|convert|coverage`
    runs one; reports in .toolchain/reports/bench*.json."""
    install(session)
    chosen = session.posargs or ["build", "convert", "coverage"]
    for name in chosen:
        if name not in ("build", "convert", "coverage"):
            session.error(f"unknown benchmark {name!r}: build, convert or coverage")
        session.run("python", f"bench/bench_{name}.py")
