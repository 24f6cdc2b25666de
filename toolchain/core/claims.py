"""Job claims: how the worker processes of a stage share one job list (standard library only).

The convert and model workers are standalone scripts run in the converter's environment; they
run this file by its path (``runpy.run_path``), not as part of the package. Before each job, worker
``N`` claims it by creating ``<claims>/<index>`` holding ``N``; a job another worker claimed is
skipped. So the workers take the jobs in order as each becomes free (none idles while another has
a queue), and a worker that dies costs only the job it held. The stage reads the claims back to
say which worker held a job that has no result (:func:`claimed_by`).
"""

from __future__ import annotations

import os
from pathlib import Path


def claim(claims: Path | None, index: int, worker: int) -> bool:
    """Whether this worker takes job ``index``: the first to create its claim file does (no
    claims directory: a single worker takes every job)."""
    if claims is None:
        return True
    try:
        fd = os.open(claims / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, str(worker).encode())
    finally:
        os.close(fd)
    return True


def claimed_by(claims: Path) -> dict[int, int]:
    """Job index -> the worker (1-based) that claimed it."""
    out: dict[int, int] = {}
    for entry in claims.iterdir():
        text = entry.read_text().strip()
        if entry.name.isdigit() and text.isdigit():
            out[int(entry.name)] = int(text)
    return out


def worker_args(argv: list[str], first: int) -> tuple[Path | None, int]:
    """A worker's ``CLAIMS N`` arguments from ``argv[first:]`` (absent: one worker, no claims)."""
    if len(argv) > first + 1:
        return Path(argv[first]), int(argv[first + 1])
    return None, 1
