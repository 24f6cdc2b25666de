"""Property tests of the parsers a stranger feeds: ``llama.lock`` and ``[tool.llama-toolchain]``.

Whatever the file holds (any TOML value of any type in any field, or any text at all), reading it
gives a valid result or a ``ToolchainError`` with its class's exit code; never another exception.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.config import _KEYS, Settings, load_settings
from toolchain.errors import ConfigError, ToolchainError, UnsafeInputError, UsageError
from toolchain.source.lock import ResolvedSource, read_lock

# TOML values of every type tomli_w can write (datetimes included), nested a little.
_scalars = st.one_of(
    st.text(max_size=40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
    # values near the valid ones and the known troublemakers, which random text rarely hits
    st.sampled_from(
        [
            "",
            "git",
            "pypi-sdist",
            "HEAD",
            "a" * 40,
            "0" * 64,
            "https://h/x",
            "http://[::1/x",
            "ssh://-oProxyCommand=x/y",
            "llama-cpp-python==0.3.36",
            "llama_cpp_python-0.3.36.tar.gz",
            "~no-such-user/x",
            "a\x00b",
            "a-file/x",
            "a-file",
            "[bold]x[/bold]",
        ]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_SOURCE_KEYS = ["kind", "location", "ref", "commit", "resolved_at", "sdist"]
_SDIST_KEYS = ["filename", "sha256", "url", "version", "upstream_commit"]

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _check_lock(path: Path) -> None:
    try:
        result = read_lock(path)
    except ToolchainError as exc:
        assert exc.exit_code in (ConfigError.exit_code, UnsafeInputError.exit_code, UsageError.exit_code)
        assert isinstance(exc, ConfigError), f"{type(exc).__name__} leaked out of read_lock: {exc}"
        assert exc.hint
        return
    assert isinstance(result, ResolvedSource)
    assert result.kind in ("git", "pypi-sdist")
    assert len(result.commit) in (40, 64)
    assert (result.sdist is not None) == (result.kind == "pypi-sdist")


@st.composite
def _lock_documents(draw: st.DrawFn) -> dict[str, Any]:
    source: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(_SOURCE_KEYS), unique=True)):
        source[key] = draw(_values)
    if draw(st.booleans()):
        source["sdist"] = {
            k: draw(_values) for k in draw(st.lists(st.sampled_from(_SDIST_KEYS), unique=True))
        }
    doc: dict[str, Any] = {"source": source if draw(st.booleans()) else draw(_values)}
    if draw(st.booleans()):
        doc["schema_version"] = draw(st.one_of(st.just(1), _values))
    return doc


@FAST
@given(_lock_documents())
def test_any_lock_document_is_read_or_refused_cleanly(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llama.lock"
        path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        _check_lock(path)


@FAST
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
def test_any_text_as_the_lock_is_read_or_refused_cleanly(content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llama.lock"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        _check_lock(path)


def _check_settings(root: Path) -> None:
    try:
        result = load_settings(root)
    except ToolchainError as exc:
        assert isinstance(exc, ConfigError), f"{type(exc).__name__} leaked out of load_settings: {exc}"
        assert exc.exit_code == 3 and str(exc)
        return
    assert isinstance(result, Settings)
    assert math.isfinite(result.network_timeout) and result.network_timeout > 0
    for path in (result.work_dir, result.cache_dir, result.lock_path):
        assert path.is_absolute()


@FAST
@given(
    st.dictionaries(st.sampled_from([*_KEYS, "unknown-key"]), _values, max_size=4),
    st.sampled_from(["table", "tool-value", "table-value"]),
)
def test_any_toolchain_table_is_read_or_refused_cleanly(table: dict[str, Any], shape: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        doc: dict[str, Any]
        if shape == "table":
            doc = {"tool": {"llama-toolchain": table}}
        elif shape == "tool-value":
            doc = {"tool": next(iter(table.values()), 3)}
        else:
            doc = {"tool": {"llama-toolchain": next(iter(table.values()), "x")}}
        (root / "pyproject.toml").write_text(tomli_w.dumps(doc), encoding="utf-8")
        (root / "a-file").write_text("x")
        _check_settings(root)


@FAST
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
def test_any_text_as_pyproject_is_read_or_refused_cleanly(content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        target = root / "pyproject.toml"
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", errors="surrogatepass")
        _check_settings(root)
