"""Identical op cases are tested once per run and backend, not once per model.

The models of a matrix share most of their op cases: the f16 and q8_0 files of one checkpoint
have the same norms, adds and attention, and architectures of one width the same shapes (4318
case lines in the default matrix, 1041 distinct; the distinct ones are ~30% of the test column's
work, measured by tensor sizes). A case is one line of test-backend-ops' test file; two lines that
differ only in the graph tensor's name (what follows the numbers: :func:`split_case` reads the
file as test-backend-ops' ``make_test_cases_from_file`` does) build the same graph on the same inputs' shapes, and the same
binary runs them on the same backend. So the ``test`` column runs each distinct case once per
run and backend; a later cell takes the verdict of the identical case from the cell that measured
it, and says so (``identical_cases`` in the column's details, the count in its summary).

Only a finished verdict is taken (ok, fail, NaN, not supported): a case that crashed, hung or was
not reached runs again in every cell that has it, so a crash stays in each cell it ends. Two cells
running at once may both run a case neither has finished: that costs time, never a verdict.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ..records import OpResult, OpTest

FINISHED: frozenset[OpTest] = frozenset({"ok", "fail", "nan-both", "nan-reference", "not-supported"})


MAX_OP_PARAMS = 16  # GGML_MAX_OP_PARAMS / sizeof(int32_t)
MAX_SRC = 10  # GGML_MAX_SRC


def split_case(line: str) -> tuple[str, str]:
    """(the case, the name) of a test-file line, read the way ``make_test_cases_from_file`` reads
    it: op, type, ne[4], the op_params count and values, the source count, per source its type,
    ne[4] and nb[4]; then the name (the tool takes its first word; ``-`` is none). A line that does
    not parse is its own case, with no name."""
    fields = line.split()
    try:
        n = 6 + 1 + min(int(fields[6]), MAX_OP_PARAMS)
        n += 1 + min(int(fields[n]), MAX_SRC) * 9
    except (IndexError, ValueError):
        return line.strip(), ""
    if n > len(fields):
        return line.strip(), ""
    name = fields[n] if n < len(fields) else ""
    return " ".join(fields[:n]), "" if name == "-" else name


def case_identity(line: str) -> str:
    """The case a test-file line builds: the line without its tensor's name."""
    return split_case(line)[0]


@dataclass(frozen=True)
class KnownCase:
    test: OpTest
    message: str
    cell: str  # the cell whose run measured it


@dataclass(frozen=True)
class CaseSplit:
    """A cell's test file split into the lines to run and the cases measured already."""

    run: tuple[int, ...]  # indices into the cell's lines (and its ops) to run now
    known: dict[int, KnownCase]  # index -> the identical case's verdict


class CaseMemo:
    """The finished verdicts of this run's test column, per backend and case (thread-safe: the
    cells of a run share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], KnownCase] = {}

    def split(self, backend: str, lines: Sequence[str]) -> CaseSplit:
        with self._lock:
            known = {
                i: found
                for i, line in enumerate(lines)
                if (found := self._known.get((backend, case_identity(line)))) is not None
            }
        return CaseSplit(tuple(i for i in range(len(lines)) if i not in known), known)

    def record(
        self, backend: str, lines: Sequence[str], ops: Sequence[OpResult], run: Sequence[int], cell: str
    ) -> None:
        """Keep the finished verdicts of the lines ``run`` (``ops`` aligned with ``lines``)."""
        with self._lock:
            for i in run:
                if ops[i].test in FINISHED:
                    self._known.setdefault(
                        (backend, case_identity(lines[i])), KnownCase(ops[i].test, ops[i].message, cell)
                    )
