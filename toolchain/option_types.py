"""Option types that refuse nonsense at parse time (issue #32 C, O).

Every stage's parser is built with plain ``type=float`` / ``int`` / ``Path``; :func:`harden` walks
the whole parser tree once and puts these in their place, so no command can forget one:

- numbers from ASCII digits only (``int("١٢")`` is 12 to Python), finite (``nan``, ``inf`` refused);
- every ``--timeout``: seconds, finite and > 0 (``--timeout 0`` failed a good build as a hang);
- ``--jobs``: a count >= 1; ``--deployment-target``: a macOS version (``14``, ``13.3``, ``10.15``);
- every path: resolved against the directory the user ran the command in, once, here: a relative
  ``--build-dir`` can no longer be read against another directory later (a program "not found").

A refused value is argparse's usage error (exit 2) naming the option.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .log import neutralise

MAX_SECONDS = 7 * 24 * 3600.0
_INT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_MACOS = re.compile(r"(?:1[0-9]|[2-9][0-9])(?:\.[0-9]{1,2}){0,2}")


def ascii_int(text: str) -> int:
    if not _INT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (ASCII digits)")
    return int(text)


def count(text: str) -> int:
    value = ascii_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count (at least 1)")
    return value


def finite_float(text: str) -> float:
    if not _FLOAT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (ASCII digits; no nan or inf)")
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range")
    return value


def seconds(text: str) -> float:
    value = finite_float(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text} s: a timeout is more than 0 and at most {MAX_SECONDS:.0f} s"
        )
    return value


def deployment_target(text: str) -> str:
    if not _MACOS.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a macOS version (e.g. 14, 13.3, 10.15)")
    return text


def cwd_path(text: str) -> Path:
    """``text`` as an absolute path against the current directory (``~`` expanded), at parse time."""
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a path")
    return Path(os.path.abspath(os.path.expanduser(text)))


_BY_DEST: dict[str, Callable[[str], Any]] = {
    "timeout": seconds,
    "jobs": count,
    "deployment_target": deployment_target,
}
_BY_TYPE: dict[Any, Callable[[str], Any]] = {float: finite_float, int: ascii_int, Path: cwd_path}


def harden(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every option of ``parser`` and its sub-parsers the checked type (see the module doc)."""
    seen: set[int] = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        # argparse's own messages quote what was typed ("unrecognized arguments: …"): through the
        # one place untrusted text becomes output, like every other line
        p._print_message = _neutral_message.__get__(p)  # type: ignore[method-assign]
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
                continue
            checked = _BY_DEST.get(action.dest) or _BY_TYPE.get(action.type)
            if checked is not None and action.nargs != 0:
                action.type = checked
    return parser


def _neutral_message(self: argparse.ArgumentParser, message: str, file: Any = None) -> None:
    if message:
        (file or sys.stderr).write(neutralise(message))
