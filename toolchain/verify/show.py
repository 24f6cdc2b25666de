"""A verification as a person reads it on the console (``verify`` and the end of every ``build``)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..log import LOG, one_line, verbatim
from .records import Verification
from .shipped_kernels import Fact

_STYLE = {"pass": "green", "fail": "red bold", "unverifiable": "yellow"}


def print_table(v: Verification) -> None:
    era = f", era: {v.era}" if v.era else ""
    title = Text(one_line(f"verify {v.path} ({v.profile}{era})"))
    table = Table(title=title, show_lines=False, title_justify="left")
    for col in ("status", "check", "observed by", "found"):
        table.add_column(col, overflow="fold")
    for c in v.checks:
        name = f"{c.name} [{c.arch}]" if c.arch else c.name
        table.add_row(
            Text(c.status, style=_STYLE[c.status]),
            Text(verbatim(name)),
            Text(c.observed_by),
            Text(verbatim(c.found)),
        )
    if not LOG.quiet:
        LOG.console.print(table)
        if v.shipped:
            LOG.console.print(shipped_table(v))
        if v.tree_match:
            label = "dry-run" if not v.tree_match.startswith("no fetchable tree") else "static only"
            LOG.info(verbatim(f"tree match ({label}): {v.tree_match}"))
        for d in v.devices:
            LOG.info(f"device {d.name}: {d.description or '?'} -> {d.device_class} ({d.class_reason})")
        for c in v.checks:
            if c.status == "unverifiable" and c.hint:
                LOG.info(f"  {c.name}: unverifiable: {c.hint}")


def shipped_table(v: Verification) -> Table:
    """What the shipped Metal library can and cannot run (static: read from the build)."""
    table = Table(
        title=Text("shipped library: what it can / cannot run (static, read from the build; no device)"),
        title_justify="left",
    )
    for col in ("file [arch]", "topic", "can", "cannot", "from"):
        table.add_column(col, overflow="fold")
    for f in v.shipped:
        assert isinstance(f, Fact)
        table.add_row(
            Text(verbatim(f"{f.file} [{f.arch}]")),
            Text(f.topic),
            Text(verbatim(f.can)),
            Text(verbatim(f.cannot), style="red" if f.cannot else ""),
            Text(verbatim(f.source)),
        )
    return table
