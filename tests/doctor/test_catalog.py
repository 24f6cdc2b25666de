"""The catalog is the spec's fourteen classes, as consistent data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from toolchain.doctor.catalog import CLASSES, PATTERNS
from toolchain.doctor.classify import PREDICATES, needles

IDS = (
    "memory",
    "gguf-format",
    "no-metal-build",
    "unsupported-op",
    "other-gpu-users",
    "kernel-missing",
    "metal-library",
    "no-usable-device",
    "architecture-too-new",
    "bf16-unsupported",
    "gpu-command-buffer",
    "build-toolchain",
    "encoder-limit",
    "crash",
)


def test_fourteen_classes_in_diagnostic_order() -> None:
    assert tuple(c.id for c in CLASSES) == IDS
    assert [c.order for c in CLASSES] == list(range(1, 15))
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


_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "logs" / "doctor"
_LABEL = re.compile(r"^# (?P<id>[\w-]+\.[\w-]+): (?P<source>\S.*)$")


def _labelled_lines() -> list[tuple[str, str, str]]:
    """(pattern id, provenance, line) from pattern-lines.txt."""
    out, label = [], None
    for line in (_FIXTURES / "pattern-lines.txt").read_text(encoding="utf-8").splitlines():
        m = _LABEL.match(line)
        if m:
            label = (m["id"], m["source"])
        elif line.strip() and not line.startswith("#"):
            assert label is not None, f"unlabelled fixture line: {line}"
            out.append((*label, line))
            label = None
    return out


def test_every_pattern_has_a_fixture_line() -> None:
    """Each pattern matches a line of a fixture log or a labelled line (which must match its label)."""
    labelled = _labelled_lines()
    for pid, source, line in labelled:
        assert pid in PATTERNS, pid
        assert PATTERNS[pid].compiled.search(line), (pid, line)
        assert source.startswith(("0.3.36 tree, ", "https://")), source
    lines = [line for log in _FIXTURES.glob("*.log") for line in log.read_text().splitlines()]
    lines += [line for _, _, line in labelled]
    without = [p.id for p in PATTERNS.values() if not any(p.compiled.search(line) for line in lines)]
    assert without == []


def test_catalog_rows_are_checked() -> None:
    from toolchain.doctor.catalog import load

    row = "{ id = 'x.a', regex = 'boom here', severity = 'error', weight = 0.5, origin = 'system' }"
    good = f"[[class]]\nid = 'x'\ntitle = 't'\nhow_it_shows = 'h'\nfix = 'f'\npatterns = [ {row} ]\n"
    (cls,) = load(good)
    assert cls.order == 1 and cls.patterns[0].keywords in (("boom",), ("here",))
    with pytest.raises(ValueError, match="regexp"):
        load(good.replace("origin = 'system'", "origin = 'system', regexp = 'typo'"))
    with pytest.raises(ValueError, match="cannot be prefiltered"):
        load(good.replace("'boom here'", r"'\d+'"))


def test_finding_factory_takes_the_class_fields() -> None:
    cls = CLASSES[3]
    f = cls.finding(severity="warning", confidence=0.5, summary="s", observed_by="fixture")
    assert (f.class_id, f.title, f.fix, f.order, f.matches) == (cls.id, cls.title, cls.fix, cls.order, 0)
