"""Phases of one `nox -s build coverage` run, from its stamped log (each line stamped as it arrived).

The seconds are the stages' own: the timed steps they print (``==> title`` ... ``    title: 12.3 s``
from ``LOG.step``), the commands nox prints as it runs them, and, inside ``convert``, the lines
that stage prints as it moves from the converter environment to the models to the conversion.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASSES = ("cold", "warm", "nochange")
GOALS = {"cold": 600.0, "warm": 180.0, "nochange": 30.0}
PHASES = (
    "nox venvs",
    "source",
    "build",
    "verify",
    "coverage tools",
    "models",
    "converter env",
    "convert",
    "oracle validate",
    "dry-run build",
    "matrix",
    "other",
)
_STEP_DONE = re.compile(r"^    (?P<title>.+): (?P<seconds>\d+(?:\.\d+)?) s$")
_REUSED = re.compile(r"reused|restored from the cache|up to date|nothing to do|\(cached\)|reusing", re.I)


@dataclass(frozen=True)
class Phases:
    seconds: float
    returncode: int
    phases: dict[str, float] = field(default_factory=dict)
    reused: tuple[str, ...] = ()
    load: tuple[float, float] = (0.0, 0.0)  # mean and max of the 1-minute load average during the run

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "returncode": self.returncode,
            "phases": {k: round(v, 1) for k, v in self.phases.items()},
            "reused": list(self.reused),
            "load_mean_max": [round(x, 2) for x in self.load],
        }


def stamped(log: Path) -> list[tuple[float, str]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        stamp, _, text = line.partition("\t")
        try:
            out.append((float(stamp), text))
        except ValueError:
            continue
    return out


def commands(lines: list[tuple[float, str]], end: float) -> list[tuple[str, float, float, list[str]]]:
    """(command nox ran, start, end, its output lines); a command ends where nox's next line starts."""
    marks = [
        (i, t, text.removeprefix("nox > ")) for i, (t, text) in enumerate(lines) if text.startswith("nox > ")
    ]
    out = []
    for n, (i, t, text) in enumerate(marks):
        j, stop = (marks[n + 1][0], marks[n + 1][1]) if n + 1 < len(marks) else (len(lines), end)
        out.append((text, t, stop, [x for _, x in lines[i + 1 : j]]))
    return out


def _steps(output: list[str]) -> dict[str, float]:
    """Seconds of the timed steps (LOG.step) a command printed, by title."""
    found: dict[str, float] = {}
    for line in output:
        m = _STEP_DONE.match(line)
        if m:
            found[m["title"]] = found.get(m["title"], 0.0) + float(m["seconds"])
    return found


def _convert_split(lines: list[tuple[float, str]], start: float, stop: float) -> dict[str, float]:
    """Converter env / models / convert inside the convert command, from the lines the stage prints
    as it moves on (the env is made first, then the models, then the conversion and validation)."""
    mine = [(t, x) for t, x in lines if start <= t <= stop]
    env_end = next((t for t, x in mine if "tiny model" in x or "converting " in x), None)
    models_end = next(
        (t for t, x in mine if x.startswith("converting ") or "restored from the cache" in x), None
    )
    env_end = env_end if env_end is not None else start
    models_end = models_end if models_end is not None else env_end
    return {"converter env": env_end - start, "models": models_end - env_end, "convert": stop - models_end}


def analyse(run: Path) -> Phases:
    result = json.loads((run / "result.json").read_text())
    total = float(result["seconds"])
    lines = stamped(run / "log.txt")
    phases = dict.fromkeys(PHASES, 0.0)
    builds = 0
    for text, start, stop, output in commands(lines, total):
        wall = stop - start
        steps = _steps(output)
        if text.startswith(("python -m pip install", "Creating virtual environment")):
            phases["nox venvs"] += wall
        elif text.startswith("llama-toolchain build"):
            builds += 1
            if builds == 1 and "--targets" not in text:
                phases["source"] += steps.get("source", 0.0)
                phases["verify"] += sum(v for k, v in steps.items() if k.startswith("verify"))
                phases["build"] += wall - phases["source"] - phases["verify"]
            else:
                phases["coverage tools"] += wall
        elif text.startswith("llama-toolchain convert"):
            for k, v in _convert_split(lines, start, stop).items():
                phases[k] += v
        elif text.startswith("llama-toolchain oracle"):
            phases["oracle validate"] += wall
        elif text.startswith("llama-toolchain coverage"):
            dry = sum(v for k, v in steps.items() if "metal-dryrun" in k or "metal-predicted" in k)
            phases["dry-run build"] += dry
            phases["matrix"] += wall - dry
    phases["other"] = max(0.0, total - sum(v for k, v in phases.items() if k != "other"))
    reused = tuple(dict.fromkeys(x.strip() for _, x in lines if _REUSED.search(x)))[:12]
    samples = json.loads((run / "load.json").read_text()) if (run / "load.json").is_file() else []
    load = (sum(samples) / len(samples), max(samples)) if samples else (0.0, 0.0)
    return Phases(total, int(result["returncode"]), phases, reused, load)


def table(results: dict[str, Phases]) -> str:
    """Markdown: seconds per phase and pass, the ratios to cold, the goals."""
    names = [p for p in PASSES if p in results]
    head = "| phase | " + " | ".join(names) + "".join(f" | {n}/cold" for n in names if n != "cold") + " |"
    lines = [head, "|---" * (1 + len(names) + sum(n != "cold" for n in names)) + "|"]
    cold = results.get("cold")

    def ratio(a: float, b: float | None) -> str:
        return f"{a / b:.2f}" if b else ""

    for phase in PHASES:
        row = [f"{results[n].phases.get(phase, 0.0):.1f}" for n in names]
        row += [
            ratio(results[n].phases.get(phase, 0.0), cold.phases.get(phase) if cold else None)
            for n in names
            if n != "cold"
        ]
        lines.append(f"| {phase} | " + " | ".join(row) + " |")
    row = [f"**{results[n].seconds:.1f}**" for n in names]
    row += [ratio(results[n].seconds, cold.seconds if cold else None) for n in names if n != "cold"]
    lines.append("| whole command | " + " | ".join(row) + " |")
    goals = [f"≤ {GOALS[n]:.0f} s: {'met' if results[n].seconds <= GOALS[n] else 'NOT met'}" for n in names]
    lines.append("| goal | " + " | ".join(goals) + " |" + " |" * sum(n != "cold" for n in names))
    loads = [f"{results[n].load[0]:.1f} (max {results[n].load[1]:.1f})" for n in names]
    lines.append(
        "| load average (2 cores) | " + " | ".join(loads) + " |" + " |" * sum(n != "cold" for n in names)
    )
    return "\n".join(lines)
