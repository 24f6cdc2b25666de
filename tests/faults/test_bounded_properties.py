"""Property tests (Hypothesis) for every input kind of issue #32 but binaries (another suite's):
ops files, merged/shard reports, config.json, llama.lock, `dryrun history` cases. Invariant per case: a result or a clear
error of the toolchain's own classes (never another exception: 0 tracebacks), with the Python
heap's peak (tracemalloc) at most ``PEAK_LIMIT`` bytes. Each strategy starts from a real artifact
(the 0.3.36 exporter's ops, the 0.3.20 baseline, the shipped llama.lock) and mutates it, so most
cases get past the first check."""

from __future__ import annotations

import json
import tempfile
import tomllib
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.faults.test_input_properties import BASE, SPECS
from toolchain.errors import ToolchainError

PEAK_LIMIT = 300 << 20
FAST = settings(
    max_examples=120,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TINY_OPS = (ROOT / "fixtures" / "oracle" / "tiny-llama-0.3.36.ops.txt").read_text().splitlines()
BASELINE = json.loads((ROOT / "fixtures" / "coverage" / "baseline-0.3.20.json").read_text())
LOCK = (ROOT / "llama.lock").read_text()

NUMBERS = st.sampled_from(
    ["0", "-1", "1", "64", "4294967295", "18446744073709551616", "1e9", "nan", "inf", "٦٤", "", "-", "9" * 30]
)


@contextmanager
def bounded() -> Iterator[None]:
    """The block raises only ToolchainError, and its Python heap peak stays under PEAK_LIMIT."""
    tracemalloc.start()
    try:
        try:
            yield
        except ToolchainError as exc:
            assert exc.message and exc.exit_code
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= PEAK_LIMIT, f"peak {peak >> 20} MiB"


_SCRATCH: list[Path] = []


@pytest.fixture(autouse=True, scope="module")
def _scratch() -> Iterator[None]:
    """Every example's file goes into one folder, removed after the module (thousands of examples
    left a folder each in /tmp)."""
    with tempfile.TemporaryDirectory(prefix="prop-") as d:
        _SCRATCH.append(Path(d))
        yield
        _SCRATCH.pop()


def _tmp(name: str, content: str | bytes) -> Path:
    path = Path(tempfile.mkdtemp(dir=_SCRATCH[-1])) / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


# --- ops files --------------------------------------------------------------------------------------
@st.composite
def _ops_text(draw: Callable[..., Any]) -> str:
    lines = [ln.split() for ln in draw(st.lists(st.sampled_from(TINY_OPS), min_size=0, max_size=6))]
    for tokens in lines:
        for _ in range(draw(st.integers(0, 3))):
            if tokens:
                tokens[draw(st.integers(0, len(tokens) - 1))] = draw(NUMBERS)
        if tokens and draw(st.booleans()):
            del tokens[draw(st.integers(0, len(tokens) - 1)) :]
    text = "\n".join(" ".join(t) for t in lines)
    return text + draw(st.sampled_from(["", "\n", "\n\n\n", "\x00", "\r\n"]))


@FAST
@given(text=_ops_text())
def test_any_ops_file_is_checked_or_refused_in_bounds(tree_0336: Path, text: str) -> None:
    from toolchain.core.opsinput import checked_lines

    with bounded():
        lines = checked_lines(_tmp("ops.txt", text), tree_0336)
        assert lines and all(line.isprintable() for line in lines)


@FAST
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_an_ops_file(tree_0336: Path, raw: bytes) -> None:
    from toolchain.core.opsinput import checked_lines

    with bounded():
        checked_lines(_tmp("ops.txt", raw), tree_0336)


# --- reports (coverage merge input) ------------------------------------------------------------------
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _report_text(draw: Callable[..., Any]) -> str:
    data = json.loads(json.dumps(BASELINE))
    data["cells"] = data["cells"][: draw(st.integers(0, 3))]
    targets = [data, *data["cells"]]
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(targets))
        target[draw(st.sampled_from([*sorted(target), "x"]))] = draw(JSONISH)
    text = json.dumps(data, allow_nan=True)
    if draw(st.booleans()):
        text = "[" * draw(st.integers(1, 3000)) + text
    return text


