"""Output for people and for CI.

Locally: rich on stderr (progress bars for long steps). Under GitHub Actions
(``GITHUB_ACTIONS=true``): each step folds into a ``::group::`` and failures become ``::error::``
annotations, as cibuildwheel does. Everything goes to stderr; stdout is kept for machine output
(``--json``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def _escape_annotation(text: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts (escapeData)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


@dataclass
class Log:
    github: bool = field(default_factory=lambda: os.environ.get("GITHUB_ACTIONS") == "true")
    quiet: bool = False
    # soft_wrap: never insert line breaks (paths and commands in messages stay copyable; the
    # terminal wraps for itself)
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def ok(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[green]✓[/green] {message}", highlight=False)

    def warn(self, message: str) -> None:
        if self.github:
            print(f"::warning::{_escape_annotation(message)}", file=sys.stderr, flush=True)
        else:
            self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def error(self, message: str, title: str = "llama-toolchain") -> None:
        if self.github:
            print(
                f"::error title={_escape_annotation(title)}::{_escape_annotation(message)}",
                file=sys.stderr,
                flush=True,
            )
        else:
            self.console.print(f"[red bold]error ({title}):[/red bold] {message}", highlight=False)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """A named step: a fold under GitHub Actions, a timed header locally."""
        start = time.monotonic()
        if self.github:
            print(f"::group::{title}", file=sys.stderr, flush=True)
        elif not self.quiet:
            self.console.print(f"[bold cyan]==>[/bold cyan] [bold]{title}[/bold]", highlight=False)
        try:
            yield
        finally:
            if self.github:
                print("::endgroup::", file=sys.stderr, flush=True)
            elif not self.quiet:
                self.console.print(f"    [dim]{title}: {time.monotonic() - start:.1f} s[/dim]")

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[ProgressHandle]:
        """A progress bar locally; a line every 10% (at most) under CI, where bars are noise."""
        if self.github or self.quiet or not self.console.is_terminal:
            handle = ProgressHandle(None, None, self, description, total)
            yield handle
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
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
            print(f"    {self.description}: {completed}/{self.total}{suffix}", file=sys.stderr, flush=True)


LOG = Log()
