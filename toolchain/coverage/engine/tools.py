"""Which coverage tools this build has, and what each can do (names and options drift).

Detection never runs a test tool to ask: 0.3.20's ``test-llama-archs`` ignores unknown
arguments, so ``--help`` would run every architecture. The test tools' usage text is compiled
into their executables, so their options are read from the bytes (``--test-file``, the
``support`` mode, ``--output … csv``, ``-b``/``--backend``). The runner's and the logits tools'
options live in ``libllama-common`` and are read from their ``--help`` (which exits at once).

A column that cannot be computed is kept, with the reason, in :class:`ToolColumn` records.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...core.proc import capture
from ...core.tree import ARCHS, BACKEND_OPS, EVAL_CALLBACK, EXPORTERS, LOGITS, QUANTIZE, RUNNERS, has_option
from ..records import ToolColumn


def _find(bin_dir: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        path = bin_dir / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def binary_contains(path: Path, needles: Iterable[bytes]) -> dict[bytes, bool]:
    """Which byte strings occur in the file (memory-mapped, nothing executed)."""
    found = dict.fromkeys(needles, False)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for needle in found:
            found[needle] = mm.find(needle) >= 0
    return found


def help_text(program: Path, timeout: float = 30.0) -> str:
    try:
        done = capture(
            [str(program), "--help"], timeout=timeout, env={**os.environ, "LLAMA_LOG_COLORS": "off"}
        )
    except OSError:
        return ""
    return "" if done.timed_out else done.stdout + done.stderr


@dataclass(frozen=True)
class Toolset:
    """The build's programs the matrix uses (``toolchain.core.tree`` has their names over time); None:
    this build has no such program."""

    bin_dir: Path
    backend_ops: Path | None = None  # test-backend-ops: the support and test columns
    exporter: Path | None = None  # test-export-graph-ops: the ops and shapes a model's graphs need
    archs: Path | None = None  # test-llama-archs: random models of the tree's own architectures
    runner: Path | None = None  # llama-completion / llama-cli: the end-to-end column
    logits: Path | None = None  # llama-debug --save-logits: the CPU reference logits
    eval_callback: Path | None = None  # llama-eval-callback: the first node that differs
    quantize: Path | None = None  # llama-quantize: the other weight types
    features: frozenset[str] = field(default_factory=frozenset)
    columns: tuple[ToolColumn, ...] = ()
    runner_flags: tuple[str, ...] = ()  # flags the runner has, of those we use

    def column(self, name: str) -> ToolColumn:
        return next(c for c in self.columns if c.column == name)

    def has(self, feature: str) -> bool:
        return feature in self.features


def detect(bin_dir: Path) -> Toolset:
    """Look at ``bin_dir`` (a build's ``bin/``) and say which columns can be computed."""
    features: set[str] = set()
    backend_ops = _find(bin_dir, BACKEND_OPS)
    exporter = _find(bin_dir, EXPORTERS)
    archs = _find(bin_dir, ARCHS)
    runner = _find(bin_dir, RUNNERS)
    logits = _find(bin_dir, LOGITS)
    eval_cb = _find(bin_dir, EVAL_CALLBACK)
    quantize = _find(bin_dir, QUANTIZE)
    if backend_ops:
        seen = binary_contains(
            backend_ops, (b"--test-file", b"support", b"--output", b"csv", b"NaN at index")
        )
        if seen[b"--test-file"]:
            features.add("test-file")
        if seen[b"support"]:
            features.add("support-mode")
        if seen[b"--output"] and seen[b"csv"]:
            features.add("csv")
    if archs:
        seen = binary_contains(archs, (b"--backend", b"NMSE", b"Summary:"))
        if seen[b"--backend"]:
            features.add("archs-backend")
    runner_flags: list[str] = []
    if runner:
        text = help_text(runner)
        runner_flags = [
            f
            for f in (
                "-no-cnv",
                "--no-warmup",
                "--no-display-prompt",
                "-v",
                "-dev",
                "-ub",
                "-fa",
                "--no-repack",
            )
            if has_option(text, f)
        ]
    if eval_cb and "--tensor-filter" in help_text(eval_cb):
        features.add("tensor-filter")
    if logits and "--save-logits" in help_text(logits):
        features.add("save-logits")
    else:
        logits = None

    def col(name: str, ok: bool, tool: Path | None, reason: str) -> ToolColumn:
        return ToolColumn(name, ok, tool.name if tool else "", "" if ok else reason)

    need_file = (
        "test-backend-ops" if not backend_ops else ("--test-file" if "test-file" not in features else "")
    )
    export_reason = (
        f"none of {', '.join(EXPORTERS)} in {bin_dir} (older trees lack the graph-op exporter; "
        "build the `coverage` target group)"
        if exporter is None
        else ""
    )
    support_reason = (
        "no test-backend-ops in the build (build the `coverage` target group)"
        if not backend_ops
        else "this tree's test-backend-ops has no `support` mode"
        if "support-mode" not in features
        else "this tree's test-backend-ops has no `--output csv`"
        if "csv" not in features
        else f"this tree's test-backend-ops has no {need_file}"
        if need_file
        else export_reason
    )
    test_reason = (
        "no test-backend-ops in the build (build the `coverage` target group)"
        if not backend_ops
        else f"this tree's test-backend-ops has no {need_file}"
        if need_file
        else export_reason
    )
    e2e_reason = f"none of {', '.join(RUNNERS)} in {bin_dir}"
    archs_reason = "no test-llama-archs in this tree (it exists from 2025 on)"
    columns: tuple[ToolColumn, ...] = (
        col("support", not support_reason, backend_ops, support_reason),
        col("test", not test_reason, backend_ops, test_reason),
        col("e2e", runner is not None, runner, e2e_reason),
        col("archs", archs is not None, archs, archs_reason),
    )
    if runner is not None and logits is None:
        columns = tuple(
            ToolColumn(
                c.column,
                c.available,
                c.tool,
                "logits compared on the sampled values llama-eval-callback prints (build llama-debug "
                "for the full last-token logits)"
                if eval_cb
                else "no llama-debug / llama-eval-callback: tokens compared, not logits",
            )
            if c.column == "e2e"
            else c
            for c in columns
        )
    if archs is not None and "archs-backend" not in features:
        columns = tuple(
            ToolColumn(
                c.column,
                c.available,
                c.tool,
                "this tree's test-llama-archs has no -b: one run tests every device; rows are matched "
                "to the backend by device description",
            )
            if c.column == "archs"
            else c
            for c in columns
        )
    return Toolset(
        bin_dir,
        backend_ops,
        exporter,
        archs,
        runner,
        logits,
        eval_cb,
        quantize,
        frozenset(features),
        columns,
        tuple(runner_flags),
    )
