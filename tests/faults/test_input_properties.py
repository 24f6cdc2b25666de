"""Property tests (Hypothesis) for the parsers a stranger feeds: ``config.json`` (``--from-config``),
baseline reports (``coverage --baseline``) and test-backend-ops CSV (the coverage stage's support
column). Invariant: a result, or a clear error of the toolchain's own classes (with its exit code);
never another exception, and in bounded time (Hypothesis' deadline per example)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.models.configs import LLAMA_3_8B_SHAPE
from toolchain.coverage.device.backend_ops import CSV_FIELDS, parse_support_csv, parse_test_line
from toolchain.coverage.records import Cell, CoverageRun, OpResult
from toolchain.coverage.reports.write import diff_baseline, load_baseline
from toolchain.errors import ModelError, UnsafeInputError, UsageError
from toolchain.models.config_input import read_config
from toolchain.models.shrink import shrink_config
from toolchain.models.spec import load_specs

SPECS = load_specs()
FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, numbers Python cannot use (huge integers, NaN, infinities) included.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
BASE: dict[str, Any] = {
    **LLAMA_3_8B_SHAPE,
    "max_position_embeddings": 8192,
    "head_dim": 128,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 1024,
    "first_k_dense_replace": 1,
    "layer_types": ["full_attention"] * 32,
    "sliding_window": 4096,
    "rope_scaling": None,
}
FIELDS = st.sampled_from([*BASE, "n_embd", "n_head", "kv_lora_rank", "q_lora_rank", "bos_token_id"])


def _dumps(value: object) -> str:
    return json.dumps(value, allow_nan=True)


def _spec_or_clear_error(path: Path) -> None:
    try:
        spec, shrinks = shrink_config(read_config(path), SPECS)
    except (ModelError, UnsafeInputError) as exc:
        assert exc.exit_code in (40, 4) and exc.message
        return
    # accepted: the tiny model's shape fields are whole numbers again
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers"):
        value = spec.config.get(key)
        assert value is None or (isinstance(value, int) and value >= 1), (key, value)
    assert all(s.key for s in shrinks)


@FAST
@given(changes=st.dictionaries(FIELDS, JSON, min_size=1, max_size=4))
def test_config_json_with_arbitrary_fields(tmp_path_factory: Any, changes: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(_dumps({**BASE, **changes}))
    _spec_or_clear_error(path)


@FAST
@given(data=JSON)
def test_config_json_that_is_any_json(tmp_path_factory: Any, data: object) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(_dumps(data))
    _spec_or_clear_error(path)


@FAST
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_config_json_that_is_any_bytes(tmp_path_factory: Any, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_bytes(raw)
    _spec_or_clear_error(path)


# --- baseline reports -------------------------------------------------------------------------------
def _run() -> CoverageRun:
    op = OpResult("MUL_MAT", "type=f32", supported="no")
    cell = Cell("llama-f16-CPU", "llama", "f16", "CPU", "m.gguf", "pass", "ok", "fixture", ops=(op,))
    return CoverageRun(
        source={"commit": "a" * 40},
        profile="cpu",
        build_dir="/b",
        device_class="real",
        devices=(),
        backends=("CPU",),
        architectures=("llama",),
        weight_types=("f16",),
        columns=(),
        cells=(cell,),
        complete=True,
        interrupted=False,
        started_at="",
        seconds=0.0,
        counts={"pass": 1},
    )


CELL_JSON = st.fixed_dictionaries(
    {"id": st.sampled_from(["llama-f16-CPU", "qwen3-f16-CPU"]) | JSON, "status": JSON},
    optional={"ops": st.lists(st.dictionaries(st.sampled_from(["key", "op", "params", "supported"]), JSON))},
)
REPORT_JSON = st.fixed_dictionaries(
    {"kind": st.just("coverage") | JSON},
    optional={"cells": st.lists(CELL_JSON, max_size=4) | JSON, "source": JSON, "schema_version": JSON},
)


def _diff_or_clear_error(path: Path) -> None:
    try:
        old = load_baseline(path)
    except UsageError as exc:
        assert exc.exit_code == 2 and str(path) in exc.message
        return
    diff = diff_baseline(_run(), path, old)
    assert diff.verdict and isinstance(diff.safe_to_bump, bool)


@FAST
@given(data=REPORT_JSON | JSON)
def test_baseline_that_is_any_json(tmp_path_factory: Any, data: object) -> None:
    path = tmp_path_factory.mktemp("base") / "coverage.json"
    path.write_text(_dumps(data))
    _diff_or_clear_error(path)


@FAST
@given(raw=st.binary(max_size=200))
def test_baseline_that_is_any_bytes(tmp_path_factory: Any, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("base") / "coverage.json"
    path.write_bytes(raw)
    _diff_or_clear_error(path)


# --- test-backend-ops CSV -----------------------------------------------------------------------------
# numbers as text: small, negative, and longer than Python converts (> 4300 digits)
NUMBER = st.integers(-5, 1 << 40).map(str) | st.integers(4301, 5000).map(lambda n: "9" * n)
GENERIC = st.builds(
    "type={},ne=[{},{},1,1],op_params=[{}:{}],sources=f32[{},1,1,1]".format,
    st.sampled_from(["f32", "q8_0", ""]),
    NUMBER,
    NUMBER,
    NUMBER,
    NUMBER,
    NUMBER,
)
FIELD_TEXT = st.text(max_size=30) | GENERIC | st.sampled_from(["1", "0", "yes", "support", "CPU"])


# mostly well-formed where the parser decides (a row the parser drops says nothing of the rest)
ROW_FIELDS = {
    "op_params": GENERIC | FIELD_TEXT,
    "supported": st.sampled_from(["1", "0"]) | FIELD_TEXT,
    "test_mode": st.just("support") | FIELD_TEXT,
}


def _quote(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


@FAST
@given(
    header=st.permutations(list(CSV_FIELDS)).map(list),
    rows=st.lists(st.fixed_dictionaries({f: ROW_FIELDS.get(f, FIELD_TEXT) for f in CSV_FIELDS}), max_size=6),
    odd=st.lists(st.lists(FIELD_TEXT, max_size=9), max_size=3),
    noise=st.lists(st.text(max_size=40), max_size=4),
)
def test_support_csv_of_arbitrary_rows(
    header: list[str], rows: list[dict[str, str]], odd: list[list[str]], noise: list[str]
) -> None:
    lines = [",".join(map(_quote, header))]
    lines += [",".join(_quote(r[f]) for f in header) for r in rows]
    lines += [",".join(map(_quote, r)) for r in odd] + noise
    parsed = parse_support_csv(lines, backend=None)
    for op in parsed.ops:
        assert op.supported in ("yes", "no")
        if op.output is not None:
            assert all(isinstance(n, int) for n in op.output.ne)


@FAST
@given(text=st.text(max_size=400))
def test_support_csv_and_test_lines_of_arbitrary_text(text: str) -> None:
    parse_support_csv(text.splitlines())
    for line in text.splitlines():
        parse_test_line(line, "CPU")
