"""Output for people and for CI.

Locally: rich on stderr (progress bars for long steps). Under GitHub Actions
(``GITHUB_ACTIONS=true``): each step folds into a ``::group::`` and failures become ``::error::``
annotations, as cibuildwheel does. Everything goes to stderr; stdout is kept for machine output
(``--json``).

Text from users, logs and trees is printed **verbatim**: the console never interprets Rich markup
(``[/x]``, ``[bold]``) or emoji codes (``:1234:``), and control characters (terminal escape
sequences such as clear-screen or OSC 52 clipboard writes) are shown as visible escapes
(:func:`verbatim`). Only this module's own prefixes carry style, as separate ``Text`` spans.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

# C0 controls but tab and newline, DEL, and C1 controls (0x80-0x9f: a lone CSI is 0x9b)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def verbatim(text: str) -> str:
    """``text`` safe to echo to a terminal: every control character but tab and newline becomes
    a visible escape (``\\x1b``), so a log line cannot clear the screen, move the cursor or write
    the clipboard (OSC 52). Printable text, brackets and colons included, is left as it is."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# The start of a line that only this module may write: a GitHub Actions workflow command (``::name
# …::``, and the runner's older ``##[name]``; the runner trims leading whitespace before it looks,
# actions/runner ActionCommandManager.cs TryParseV2) or one of our own line prefixes. In text from
# users, logs and trees (a GGUF name, a path, a lock field, a compiler line) such a line start is
# shown with its first character as a visible escape, so it can neither run a workflow command
# (``::error``, ``::add-mask``, ``::stop-commands``) nor pass for one of our verdicts.
_FORGEABLE = re.compile(r"^([^\S\n]*)(::|##\[|✓ |warning: |error \(|==> )", re.MULTILINE)


def _escape_first(m: re.Match[str]) -> str:
    head = m.group(2)
    code = ord(head[0])
    visible = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return m.group(1) + visible + head[1:]


def neutralise(text: str, *, after_prefix: bool = False) -> str:
    """The one place untrusted text becomes output: :func:`verbatim`, and no line of it starts a
    workflow command or one of our own prefixes (see ``_FORGEABLE``). ``after_prefix``: the first
    line follows a prefix of ours on the same output line, so only the lines after it can be
    forged."""
    text = verbatim(text)
    if after_prefix:
        first, sep, rest = text.partition("\n")
        return first + sep + _FORGEABLE.sub(_escape_first, rest)
    return _FORGEABLE.sub(_escape_first, text)


def one_line(text: str) -> str:
    """``text`` as a single output line (a step title, a table cell): newlines shown as ``\\n``."""
    return neutralise(text).replace("\n", "\\n")


def out(text: str) -> None:
    """Machine or table output on stdout, through :func:`neutralise` (JSON is unchanged by it: its
    strings escape newlines, so none of its lines starts with ``::``)."""
    print(neutralise(text), flush=True)


MAX_MESSAGE = 64 << 10  # characters of one message shown (#32 E: a refused 2 MB config was echoed)


def _capped(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return message[:MAX_MESSAGE] + f" … ({len(message) - MAX_MESSAGE} more characters not shown)"


def _styled(prefix: str, style: str, message: str) -> Text:
    return Text.assemble((prefix, style), neutralise(_capped(message), after_prefix=True))


def _escape_annotation(text: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts (escapeData)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # the same file, escapeProperty: a title holding `::` or `,` would end the properties early
    return _escape_annotation(text).replace(":", "%3A").replace(",", "%2C")


@dataclass
class Log:
    github: bool = field(default_factory=lambda: os.environ.get("GITHUB_ACTIONS") == "true")
    quiet: bool = False
    # soft_wrap: never insert line breaks (paths and commands in messages stay copyable; the
    # terminal wraps for itself)
    # markup, emoji and highlighting off: nothing printed is ever interpreted (see the module doc)
    console: Console = field(
        default_factory=lambda: Console(
            stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False
        )
    )

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(Text(neutralise(_capped(message))))

    def ok(self, message: str) -> None:
        if not self.quiet:
            self.console.print(_styled("✓ ", "green", message))

    def warn(self, message: str) -> None:
        if self.github:
            print(f"::warning::{_escape_annotation(verbatim(_capped(message)))}", file=sys.stderr, flush=True)
        else:
            self.console.print(_styled("warning: ", "yellow", message))

    def error(self, message: str, title: str = "llama-toolchain") -> None:
        if self.github:
            print(
                f"::error title={_escape_property(verbatim(title))}::{_escape_annotation(verbatim(_capped(message)))}",
                file=sys.stderr,
                flush=True,
            )
        else:
            self.console.print(_styled(f"error ({one_line(title)}): ", "red bold", message))

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """A named step: a fold under GitHub Actions, a timed header locally."""
        start = time.monotonic()
        if self.github:
            print(f"::group::{one_line(title)}", file=sys.stderr, flush=True)
        elif not self.quiet:
            self.console.print(Text.assemble(("==> ", "bold cyan"), (one_line(title), "bold")))
        try:
            yield
        finally:
            if self.github:
                print("::endgroup::", file=sys.stderr, flush=True)
            elif not self.quiet:
                done = f"    {one_line(title)}: {time.monotonic() - start:.1f} s"
                self.console.print(Text(done, style="dim"))

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[ProgressHandle]:
        """A progress bar locally; a line every 10% (at most) under CI, where bars are noise."""
        if self.github or self.quiet or not self.console.is_terminal:
            handle = ProgressHandle(None, None, self, description, total)
            yield handle
            return
        with Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task(one_line(description), total=total)
            yield ProgressHandle(bar, task, self, description, total)


@dataclass
class ProgressHandle:
    bar: Progress | None
    task: object
    log: Log
    description: str
    total: int | None
    _last_decile: int = -1

    def update(self, completed: int, total: int | None = None, detail: str = "") -> None:
        if total is not None:
            self.total = total
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, total=self.total)  # type: ignore[arg-type]
            return
        if not self.total or self.log.quiet:
            return
        decile = min(10, completed * 10 // self.total)
        if decile != self._last_decile:
            self._last_decile = decile
            suffix = f" {detail}" if detail else ""
            line = f"    {self.description}: {completed}/{self.total}{suffix}"
            print(one_line(line), file=sys.stderr, flush=True)


LOG = Log()
