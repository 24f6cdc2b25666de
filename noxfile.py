"""Thin sessions over `llama-toolchain` (the package does the work; nox only makes the venv).

The sessions run in the directory nox was invoked from, so the project (its `llama.lock`,
`pyproject.toml`, `.toolchain/`) is yours even when this noxfile lives elsewhere:
`nox -f path/to/llama-toolchain/noxfile.py -s build` from your repository. The GitHub workflows in
ci/github/ run exactly these sessions.

nox -s build                 # fetch the locked llama.cpp, build, verify, write the manifest
nox -s build -- --ref HEAD --git   # a one-off build of upstream HEAD (lock untouched)
nox -s coverage              # build the coverage tools, convert the tiny models, validate the oracle, matrix
nox -s coverage -- --profile blas -a llama --baseline old/coverage.json   # source/build options go to the build
nox -s sweep                 # latent Metal crashes of the tree (dry run); coverage reports show them
nox -s update -- --pypi llama-cpp-python==0.3.36
nox -s tests                 # the project's own test suite
nox -s bench                 # benchmarks (ratios, .toolchain/reports/bench*.json)
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["build", "coverage"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))  # the toolchain's option definitions (stdlib only), read as the CLI reads them
from toolchain import options  # noqa: E402


def install(session: nox.Session, extras: str = "") -> None:
    """Editable install of this toolchain, skipped when the venv already has it for this pyproject.toml."""
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + target.encode()).hexdigest()
    stamp = Path(session.virtualenv.location) / ".llama-toolchain-installed"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    session.install("--no-compile", "-e", target)  # modules compile on first import, not all at once
    stamp.write_text(digest)


def in_project(session: nox.Session) -> None:
    """Install, then work where nox was invoked (the user's project), not in this folder."""
    install(session)
    session.chdir(session.invoked_from)


def toolchain(session: nox.Session, *args: str) -> None:
    in_project(session)
    session.run("llama-toolchain", *args, *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Fetch the pinned llama.cpp, build the needed targets, verify, write build-manifest.json."""
    in_project(session)
    session.run("llama-toolchain", "build", *options.without_archs(session.posargs))


# Sessions that run one `llama-toolchain` command in the project, the session's arguments after it:
# name -> (the command, what `nox -l` says of the session).
COMMAND_SESSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "update": (
        ("update",),
        "Resolve a ref or version and rewrite llama.lock (`-- --git URL --ref TAG` / `-- --pypi REQ`).",
    ),
    "fetch": (("fetch",), "Check the pinned source out into .toolchain/src without building."),
    "merge": (
        ("coverage", "merge"),
        "Merge the coverage reports of `nox -s coverage -- --shard K/N` runs:\n"
        "`nox -s merge -- shards/*/coverage.json [--baseline old/coverage.json]`.",
    ),
    "models": (
        ("models",),
        "List the architectures (`-- --list`) or shrink your own model (`-- --from-config config.json`).",
    ),
    "oracle": (
        ("oracle",),
        "Metal oracle: `-- validate` against the tree's docs/ops/Metal.csv, or `-- predict --ops ops.txt`.",
    ),
    "verify": (
        ("verify",),
        "Is this build what I think it is? (`-- PATH` for a build dir, binary or Frameworks folder)",
    ),
    "doctor": (("doctor",), "Explain a failing run: `nox -s doctor -- run.log --gguf model.gguf -c 32768`."),
}


def command_session(name: str, command: tuple[str, ...], doc: str) -> None:
    """Register the session ``name``: ``llama-toolchain <command> <the session's arguments>``."""

    def run(session: nox.Session) -> None:
        toolchain(session, *command)

    run.__doc__ = doc
    nox.session(name=name)(run)


for _name, (_command, _doc) in COMMAND_SESSIONS.items():
    command_session(_name, _command, _doc)


# The main job's steps after the build, in order (the build step gets the source/build options).
COVERAGE_STEPS = (
    ("llama-toolchain", "convert"),
    ("llama-toolchain", "oracle", "validate"),
    ("llama-toolchain", "coverage"),
)


@nox.session
def coverage(session: nox.Session) -> None:
    """Kernel-coverage matrix of the pinned build: reports/coverage.{json,md,html}, junit-coverage.xml.

    Builds the coverage tools first (incremental after `nox -s build`), converts the tiny models,
    validates the Metal oracle against the tree's docs/ops tables, runs the matrix. Source and
    build options go to the build step, the rest to the matrix:
    `nox -s coverage -- --profile blas -a llama,qwen3 --baseline old/coverage.json`.
    """
    in_project(session)
    build_args, archs, matrix_args = options.split_job_args(session.posargs)
    session.run("llama-toolchain", "build", "--targets", "build,coverage", *build_args)
    for step in COVERAGE_STEPS:
        selected = {"convert": ["--arch", ",".join(archs)], "coverage": ["--architectures", ",".join(archs)]}
        extra = selected.get(step[1], []) if archs else []
        session.run(*step, *extra, *(matrix_args if step[1] == "coverage" else []))


@nox.session
def sweep(session: nox.Session) -> None:
    """Dry-run sweep of the pinned tree (checked out first): the op cases supports_op accepts that its
    Metal encoders cannot encode, as classes (reports/dryrun-sweep.{json,md}), compared with the
    project's previous sweep of another tree; `nox -s coverage` shows them. Arguments go to the sweep:
    `nox -s sweep -- --family mul_mat_id --profiles apple9`."""
    in_project(session)
    session.run("llama-toolchain", "fetch")
    session.run("llama-toolchain", "dryrun", "sweep", *session.posargs)


@nox.session
def convert(session: nox.Session) -> None:
    """Tiny models for every architecture -> GGUF with the tree's own converter, validated (convert.json):
    f16 and q8_0 from the converter, q4_0 and q4_K from the tree's llama-quantize (built first)."""
    in_project(session)
    build_args, archs, convert_args = options.split_job_args(session.posargs)
    session.run("llama-toolchain", "build", "--targets", "build,coverage", *build_args)
    selected = ["--arch", ",".join(archs)] if archs else []
    session.run("llama-toolchain", "convert", "--types", "f16,q8_0,q4_0,q4_K", *selected, *convert_args)


@nox.session
def tests(session: nox.Session) -> None:
    """The project's own tests (real builds included: allow ~20 minutes on 2 cores when cold)."""
    install(session, "test")
    session.run("pytest", *session.posargs)  # in this folder: the project's own tests


LINTED = ("toolchain", "tests", "fixtures", "bench", "kernels_tests", "noxfile.py")


@nox.session
def lint(session: nox.Session) -> None:
    install(session, "test")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, ratios measured in one run: build (targeted vs everything, warm cache, pin move,
    no-op), convert (seconds per architecture), coverage (the full matrix), ci (the main job
    `nox -s build coverage` cold / warm CI / no change, per phase; ~1 h on 2 cores, not run by default).
    `-- build|convert|coverage|ci` runs one; reports in .toolchain/reports/bench*.json."""
    install(session)
    chosen = session.posargs or ["build", "convert", "coverage"]
    for name in chosen:
        if name not in ("build", "convert", "coverage", "ci"):
            session.error(f"unknown benchmark {name!r}: build, convert, coverage or ci")
        session.run("python", f"bench/bench_{name}.py")
