"""The llama.cpp targets the toolchain needs, by purpose, with the names they had over time.

Each stage builds only what it needs: ``build`` the runner, ``coverage`` the test tools. A want
lists names newest first; the first that the configured tree defines is built. A required want
that the tree lacks stops the build; an optional one is recorded as missing with the reason. The
names come from :mod:`toolchain.core.tree`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..core import tree
from ..errors import UsageError


@dataclass(frozen=True)
class TargetWant:
    purpose: str
    names: tuple[str, ...]
    required: bool = True


TARGET_GROUPS: Mapping[str, tuple[TargetWant, ...]] = MappingProxyType(
    {
        # The program that runs a prompt (`llama-cli` needs the server libraries in recent trees).
        "build": (
            TargetWant("runner", tree.RUNNERS),
            # upstream's own memory fit (PR #16653, trees since late 2025): doctor shows it beside its plan
            TargetWant("fit-params", tree.FIT_PARAMS, required=False),
        ),
        "coverage": (
            TargetWant("backend-ops", tree.BACKEND_OPS),
            TargetWant("export-graph-ops", tree.EXPORTERS, required=False),
            TargetWant("archs", tree.ARCHS, required=False),
            TargetWant("eval-callback", tree.EVAL_CALLBACK, required=False),
            # full last-token logits for the end-to-end comparison (eval-callback prints 6 values)
            TargetWant("logits", tree.LOGITS, required=False),
            TargetWant("quantize", tree.QUANTIZE),
        ),
    }
)


@dataclass(frozen=True)
class TargetChoice:
    purpose: str
    name: str | None  # None: the tree has none of the names
    candidates: tuple[str, ...]
    required: bool


def parse_groups(text: str) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = [g for g in groups if g not in TARGET_GROUPS]
    if unknown or not groups:
        raise UsageError(
            f"unknown target group(s): {', '.join(unknown) or '(none)'}",
            f"choose from: {', '.join(TARGET_GROUPS)}",
        )
    return groups


def choose_targets(
    groups: Iterable[str], available: Iterable[str], extra: Iterable[str] = ()
) -> list[TargetChoice]:
    have = set(available)
    choices: list[TargetChoice] = []
    for group in groups:
        for want in TARGET_GROUPS[group]:
            name = next((n for n in want.names if n in have), None)
            choices.append(TargetChoice(want.purpose, name, want.names, want.required))
    for name in extra:
        choices.append(TargetChoice("requested", name if name in have else None, (name,), True))
    return choices
