"""Probes built once per tree content (kept in the test cache), support tables, op-file helpers.

Compiling a probe (ggml + test-backend-ops.cpp at -O0) takes ~30 s per tree on 2 cores; three are
built (0.3.36, 0.3.20, and 0.3.20's supports_op on 0.3.36's cases), once per test cache. Like the
real-build fixtures, they compile inside the test run: on a shared machine run the suite under the
machine's build lock (e.g. ``flock /tmp/llama-build.lock pytest``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import test_cache_dir
from toolchain.oracle.probe import Probe, SupportRow, ensure_probe, run_support
from toolchain.oracle.profiles import DeviceProfile, default_profiles

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "oracle"


@pytest.fixture(scope="session")
def oracle_cache() -> Path:
    path = test_cache_dir() / "oracle-cache"
    path.mkdir(exist_ok=True)
    return path


def _probe(tree: Path, cache: Path, older: Path | None = None) -> Probe:
    return ensure_probe(tree, cache, supports_op_from=older, compiler_cache_dir=test_cache_dir() / "ccache")


@pytest.fixture(scope="session")
def probe_0336(tree_0336: Path, oracle_cache: Path) -> Probe:
    return _probe(tree_0336, oracle_cache)


@pytest.fixture(scope="session")
def probe_0320(tree_0320: Path, oracle_cache: Path) -> Probe:
    return _probe(tree_0320, oracle_cache)


@pytest.fixture(scope="session")
def probes_for_validation(
    probe_0336: Probe, probe_0320: Probe, tree_0336: Path, tree_0320: Path, oracle_cache: Path
) -> Path:
    """All three probes validation needs (0.3.36, 0.3.20, 0.3.20's rules on 0.3.36's cases), built; the cache."""
    _probe(tree_0336, oracle_cache, tree_0320)
    return oracle_cache


def profiles(tree: Path, probe: Probe) -> dict[str, DeviceProfile]:
    return {
        p.name: p for p in default_profiles(tree, probe.extraction.props_fields, probe.extraction.props_used)
    }


@pytest.fixture(scope="session")
def support_0336(
    probe_0336: Probe, tree_0336: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[SupportRow]]:
    """Every built-in case of 0.3.36, per profile."""
    rows = run_support(
        probe_0336, list(profiles(tree_0336, probe_0336).values()), tmp_path_factory.mktemp("support")
    )
    out: dict[str, list[SupportRow]] = {}
    for r in rows:
        out.setdefault(r.backend, []).append(r)
    return out


# --- writing test-export-graph-ops lines by hand, with the tree's own enum values -----------------

_TYPE_SIZE = {"f32": (4, 1), "f16": (2, 1), "bf16": (2, 1), "i32": (4, 1), "q4_0": (18, 32), "q8_0": (34, 32)}


def enum_values(tree: Path, enum: str, prefix: str) -> dict[str, int]:
    """Name -> value of ``enum <enum> { … }`` in the tree's ggml.h (ids shift between trees)."""
    text = (tree / "ggml" / "include" / "ggml.h").read_text()
    body = re.search(rf"enum {enum} {{(.*?)}};", text, re.S)
    assert body, enum
    values: dict[str, int] = {}
    nxt = 0
    for m in re.finditer(rf"\b{prefix}(\w+)\s*(?:=\s*(\d+))?\s*,", re.sub(r"//.*", "", body.group(1))):
        nxt = int(m.group(2)) if m.group(2) else nxt
        values[m.group(1).lower()] = nxt
        nxt += 1
    return values


def ops_line(
    tree: Path,
    op: str,
    out_type: str,
    ne: Sequence[int],
    sources: Sequence[tuple[str, Sequence[int]]],
    params: Sequence[int] = (),
    name: str = "-",
) -> str:
    ops = enum_values(tree, "ggml_op", "GGML_OP_")
    types = enum_values(tree, "ggml_type", "GGML_TYPE_")
    parts = [ops[op.lower()], types[out_type], *ne, len(params), *params, len(sources)]
    for stype, sne in sources:
        size, block = _TYPE_SIZE[stype]
        nb0 = size
        nb1 = nb0 * sne[0] // block
        nb2 = nb1 * sne[1]
        nb3 = nb2 * sne[2]
        parts += [types[stype], *sne, nb0, nb1, nb2, nb3]
    return " ".join(str(p) for p in parts) + f" {name}"


def write_ops(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
