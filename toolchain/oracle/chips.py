"""Per-chip ``device_id``: the tree's own ``ggml_metal_device_id_parse`` applied to a GPU name.

At 0.3.36 ``ggml_metal_device_init`` sets ``props.device_id = ggml_metal_device_id_parse([name])``:
the name must start with ``"Apple "`` and the rest equal one entry of the ``k_metal_devices`` table
(``DEV("M1 Pro", GGML_METAL_DEVICE_M1_PRO)`` …), else ``GGML_METAL_DEVICE_GENERIC``; the enum
values are those of ``enum ggml_metal_device_id`` in ``ggml-metal-device.h``. All three are read
from the tree here (with file:line), and the parse function is modelled only when its body is that
shape (prefix ``strncmp`` + exact ``strcmp`` over the table): a tree that parses names another way
gets no ``device_id`` value, which refuses the oracle where ``supports_op`` reads it.

Which GPU family each chip generation is (M1: Apple7 …) is Apple hardware data (``CHIP_FAMILIES``),
kept apart like ``GPU_FAMILIES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from .extract import DEVICE_H, DEVICE_M

PARSE = "ggml_metal_device_id_parse"
# chip generation (the table name's first word) -> GPU family profile: Apple's feature set tables
CHIP_FAMILIES: Mapping[str, str] = MappingProxyType(
    {"M1": "apple7", "M2": "apple8", "M3": "apple9", "M4": "apple9", "M5": "apple10", "A18": "apple9"}
)

_DEV = re.compile(r'^\s*DEV\(\s*"([^"]+)"\s*,\s*(\w+)\s*\)')
_ENUM = re.compile(r"enum\s+ggml_metal_device_id\s*\{(.*?)\}", re.S)
_PREFIX = re.compile(r'static\s+const\s+char\s+prefix\[\]\s*=\s*"([^"]*)"\s*;')


@dataclass(frozen=True)
class Chip:
    name: str  # the table's name: "M1 Pro"
    token: str  # GGML_METAL_DEVICE_M1_PRO
    value: int  # its enum value
    where: str  # file:line of its table entry
    value_where: str  # file:line of the enum constant


@dataclass(frozen=True)
class ChipTable:
    prefix: str  # "Apple "
    chips: tuple[Chip, ...]
    generic: int  # GGML_METAL_DEVICE_GENERIC
    where: str  # the parse function's file:line

    def parse(self, device_name: str) -> tuple[int, str]:
        """(device_id, why) as the tree's parse function computes it for ``device_name``."""
        if device_name.startswith(self.prefix):
            suffix = device_name[len(self.prefix) :]
            for chip in self.chips:
                if chip.name == suffix:
                    return chip.value, (
                        f"tree {self.where}: {PARSE}({device_name!r}) -> {chip.token} "
                        f"({chip.where}; = {chip.value} at {chip.value_where})"
                    )
        return self.generic, (
            f"tree {self.where}: {PARSE}({device_name!r}) -> GGML_METAL_DEVICE_GENERIC "
            f"(no {self.prefix!r} + table name matches)"
        )


def _enum_values(header: str) -> dict[str, tuple[int, int]]:
    """NAME -> (value, 1-based line) of enum ggml_metal_device_id."""
    m = _ENUM.search(header)
    if not m:
        return {}
    out: dict[str, tuple[int, int]] = {}
    line = header.count("\n", 0, m.start(1)) + 1
    nxt = 0
    for raw in m.group(1).split("\n"):
        for item in raw.split(","):
            item = item.split("//", 1)[0].strip()
            if not item:
                continue
            name, _, value = (part.strip() for part in item.partition("="))
            nxt = int(value, 0) if value else nxt
            out[name] = (nxt, line)
            nxt += 1
        line += 1
    return out


def chip_table(tree: Path) -> ChipTable | None:
    """The tree's device-id table and parse function, or None when either is absent or the parse
    function is not the shape modelled here (see the module docstring)."""
    try:
        text = (tree / DEVICE_M).read_text(encoding="utf-8", errors="replace")
        header = (tree / DEVICE_H).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(rf"^static .*\b{PARSE}\(", ln)), None)
    if start is None:
        return None
    end = next((i for i in range(start, len(lines)) if lines[i].rstrip() == "}"), len(lines) - 1)
    body = "\n".join(lines[start : end + 1])
    prefix = _PREFIX.search(body)
    exact = re.search(r"strcmp\(\s*suffix\s*,\s*k_metal_devices\[i\]\.name\s*\)\s*==\s*0", body)
    starts = re.search(r"strncmp\(\s*name\s*,\s*prefix\s*,\s*sizeof\(prefix\)\s*-\s*1\s*\)\s*!=\s*0", body)
    if not (prefix and exact and starts) or re.search(r"\b(strstr|strcasecmp|containsString)\b", body):
        return None
    values = _enum_values(header)
    if "GGML_METAL_DEVICE_GENERIC" not in values:
        return None
    chips: list[Chip] = []
    for i, ln in enumerate(lines[:start]):
        m = _DEV.match(ln)
        if m and m.group(2) in values:
            value, vline = values[m.group(2)]
            chips.append(Chip(m.group(1), m.group(2), value, f"{DEVICE_M}:{i + 1}", f"{DEVICE_H}:{vline}"))
    if not chips:
        return None
    return ChipTable(
        prefix.group(1), tuple(chips), values["GGML_METAL_DEVICE_GENERIC"][0], f"{DEVICE_M}:{start + 1}"
    )


def chip_slug(name: str) -> str:
    """ "M1 Pro" -> "m1-pro" (a profile name)."""
    return "-".join(name.lower().split())