@FAST
@given(text=_report_text())
def test_any_shard_report_is_merged_or_refused_in_bounds(text: str) -> None:
    from toolchain.coverage.engine.shard import merge_runs
    from toolchain.coverage.reports.write import junit, markdown

    with bounded():
        run = merge_runs([_tmp("coverage.json", text)])
        # what would be written is valid: finite JSON, well-formed junit, markdown without raw HTML
        from toolchain.coverage.reports.write import run_json

        json.dumps(run_json(run), allow_nan=False)
        from xml.etree import ElementTree as ET

        ET.fromstring(junit(run))
        assert "<script" not in markdown(run)


# --- config.json (models --from-config) -----------------------------------------------------------------
@FAST
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [
                "hidden_size",
                "num_attention_heads",
                "intermediate_size",
                "vocab_size",
                "rope_scaling",
                "text_config",
                "__class__",
                "to_dict",
                "auto_map",
                "num_hidden_layers",
            ]
        ),
        JSONISH,
        max_size=4,
    )
)
def test_any_config_is_shrunk_or_refused_in_bounds(changes: dict[str, Any]) -> None:
    from toolchain.models.config_input import read_config
    from toolchain.models.shrink import shrink_config

    with bounded():
        shrink_config(
            read_config(_tmp("config.json", json.dumps({**BASE, **changes}, allow_nan=True))), SPECS
        )


# --- llama.lock ---------------------------------------------------------------------------------------
@FAST
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "0.3.36",
                    "pypi-sdist",
                    "6f07a9e1a2c9ed0f6d88f48af30fc53d8f96ed82",
                    "llama_cpp_python",
                    "= ",
                    "[source.sdist]",
                ]
            ),
            st.text(max_size=12),
        ),
        max_size=3,
    )
)
def test_any_edited_lock_is_read_or_refused_in_bounds(edits: list[tuple[str, str]]) -> None:
    from toolchain.source.lock import read_lock

    text = LOCK
    for old, new in edits:
        text = text.replace(old, new, 1)
    with bounded():
        lock = read_lock(_tmp("llama.lock", text))
        assert all(v.isprintable() for v in (lock.location, lock.ref, lock.resolved_at))


# --- dryrun history cases ------------------------------------------------------------------------------
CORPUS_SPECS = [
    c["replay"]
    for c in tomllib.loads((ROOT / "fixtures" / "real_crashes" / "corpus.toml").read_text())["case"]
    if "replay" in c
]
HOSTILE = st.sampled_from(
    [
        None,
        -1,
        0,
        1.5,
        2**63,
        float("nan"),
        "",
        "f16\n0 0",
        "MUL_MAT",
        [],
        {},
        [1] * 9,
        {"type": "f16"},
        "x" * 100,
    ]
)


def _mutate(value: Any, path: list[int], new: Any) -> Any:
    """``value`` with the leaf reached by ``path`` (indexes into dict values / list items) replaced."""
    if not path or not isinstance(value, dict | list) or not value:
        return new
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    key, child = items[path[0] % len(items)]
    out = dict(value) if isinstance(value, dict) else list(value)
    out[key] = _mutate(child, path[1:], new)
    return out


@FAST
@given(
    base=st.sampled_from(CORPUS_SPECS),
    edits=st.lists(st.tuples(st.lists(st.integers(0, 9), max_size=4), HOSTILE), max_size=3),
)
def test_any_history_case_is_written_or_refused_in_bounds(
    tree_0336: Path, base: dict[str, Any], edits: list[tuple[list[int], Any]]
) -> None:
    from toolchain.dryrun.history import load_cases
    from toolchain.dryrun.replay import NotReplayable, case_line

    spec: Any = base
    for path, new in edits:
        spec = _mutate(spec, path, new)
    classes = [{"verdict": "missing-kernel", "what": "k", "minimal": {"spec": spec}}]
    report = _tmp("dryrun-sweep.json", json.dumps({"classes": classes}).replace("NaN", "1e999"))
    with bounded():
        for case in load_cases(report):
            try:
                line = case_line(tree_0336, case.spec, case.id.split()[0])
            except NotReplayable as exc:
                assert str(exc)
            else:
                assert "\n" not in line and all(t.lstrip("-").isdigit() for t in line.split()[:-1])


@pytest.mark.parametrize("depth", [10, 5000, 200_000])
def test_deep_nesting_in_every_input_kind_is_refused_in_bounds(tree_0336: Path, depth: int) -> None:
    from toolchain.coverage.engine.shard import merge_runs
    from toolchain.source.lock import read_lock

    deep = "[" * depth + "]" * depth
    with bounded():
        merge_runs([_tmp("coverage.json", deep)])
    with bounded():
        read_lock(_tmp("llama.lock", f"schema_version = 1\nx = {deep}\n"))
