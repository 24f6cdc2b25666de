"""``dryrun validate``: the dry run proves itself on the tree's own built-in cases.

Upstream runs these cases on real Macs, so a finding on a case supports_op accepts is first a
suspect in our stand-in. Each one is explained or the command fails:

- ``confirmed-in-tree``: a missing kernel whose base name no Metal source of the tree defines
  under any defines (the name is shown where the C++ builds it, file:line, and the names that do
  exist with the same prefix), or one defined only under a define this profile's loader does not
  set (named, with the loader's file:line);
- ``unexplained``: everything else (an encoder abort, a limit, a crash): a stand-in gap until
  shown otherwise, listed with its case, kernels and message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.tree import METAL_DIR
from .library import kernel_sources
from .records import CaseResult, DryRun
from .run import dry_run

DEVICE_CPP = METAL_DIR / "ggml-metal-device.cpp"
OPS_CPP = METAL_DIR / "ggml-metal-ops.cpp"


@dataclass(frozen=True)
class Explained:
    profile: str
    case: CaseResult
    kind: str  # "confirmed-in-tree" | "unexplained"
    reason: str


@dataclass(frozen=True)
class Validation:
    """``dryrun validate``: the tree's built-in cases encoded per profile, every finding explained."""

    tree: str
    commit: str
    run: DryRun
    explained: tuple[Explained, ...]  # every finding on a case supports_op accepts
    ok: bool  # something was encoded and nothing is unexplained
    reason: str  # the verdict in one line

    def summary_lines(self) -> list[str]:
        lines: list[str] = list(self.run.standin)
        for batch in self.run.runs:
            lines.append(f"{batch.source}: {batch.cases} cases per profile, {batch.seconds:.1f} s")
            for p in batch.results:
                lines.append(f"    {p.column:28} " + ", ".join(f"{k} {v}" for k, v in p.counts.items()))
        for e in self.explained:
            lines.append(f"    {e.kind}: {e.profile} {e.case.op} {e.case.case[:120]} -> {e.reason[:300]}")
        return lines


def _literal_pattern(fmt: str) -> re.Pattern[str]:
    parts = re.split(r"%[-+ 0-9.]*(?:l{0,2}|z)?[dius]", fmt)
    return re.compile("^" + r".+?".join(re.escape(p) for p in parts) + "$")


def where_built(tree: Path, name: str) -> str:
    """file:line of the format string in the backend's C++ that builds ``name``, if one does."""
    for rel in (DEVICE_CPP, OPS_CPP):
        path = tree / rel
        if not path.is_file():
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            for lit in re.findall(r'"(kernel_[^"]*)"', line):
                if "%" in lit and _literal_pattern(lit).match(name) or lit == name:
                    return f"{rel}:{i}: {line.strip()}"
    return "no format string in the backend's C++ matches it"


def _raw_names(tree: Path) -> dict[str, str]:
    """Every kernel name spelled anywhere in the Metal sources, whatever the defines."""
    names: dict[str, str] = {}
    pat = re.compile(r'host_name\(\s*"(kernel_\w+)"\s*\)|^\s*kernel\s+void\s+(kernel_\w+)\s*\(')
    for src in kernel_sources(tree):
        for path in (src, *src.parent.glob("*.h")):
            for i, line in enumerate(
                path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1
            ):
                for m in pat.finditer(line):
                    names.setdefault(m.group(1) or m.group(2), f"{path.relative_to(tree)}:{i}")
    return names


def explain(tree: Path, run: DryRun) -> tuple[Explained, ...]:
    raw = _raw_names(tree)
    out: list[Explained] = []
    for batch in run.runs:
        for p in batch.results:
            info = next(i for i in run.profiles if i.profile == p.profile)
            for f in p.findings:
                if f.verdict == "missing-kernel":
                    reasons: list[str] = []
                    confirmed = True
                    for m in f.missing:
                        if m.base in raw:
                            inactive = [d for d in info.library_defines if not d.active]
                            reasons.append(
                                f"{m.base} is defined at {raw[m.base]} only under a define this profile's "
                                f"loader does not set ({', '.join(f'{d.name} ({d.condition}, {d.where})' for d in inactive)})"
                            )
                            confirmed = confirmed and bool(inactive)
                        else:
                            prefix = re.sub(r"_?\d+$", "", m.base)
                            siblings = sorted(n for n in raw if n.startswith(prefix) and n != m.base)
                            reasons.append(
                                f"{m.base} is instantiated nowhere in the tree's Metal sources; built at "
                                f"{where_built(tree, m.base)}; the tree has {', '.join(siblings[:12]) or 'no name with that prefix'}"
                            )
                    out.append(
                        Explained(
                            p.profile,
                            f,
                            "confirmed-in-tree" if confirmed else "unexplained",
                            "; ".join(reasons),
                        )
                    )
                else:
                    text = f.abort or ", ".join(
                        f"{lim.what} {lim.value} > {lim.limit} ({lim.kernel})" for lim in f.limits
                    )
                    out.append(Explained(p.profile, f, "unexplained", f"{f.verdict}: {text}"))
    return tuple(out)


def validate(
    tree: Path,
    cache_dir: Path,
    work: Path,
    *,
    profiles: Sequence[str] | None = None,
    ops: str | None = None,
) -> Validation:
    run = dry_run(tree, cache_dir, work, batches=[("built-in", None)], profiles=profiles, ops=ops)
    explained = explain(tree.resolve(), run)
    unexplained = [e for e in explained if e.kind == "unexplained"]
    encoded = sum(
        p.counts.get(v, 0) for b in run.runs for p in b.results for v in p.counts if v != "unsupported"
    )
    if encoded == 0:
        ok, reason = False, "no case was encoded: nothing could be checked"
    elif unexplained:
        ok, reason = False, f"{len(unexplained)} unexplained finding(s) on cases supports_op accepts"
    else:
        confirmed = len(explained)
        ok = True
        reason = f"{encoded} encoded cases, {confirmed} finding(s), all confirmed in the tree, 0 unexplained"
    return Validation(str(tree), run.commit, run, explained, ok, reason)
