"""Apple GPU families as data, turned into ``ggml_metal_device_props`` by the tree's own rules.

Two kinds of knowledge, kept apart and both recorded per value:

- What a GPU *is* (which ``MTLGPUFamily*`` it reports, threadgroup memory, unified memory): facts
  about Apple hardware from Apple's Metal feature set tables, and for the paravirtual device of
  hosted runners from its device log (llama.cpp #8617, #14829). Data below, ``GPU_FAMILIES``.
- How ggml turns that into props (``has_simdgroup_reduction = Apple7 || Metal3`` …): read from
  the tree's ``ggml_metal_device_init`` in ``ggml-metal-device.m`` (``device_rules``), so a tree
  that changes a rule changes the profile. Every prop value says where it came from: the tree
  (file:line and the statement), the family data, or "not modelled" (zero) — the last only for
  fields the cut ``supports_op`` does not read: a read field without a value refuses the oracle
  (``ExtractionFailed``), as does a tree whose ``ggml_metal_device_init`` cannot be found.

A profile = a GPU family + run-time switches (``GGML_METAL_BF16_DISABLE`` …) that the tree's init
honours. Profiles: apple7 (M1), apple8 (M2), apple9 (M3/M4), apple10 (M5, only if the tree
knows it), each ``-nobf16`` variant, and ``paravirtual``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..errors import UsageError
from .chips import CHIP_FAMILIES, ChipTable, chip_slug, chip_table
from .extract import DEVICE_M, ExtractionFailed, PropsField

APPLE_TABLES = "Apple Metal feature set tables (developer.apple.com/metal/Metal-Feature-Set-Tables.pdf)"


@dataclass(frozen=True)
class GPUFamily:
    name: str
    description: str
    device_name: str  # what MTLDevice.name reports (the tree matches names for some rules)
    families: tuple[str, ...]  # MTLGPUFamily* it supports, without the prefix: Apple7, Metal3 …
    families_source: str
    max_threadgroup_memory: int
    unified_memory: bool
    # Only listed when the tree's source names it (e.g. Apple10 = M5): "" = always.
    needs_tree_token: str = ""


def _apple(n: int) -> tuple[str, ...]:
    return tuple(f"Apple{i}" for i in range(1, n + 1))


_COMMON = ("Common1", "Common2", "Common3")

GPU_FAMILIES: Mapping[str, GPUFamily] = MappingProxyType(
    {
        f.name: f
        for f in (
            GPUFamily(
                "apple7",
                "Apple7 GPU family: M1 (A14)",
                "Apple M1",
                (*_apple(7), *_COMMON, "Mac2", "Metal3", "Metal4"),
                f"{APPLE_TABLES}; Metal3 from macOS 13, Metal4 from macOS 26 on Apple7+",
                32768,
                True,
            ),
            GPUFamily(
                "apple8",
                "Apple8 GPU family: M2 (A15, A16)",
                "Apple M2",
                (*_apple(8), *_COMMON, "Mac2", "Metal3", "Metal4"),
                f"{APPLE_TABLES}; Metal3 from macOS 13, Metal4 from macOS 26 on Apple7+",
                32768,
                True,
            ),
            GPUFamily(
                "apple9",
                "Apple9 GPU family: M3, M4 (A17 Pro, A18)",
                "Apple M4",
                (*_apple(9), *_COMMON, "Mac2", "Metal3", "Metal4"),
                f"{APPLE_TABLES}; Metal3 from macOS 13, Metal4 from macOS 26 on Apple7+",
                32768,
                True,
            ),
            GPUFamily(
                "apple10",
                "Apple10 GPU family: M5 (A19)",
                "Apple M5",
                (*_apple(10), *_COMMON, "Mac2", "Metal3", "Metal4"),
                f"{APPLE_TABLES}; Metal4 from macOS 26",
                32768,
                True,
                needs_tree_token="M5",
            ),
            GPUFamily(
                "paravirtual",
                "Apple Paravirtual device (GitHub-hosted macOS runners, VMs)",
                "Apple Paravirtual device",
                (*_apple(5), *_COMMON),
                "the device log of hosted runners: MTLGPUFamilyApple5 / Common3, no Metal3 "
                "(llama.cpp #8617, #14829)",
                32768,
                True,
            ),
        )
    }
)

# name suffix -> run-time switches set (environment variables the tree's init reads)
VARIANTS: Mapping[str, tuple[str, ...]] = MappingProxyType({"": (), "-nobf16": ("GGML_METAL_BF16_DISABLE",)})


@dataclass(frozen=True)
class Rule:
    """One statement of the tree's device init that sets a prop."""

    prop: str
    kind: str  # "family" (OR over families) | "env-off" (switch turns it off) | "attribute" | "max-apple"
    families: tuple[str, ...] = ()
    env: str = ""
    attribute: str = ""  # MTLDevice property read (hasUnifiedMemory, maxThreadgroupMemoryLength …)
    where: str = ""  # file:line
    text: str = ""


