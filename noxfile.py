"""Thin sessions over `llama-toolchain` (the package does the work; nox only makes the venv).

The sessions run in the directory nox was invoked from, so the project (its `llama.lock`,
`pyproject.toml`, `.toolchain/`) is yours even when this noxfile lives elsewhere:
`nox -f path/to/llama-toolchain/noxfile.py -s build` from your repository. The GitHub workflows in
ci/github/ run exactly these sessions.

nox -s build                 # fetch the locked llama.cpp, build, verify, write the manifest
nox -s build -- --ref HEAD --git   # a one-off build of upstream HEAD (lock untouched)
nox -s coverage              # build the coverage tools, convert the tiny models, validate the oracle, matrix
nox -s coverage -- --profile blas -a llama --baseline old/coverage.json   # source/build options go to the build
nox -s update -- --pypi llama-cpp-python==0.3.36
nox -s tests                 # the project's own test suite
nox -s bench                 # benchmarks (ratios, .toolchain/reports/bench*.json)
"""

from __future__ import annotations

import argparse
import hashlib
import tomllib
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["build", "coverage"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent


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


def split_job_args(posargs: list[str]) -> tuple[list[str], list[str], list[str]]:
    """`nox -s coverage -- …` -> (build options, architectures, the rest).

    The source and build options (--profile, --git, --ref, …) go to the build step; the
    architectures (`-a`/`--architectures`/`--arch`) to the conversion and the matrix alike, so a
    job that covers one architecture converts only that one; everything else to the last step."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--profile")
    parser.add_argument("--ref")
    parser.add_argument("--git", nargs="?", const="")
    parser.add_argument("--pypi")
    for flag in ("--offline", "--force", "--allow-dirty", "--no-compiler-cache"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("-a", "--architectures", "--arch", dest="archs", action="append", default=[])
    known, rest = parser.parse_known_args(posargs)
    build: list[str] = []
    for action in parser._actions:
        value = getattr(known, action.dest)
        flag = action.option_strings[0]
        if action.dest == "archs":
            continue
        if value is True:
            build.append(flag)
        elif isinstance(value, str):
            build += [flag] if value == "" and flag == "--git" else [flag, value]
    archs = [a for group in known.archs for a in group.split(",") if a]
    return build, archs, rest


@nox.session
def build(session: nox.Session) -> None:
    """Fetch the pinned llama.cpp, build the needed targets, verify, write build-manifest.json."""
    in_project(session)
    session.run("llama-toolchain", "build", *build_session_args(list(session.posargs)))


def build_session_args(posargs: list[str]) -> list[str]:
    """`nox -s build coverage -- -a llama` gives both sessions the same arguments: the build takes
    them all but the architectures, which choose what the coverage session converts and covers."""
    out: list[str] = []
    skip = False
    for arg in posargs:
        if skip:
            skip = False
        elif arg in ("-a", "--architectures", "--arch"):
            skip = True
        elif not arg.startswith(("--architectures=", "--arch=")) and not (
            arg.startswith("-a") and arg != "-a"
        ):
            out.append(arg)
    return out


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
    build_args, archs, matrix_args = split_job_args(list(session.posargs))
    session.run("llama-toolchain", "build", "--targets", "build,coverage", *build_args)
    for step in COVERAGE_STEPS:
        selected = {"convert": ["--arch", ",".join(archs)], "coverage": ["--architectures", ",".join(archs)]}
        extra = selected.get(step[1], []) if archs else []
        if step[1:] == ("oracle", "validate"):
            extra = oracle_older_args(Path.cwd())
        session.run(*step, *extra, *(matrix_args if step[1] == "coverage" else []))


# The older tree `oracle validate` checks a stale docs/ops table against, when the project does not
# set `[tool.llama-toolchain] oracle-older` (the toolchain's own default, toolchain/config.py).
ORACLE_OLDER = "llama-cpp-python==0.3.20"


def oracle_older_args(project: Path) -> list[str]:
    """`nox -f …/noxfile.py -s coverage` from a user's project without the setting: without an older
    tree every stale row of the tree's Metal.csv is "unexplained" and the job stops before the matrix."""
    try:
        table = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        table = {}
    tool = table.get("tool", {})
    ours = tool.get("llama-toolchain", {}) if isinstance(tool, dict) else {}
    return [] if isinstance(ours, dict) and "oracle-older" in ours else ["--older-pypi", ORACLE_OLDER]


@nox.session
def convert(session: nox.Session) -> None:
    """Tiny models for every architecture -> GGUF with the tree's own converter, validated (convert.json):
    f16 and q8_0 from the converter, q4_0 and q4_K from the tree's llama-quantize (built first)."""
    in_project(session)
    build_args, archs, convert_args = split_job_args(list(session.posargs))
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
