"""The catalog is the spec's twelve classes, as consistent data."""

from __future__ import annotations

import re
from pathlib import Path

from toolchain.doctor.catalog import CLASSES, PATTERNS
from toolchain.doctor.classify import PREDICATES, needles

IDS = (
    "memory",
    "gguf-format",
    "no-metal-build",
    "unsupported-op",
    "other-gpu-users",
    "metal-library",
    "no-usable-device",
    "architecture-too-new",
    "bf16-unsupported",
    "gpu-command-buffer",
    "build-toolchain",
    "crash",
)


def test_twelve_classes_in_diagnostic_order() -> None:
    assert tuple(c.id for c in CLASSES) == IDS
    assert [c.order for c in CLASSES] == list(range(1, 13))
    for c in CLASSES:
        assert c.title and c.fix and c.patterns


def test_ids_match_the_readme_table() -> None:
    """The README's doctor table (what users read) lists the same classes in the same order."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| `([\w-]+)` \|", readme, re.MULTILINE)
    doctor_rows = [(int(n), i) for n, i in rows if i in IDS]
    assert doctor_rows == [(n + 1, i) for n, i in enumerate(IDS)]


def test_patterns_are_consistent() -> None:
    ids = [p.id for c in CLASSES for p in c.patterns]
    assert len(ids) == len(set(ids))
    for c in CLASSES:
        for p in c.patterns:
            assert p.id.startswith(c.id + "."), p.id
            assert p.compiled.pattern == p.regex  # compiles
            assert p.origin in ("tree", "legacy", "system")
            assert 0.0 <= p.weight <= 1.0
            assert p.keywords and all(p.keywords), p.id
            assert all(e in PATTERNS for e in p.explained_by), p.id
            assert not p.when or p.when in PREDICATES, p.id
            if p.origin == "legacy":
                assert p.seen_in, p.id
            if p.origin == "tree":
                assert p.sources, p.id
        for combo in c.combinations:
            assert all(r in PATTERNS for r in combo.requires)


def test_keywords_cover_what_the_patterns_match() -> None:
    """The scanner only looks at lines with a keyword: every fixture line a pattern matches has one."""
    logs = Path(__file__).resolve().parents[2] / "fixtures" / "logs" / "doctor"
    seen = set()
    for log in logs.glob("*.log"):
        for line in log.read_text().splitlines():
            for p in PATTERNS.values():
                if p.compiled.search(line):
                    assert any(k in line for k in p.keywords), (p.id, line)
                    seen.add(p.id)
    assert len(seen) > 50
    assert len(needles(PATTERNS.values())) <= 32  # the block scan stays fast
