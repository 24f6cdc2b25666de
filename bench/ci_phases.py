"""Phases of one `nox -s build coverage` run, read from its stamped log and its reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASSES = ("cold", "warm", "nochange")
GOALS = {"cold": 600.0, "warm": 180.0, "nochange": 30.0}


@dataclass(frozen=True)
class Phases:
    seconds: float
    returncode: int
    phases: dict[str, float] = field(default_factory=dict)
    reused: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "returncode": self.returncode,
            "phases": {k: round(v, 1) for k, v in self.phases.items()},
            "reused": list(self.reused),
        }


def commands(log: Path) -> list[tuple[str, float, float]]:
    """(command line nox ran, start, end) from the stamped log; a command ends where the next starts."""
    marks: list[tuple[float, str]] = []
    last = 0.0
    for line in log.read_text(errors="replace").splitlines():
        stamp, _, text = line.partition("\t")
        try:
            last = float(stamp)
        except ValueError:
            continue
        if text.startswith("nox > "):
            marks.append((last, text.removeprefix("nox > ")))
    out = []
    for i, (t, text) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else last
        out.append((text, t, end))
    return out


def analyse(run: Path) -> Phases:
    result = json.loads((run / "result.json").read_text())
    phases: dict[str, float] = {}
    for text, start, end in commands(run / "log.txt"):
        phases[text[:80]] = phases.get(text[:80], 0.0) + (end - start)
    return Phases(float(result["seconds"]), int(result["returncode"]), phases)


def table(results: dict[str, Phases]) -> str:
    rows = sorted({k for r in results.values() for k in r.phases})
    names = [p for p in PASSES if p in results]
    lines = [f"{'phase':80} " + " ".join(f"{n:>9}" for n in names)]
    for row in rows:
        lines.append(f"{row:80} " + " ".join(f"{results[n].phases.get(row, 0.0):9.1f}" for n in names))
    lines.append(f"{'whole command':80} " + " ".join(f"{results[n].seconds:9.1f}" for n in names))
    return "\n".join(lines)
