"""coverage.json's documented schema (toolchain/coverage/SCHEMA.md) lists every field of every record."""

import dataclasses
import re
from pathlib import Path

from toolchain.coverage import records

SCHEMA = Path(records.__file__).with_name("SCHEMA.md")


def test_every_record_field_is_documented() -> None:
    text = SCHEMA.read_text()
    sections = dict(re.findall(r"## `(\w+)`\n(.*?)(?=\n## |\Z)", text, re.S))
    for name in (
        "CoverageRun",
        "Cell",
        "CheckResult",
        "OpResult",
        "TensorShape",
        "DeviceSummary",
        "ToolColumn",
        "BaselineDiff",
        "CellChange",
        "ModelInput",
        "SweepSection",
        "SweepClassRow",
    ):
        cls = getattr(records, name)
        assert name in sections, f"SCHEMA.md has no section for {name}"
        documented = set(re.findall(r"^\| `(\w+)` \|", sections[name], re.M))
        fields = {f.name for f in dataclasses.fields(cls)}
        assert fields == documented, (
            f"{name}: undocumented {fields - documented}, stale {documented - fields}"
        )
        for row in re.findall(r"^\| `\w+` \|.*\| (.*) \|$", sections[name], re.M):
            assert row.strip(), f"{name}: a field without its meaning"
