"""The command-line options more than one command shares: one definition of each, and its default.

The stage CLIs add them to their parsers; ``noxfile.py`` reads the same definitions to hand the
options of ``nox -s coverage -- …`` to the right step (:func:`split_job_args`). This module
imports the standard library (and the toolchain's stdlib-only ``errors``) only, so that the noxfile can import it without the toolchain's
dependencies (nox runs the noxfile in its own interpreter).

Every function that adds options returns the :class:`argparse.Action` objects it added (the
public return value of ``add_argument``): what was given is read back from those, never from the
parser's private tables.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project", type=Path, default=None, help="project root (default: current directory)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="work dir (default: .toolchain)")
    parser.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors")


def switches(parser: Parser, helps: dict[str, str]) -> list[argparse.Action]:
    """On/off options (``store_true``), in order: option -> its help."""
    return [parser.add_argument(option, action="store_true", help=text) for option, text in helps.items()]


def source_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Which llama.cpp to use instead of the lock: ``--ref``, ``--git [URL]``, ``--pypi REQ`` and how."""
    group = parser.add_argument_group("source (default: the lock file)")
    added = [
        group.add_argument(
            "--ref", help="HEAD, a branch, a tag or a (abbreviated) commit id; for --pypi: ignored"
        )
    ]
    kind = group.add_mutually_exclusive_group()
    added.append(
        kind.add_argument(
            "--git",
            metavar="URL",
            nargs="?",
            const="",
            help="a git remote (default: [tool.llama-toolchain] remote)",
        )
    )
    added.append(
        kind.add_argument(
            "--pypi", metavar="REQ", help="a llama-cpp-python requirement, e.g. llama-cpp-python==0.3.36"
        )
    )
    added += switches(
        group,
        {
            "--offline": "use the cache only; fail clearly when something is missing",
            "--force": "move a checkout with local changes aside (kept) instead of stopping",
            "--allow-dirty": "build a checkout with local changes as it is",
        },
    )
    return added


def profile_option(parser: Parser) -> argparse.Action:
    return parser.add_argument(
        "--profile", help="backend profile: auto, metal, cpu, blas, vulkan, cuda (default: pyproject)"
    )


def compiler_cache_option(parser: Parser) -> argparse.Action:
    return parser.add_argument(
        "--no-compiler-cache", action="store_true", help="do not use ccache/sccache even when present"
    )


def job_build_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """What the main job's later steps hand to their build step: the source, the profile, the cache."""
    return [*source_options(parser), profile_option(parser), compiler_cache_option(parser)]


def _architectures(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def arch_option(parser: Parser, default: str = "all") -> argparse.Action:
    """``-a/--arch/--architectures``: repeatable, space- or comma-separated; ``default`` says what
    the command takes without it."""
    return parser.add_argument(
        "-a",
        "--arch",
        "--architectures",
        dest="arch",
        action="extend",
        nargs="+",
        type=_architectures,
        metavar="A",
        help=f"only these architectures: repeatable, space- or comma-separated (default: {default})",
    )


def chosen_archs(args: argparse.Namespace) -> list[str] | None:
    return [a for group in args.arch for a in group] if args.arch else None


def tree_options(parser: argparse.ArgumentParser, profiles_help: str) -> None:
    """The options of every oracle and dry-run command: the common ones, ``--tree`` (read by
    :func:`tree_of`) and ``--profiles`` (read by :func:`profiles_of`)."""
    common_options(parser)
    parser.add_argument(
        "--tree", type=Path, default=None, help="llama.cpp tree (default: the work dir's checkout)"
    )
    parser.add_argument("--profiles", default=None, help=profiles_help)


def tree_of(args: argparse.Namespace, checkout: Path) -> Path:
    """The tree ``--tree`` names, else the work dir's ``checkout`` (a :class:`UsageError` when it is
    not a llama.cpp tree)."""
    tree: Path = args.tree.resolve() if args.tree else checkout
    if not (tree / "ggml").is_dir():
        raise UsageError(
            f"{tree} is not a llama.cpp tree (no ggml/)",
            "run `llama-toolchain fetch` first, or give --tree PATH",
        )
    return tree


def profiles_of(args: argparse.Namespace) -> list[str] | None:
    if not args.profiles:
        return None
    return [p.strip() for p in args.profiles.split(",") if p.strip()]


def _given(action: argparse.Action, namespace: argparse.Namespace) -> list[str]:
    """``action``'s option back as arguments, as the user gave it (nothing when not given)."""
    value: Any = getattr(namespace, action.dest)
    flag = (
        action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
    )
    if value is None or value is False:
        return []
    if value is True or (action.const is not None and value == action.const):
        return [flag]
    return [flag, str(value)]


def split_job_args(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """``nox -s coverage -- …`` -> (the build step's options, the architectures, the rest).

    The source and build options (:func:`job_build_options`) go to the build step; the
    architectures (:func:`arch_option`) to the conversion and the matrix alike, so a job that
    covers one architecture converts only that one; everything else to the last step."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    build_actions = job_build_options(parser)
    arch_option(parser)
    known, rest = parser.parse_known_args(list(argv))
    build = [arg for action in build_actions for arg in _given(action, known)]
    return build, chosen_archs(known) or [], rest


def without_archs(argv: Sequence[str]) -> list[str]:
    """``argv`` less the architectures: ``nox -s build coverage -- -a llama`` gives both sessions the
    same arguments; the build takes all but the architectures, which choose what coverage covers."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    arch_option(parser)
    _, rest = parser.parse_known_args(list(argv))
    return rest