@dataclass(frozen=True)
class DeviceRules:
    rules: tuple[Rule, ...]
    tensor_names: tuple[str, ...]  # device names that keep the tensor API (M5 …); () = no such rule
    source: str  # the file the rules were read from
    knows: tuple[str, ...]  # name tokens the tree mentions (M5, A19 …)


@dataclass(frozen=True)
class PropValue:
    """One field of the device props the cut ``supports_op`` reads, and why it has that value."""

    name: str  # the props field, e.g. has_simdgroup_mm
    value: str  # as the probe's profiles file gives it ("1", "32768", "MTL0")
    source: str  # the tree's file:line and rule, or the Apple table, it comes from


@dataclass(frozen=True)
class DeviceProfile:
    """A GPU family (and run-time switches) as the tree's Metal init would see it."""

    name: str  # the family's (or chip's) name and variant: apple9, apple9-nobf16, m5 …
    description: str  # the chip (when one), the family's description and the switches, for people
    family: str  # the GPU_FAMILIES entry it is built on
    switches: tuple[str, ...]  # environment variables set (GGML_METAL_BF16_DISABLE …)
    props: tuple[PropValue, ...]

    def props_values(self) -> dict[str, str]:
        return {p.name: p.value for p in self.props}

    def prop(self, name: str) -> str | None:
        return self.props_values().get(name)


_FAMILY = re.compile(r"supportsFamily:\s*MTLGPUFamily(\w+?)(?:_GGML)?\s*\]")
_ASSIGN = re.compile(r"dev->props\.(\w+)\s*(\|?=)\s*(.+?);\s*$")
_ENV_OFF = re.compile(
    r'getenv\("(\w+)"\)\s*!=\s*(?:NULL|nil)\s*\)\s*\{\s*dev->props\.(\w+)\s*=\s*false;', re.S
)
_ATTR = re.compile(r"dev->mtl_device\.(\w+)\s*$")


INIT = "ggml_metal_device_init"
NOT_MODELLED = "not modelled: zero (not read by supports_op)"


