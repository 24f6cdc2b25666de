"""This machine's test-backend-ops support tables against the tree's docs/ops/BLAS.csv and CPU.csv."""

from __future__ import annotations

from pathlib import Path

from ..core.proc import capture
from ..core.tree import BACKEND_OPS
from . import normalise
from .probe import parse_support_csv
from .records import (
    TableValidation,
)
from .table import skipped, table_validation, test_sources


def find_backend_ops(build: Path) -> Path | None:
    """The build's test-backend-ops (``build`` is a build dir or its bin/), or None."""
    for cand in (d / name for name in BACKEND_OPS for d in (build / "bin", build)):
        if cand.is_file():
            return cand
    return None


def measured_tables(tree: Path, build: Path | None, older_tree: Path | None) -> tuple[TableValidation, ...]:
    """This machine's ``test-backend-ops support -b BLAS / CPU`` against docs/ops/BLAS.csv / CPU.csv."""
    out = []
    for backend in ("BLAS", "CPU"):
        ref_path = tree / "docs" / "ops" / f"{backend}.csv"
        if build is None:
            out.append(
                skipped(backend, ref_path, "no build given (--build): nothing measured", observed_by="device")
            )
            continue
        tbo = find_backend_ops(build)
        if tbo is None:
            out.append(
                skipped(
                    backend,
                    ref_path,
                    f"no test-backend-ops in {build}: build it with --targets build,coverage",
                    observed_by="device",
                )
            )
            continue
        if not ref_path.is_file():
            out.append(
                skipped(backend, ref_path, f"this tree has no docs/ops/{backend}.csv", observed_by="device")
            )
            continue
        args = [str(tbo), "support", "-b", backend, "--output", "csv"]
        try:
            done = capture(args, timeout=600, cwd=tbo.parent)
        except OSError as exc:
            out.append(skipped(backend, ref_path, f"{' '.join(args)} failed: {exc}", observed_by="device"))
            continue
        if done.timed_out:
            why = f"{' '.join(args)} failed: no exit within 600 s (process group ended)"
            out.append(skipped(backend, ref_path, why, observed_by="device"))
            continue
        rows = parse_support_csv(done.stdout)
        if not rows:
            out.append(
                skipped(
                    backend,
                    ref_path,
                    f"this build has no {backend} backend (no rows from {' '.join(args)})",
                    observed_by="device",
                )
            )
            continue
        reference = parse_support_csv(ref_path.read_text(encoding="utf-8"))
        norm = normalise.make_normaliser(
            [[(r.op, r.case) for r in reference], [(r.op, r.case) for r in rows]],
            test_sources(tree, older_tree),
        )
        table, _c, _r = table_validation(
            backend,
            ref_path,
            reference,
            {backend: rows},
            norm,
            ours_label=f"{' '.join(args)} (this machine)",
            observed_by="device",
            evidence_for=None,
            min_agreement=0.0,
            gate=False,
        )
        out.append(table)
    return tuple(out)