def device_rules(tree: Path) -> DeviceRules:
    """Read the props rules from the tree's ``ggml_metal_device_init`` (statements, not a copy).

    Raises ``ExtractionFailed`` when the function is not there: rules read from anywhere else
    would be a guess.
    """
    path = tree / DEVICE_M
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ExtractionFailed(f"{DEVICE_M} cannot be read ({exc.strerror}): no device-init rules") from exc
    lines = text.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if re.match(rf"^ggml_metal_device_t {INIT}\(", line)),
        None,
    )
    if start is None:
        raise ExtractionFailed(
            f"{INIT} is not defined at column 0 in {DEVICE_M}: renamed or moved upstream, so the rules "
            "that turn a GPU family into props (simdgroup, bfloat …) cannot be read"
        )
    end = next((i for i in range(start + 1, len(lines)) if lines[i].rstrip() == "}"), None)
    if end is None:
        raise ExtractionFailed(f"{INIT} in {DEVICE_M}:{start + 1} has no closing `}}` at column 0")
    rules: list[Rule] = []
    family_rules: dict[str, list[str]] = {}
    for i in range(start, end + 1):
        m = _ASSIGN.search(lines[i])
        if not m:
            continue
        prop, op, rhs = m.groups()
        where = f"{DEVICE_M}:{i + 1}"
        fams = _FAMILY.findall(rhs)
        if fams:
            if op == "=":
                family_rules[prop] = []
            family_rules.setdefault(prop, []).extend(fams)
            rules.append(Rule(prop, "family", tuple(family_rules[prop]), where=where, text=lines[i].strip()))
        elif am := _ATTR.search(rhs):
            rules.append(Rule(prop, "attribute", attribute=am.group(1), where=where, text=lines[i].strip()))
        elif "MTLGPUFamilyApple1" in rhs and prop == "gpu_family":
            rules.append(Rule(prop, "max-apple", where=where, text=lines[i].strip()))
    for m in _ENV_OFF.finditer(text[sum(len(x) + 1 for x in lines[:start]) :]):
        line = text.count("\n", 0, text.find(m.group(0))) + 1
        rules.append(
            Rule(
                m.group(2),
                "env-off",
                env=m.group(1),
                where=f"{DEVICE_M}:{line}",
                text=" ".join(m.group(0).split()),
            )
        )
    body = "\n".join(lines[start : end + 1])
    tensor_names = tuple(re.findall(r'!\[\[dev->mtl_device name\] containsString:@"(\w+)"\]', body))
    knows = tuple(sorted(set(re.findall(r'"((?:M|A)\d+)(?: [A-Za-z]+)?"', text))))
    return DeviceRules(tuple(rules), tensor_names, str(DEVICE_M), knows)


def _last(rules: Sequence[Rule], prop: str, kind: str) -> Rule | None:
    found = [r for r in rules if r.prop == prop and r.kind == kind]
    return found[-1] if found else None


def make_profile(
    family: GPUFamily,
    suffix: str,
    rules: DeviceRules,
    fields: Sequence[PropsField],
    used: Collection[str],
    *,
    chips: ChipTable | None = None,
    chip: str = "",
) -> DeviceProfile:
    """One profile; ``used`` = the props fields the cut ``supports_op`` reads (``props_used``).
    ``chip``: a name of the tree's device table ("M1 Pro") for a per-chip profile (its GPU name
    "Apple M1 Pro"); ``chips``: that table, to give ``device_id`` by the tree's parse function.

    Raises ``ExtractionFailed`` when a used field has no value from the tree's rules or the family
    data: a zero there would be a guess that changes answers.
    """
    switches = VARIANTS[suffix]
    device_name = f"{chips.prefix}{chip}" if chips and chip else family.device_name
    values: dict[str, PropValue] = {}
    fam = set(family.families)
    for field in fields:
        name = field.name
        rule = _last(rules.rules, name, "family")
        attr = _last(rules.rules, name, "attribute")
        if rule is not None:
            val = bool(fam & set(rule.families))
            hit = sorted(fam & set(rule.families))
            why = (
                f"{family.name} supports {', '.join(hit)}" if hit else f"{family.name} supports none of them"
            )
            values[name] = PropValue(
                name, str(int(val)), f"tree {rule.where}: {rule.text} -> {why} ({family.families_source})"
            )
        elif attr is not None and attr.attribute == "hasUnifiedMemory":
            values[name] = PropValue(
                name, str(int(family.unified_memory)), f"tree {attr.where}: {attr.text}; {APPLE_TABLES}"
            )
        elif attr is not None and attr.attribute == "maxThreadgroupMemoryLength":
            values[name] = PropValue(
                name, str(family.max_threadgroup_memory), f"tree {attr.where}: {attr.text}; {APPLE_TABLES}"
            )
        elif name == "gpu_family" and (g := _last(rules.rules, name, "max-apple")) is not None:
            apple = max(int(f[5:]) for f in family.families if f.startswith("Apple"))
            values[name] = PropValue(
                name,
                str(apple),
                f"tree {g.where}: highest MTLGPUFamilyAppleN supported -> Apple{apple} ({family.families_source})",
            )
        elif name == "device_id" and chips is not None:
            device_id, why = chips.parse(device_name)
            values[name] = PropValue(name, str(device_id), why)
        elif name in ("name", "desc"):
            values[name] = PropValue(name, device_name if name == "desc" else "MTL0", "profile data")
    # the tensor API: on only for the device names the tree lists (unless GGML_METAL_TENSOR_ENABLE)
    if (
        "has_tensor" in values
        and rules.tensor_names
        and not any(t in device_name for t in rules.tensor_names)
    ):
        values["has_tensor"] = PropValue(
            "has_tensor",
            "0",
            f"tree {DEVICE_M}: tensor API disabled unless the device name contains one of "
            f"{', '.join(rules.tensor_names)} ({device_name})",
        )
    for env in switches:
        for r in rules.rules:
            if r.kind == "env-off" and r.env == env and r.prop in values:
                values[r.prop] = PropValue(r.prop, "0", f"tree {r.where}: {r.text} ({env} set)")
    guessed = sorted(f.name for f in fields if f.name not in values and f.name in used)
    if guessed:
        raise ExtractionFailed(
            f"supports_op ({DEVICE_M}) reads "
            + ", ".join(f"dev->props.{n}" for n in guessed)
            + f", which no profile models (no rule for it in {INIT} of {rules.source} the oracle can "
            "evaluate, and no GPU-family data): a prediction would silently take it as 0"
        )
    for field in fields:
        values.setdefault(field.name, PropValue(field.name, "0", NOT_MODELLED))
    description = (f"{device_name}: " if chip else "") + family.description
    description += f", with {' '.join(switches)}" if switches else ""
    name = (chip_slug(chip) if chip else family.name) + suffix
    return DeviceProfile(name, description, family.name, switches, tuple(values[f.name] for f in fields))


def default_profiles(
    tree: Path, fields: Sequence[PropsField], used: Collection[str]
) -> tuple[DeviceProfile, ...]:
    """Every family the tree knows, with and without bfloat (paravirtual has none to remove); and,
    where the cut reads ``device_id``, one profile per chip of the tree's device table (``m1``,
    ``m1-pro`` … ``m5-ultra``: its family's props, its own ``device_id``).

    ``used``: the fields the cut ``supports_op`` reads. Raises ``ExtractionFailed`` (see
    :func:`device_rules`, :func:`make_profile`) where a profile would have to guess.
    """
    rules = device_rules(tree)
    chips = chip_table(tree)
    out: list[DeviceProfile] = []
    for family in GPU_FAMILIES.values():
        if family.needs_tree_token and family.needs_tree_token not in rules.knows:
            continue
        for suffix in VARIANTS:
            if suffix and family.name == "paravirtual":
                continue
            out.append(make_profile(family, suffix, rules, fields, used, chips=chips))
    if chips is not None and "device_id" in used:
        known = {p.family for p in out}
        for c in chips.chips:
            fam = CHIP_FAMILIES.get(c.name.split()[0])
            if fam in known:
                out.append(make_profile(GPU_FAMILIES[fam], "", rules, fields, used, chips=chips, chip=c.name))
    return tuple(out)


def unmodelled(profiles: Sequence[DeviceProfile], used: Collection[str]) -> tuple[str, ...]:
    """Fields in ``used`` that one of ``profiles`` has no value for (profiles made for another cut)."""
    zero = {v.name for p in profiles for v in p.props if v.name in used and v.source == NOT_MODELLED}
    absent = {n for p in profiles for n in used if p.prop(n) is None}
    return tuple(sorted(zero | absent))


def select(profiles: Sequence[DeviceProfile], names: Sequence[str] | None) -> tuple[DeviceProfile, ...]:
    if not names:
        return tuple(profiles)
    by_name = {p.name: p for p in profiles}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise UsageError(
            f"unknown oracle profile(s) for this tree: {', '.join(missing)}",
            f"known: {', '.join(by_name)}",
        )
    return tuple(by_name[n] for n in names)
