"""Patched copies of the real 0.3.36 Metal sources: where the oracle would have to guess, it refuses.

Each case changes one thing in a copy of the tree (the fixture tree is read-only) and checks that
``predict`` and ``validate`` stop with ``OracleUnavailableError`` (exit 70) naming the reason and
the file, before any probe is built (the cache stays empty).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.oracle.conftest import FIXTURES
from toolchain.errors import OracleUnavailableError
from toolchain.oracle import predict, validate_tree
from toolchain.oracle.extract import DEVICE_H, DEVICE_M, METAL_DIR, extract
from toolchain.oracle.profiles import default_profiles

OPS = FIXTURES / "tiny-llama-0.3.36.ops.txt"
ENTRY_LINE = "bool ggml_metal_device_supports_op(ggml_metal_device_t dev, const struct ggml_tensor * op) {\n"


def _copy(tree: Path, dest: Path) -> Path:
    """The tree without its vocabularies and docs (the probe needs neither), and its Metal.csv.

    Complete enough that, without the refusal, the oracle would go on to build a probe from it.
    """
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns("models", "docs", ".git"), symlinks=True)
    (dest / "docs" / "ops").mkdir(parents=True)
    shutil.copy(tree / "docs" / "ops" / "Metal.csv", dest / "docs" / "ops" / "Metal.csv")
    assert (dest / METAL_DIR / "ggml-metal-device.m").is_file()
    return dest


def _patch(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {path}: the fixture tree changed"
    path.write_text(text.replace(old, new) if count == 0 else text.replace(old, new, count), encoding="utf-8")


def reads_unmodelled_fields(tree: Path) -> None:
    """supports_op reads a real props field no profile has a value for (op_offload_min_batch_size;
    device_id beside it is modelled from the tree's parse function)."""
    _patch(
        tree / DEVICE_M,
        ENTRY_LINE,
        ENTRY_LINE + "    if (dev->props.device_id == 0 && op->ne[0] < dev->props.op_offload_min_batch_size) "
        "{\n        return false;\n    }\n",
    )


def device_init_renamed(tree: Path) -> None:
    """The function the props rules are read from is no longer called ggml_metal_device_init."""
    _patch(tree / DEVICE_M, "ggml_metal_device_init(", "ggml_metal_device_create(", count=0)


def header_lacks_a_read_field(tree: Path) -> None:
    """The mirror case: supports_op reads has_bfloat, the props struct no longer declares it."""
    _patch(tree / DEVICE_H, "    bool has_bfloat;\n", "")


def _predict(tree: Path, cache: Path) -> object:
    return predict(OPS, tree, cache_dir=cache)


def _validate(tree: Path, cache: Path) -> object:
    return validate_tree(tree, cache_dir=cache)


STAGES = {"predict": _predict, "validate": _validate}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    ("patch", "reasons"),
    [
        (
            reads_unmodelled_fields,
            ("op_offload_min_batch_size", "no profile models", str(DEVICE_M)),
        ),
        (device_init_renamed, ("ggml_metal_device_init", "not defined", str(DEVICE_M))),
        (header_lacks_a_read_field, ("dev->props.has_bfloat", "not declared in", str(DEVICE_H))),
    ],
    ids=["unmodelled-field", "device-init-renamed", "field-missing-from-header"],
)
def test_a_patched_tree_is_refused_before_any_probe(
    stage: str,
    patch: Callable[[Path], None],
    reasons: tuple[str, ...],
    tree_0336: Path,
    tmp_path: Path,
) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    patch(tree)
    cache = tmp_path / "cache"
    with pytest.raises(OracleUnavailableError) as err:
        STAGES[stage](tree, cache)
    assert err.value.exit_code == 70
    for reason in reasons:
        assert reason in str(err.value), str(err.value)
    assert not cache.exists() or not any(cache.iterdir()), "the refusal must come before a probe build"


def test_the_unpatched_copy_gets_its_profiles(tree_0336: Path, tmp_path: Path) -> None:
    """The control: the same copy without a patch is modelled, so the patch is what is refused."""
    tree = _copy(tree_0336, tmp_path / "tree")
    ex = extract(tree)
    profiles = {p.name: p for p in default_profiles(tree, ex.props_fields, ex.props_used)}
    assert profiles["apple7"].prop("has_simdgroup_mm") == "1"
    assert profiles["paravirtual"].prop("has_simdgroup_mm") == "0"
    # every field supports_op reads has a value from the tree's rules or the family data
    for p in profiles.values():
        src = {v.name: v.source for v in p.props}
        assert all(not src[f].startswith("not modelled") for f in ex.props_used), p.name


def test_a_field_supports_op_does_not_read_stays_zero_and_says_so(tree_0336: Path, tmp_path: Path) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    ex = extract(tree)
    assert "op_offload_min_batch_size" not in ex.props_used
    apple7 = {p.name: p for p in default_profiles(tree, ex.props_fields, ex.props_used)}["apple7"]
    assert apple7.prop("op_offload_min_batch_size") == "0"
    assert "not read by supports_op" in {v.name: v.source for v in apple7.props}["op_offload_min_batch_size"]


def test_the_cli_exits_70_with_the_reason(tree_0336: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    tree = _copy(tree_0336, tmp_path / "tree")
    device_init_renamed(tree)
    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "TOOLCHAIN_CACHE": str(tmp_path / "cache")}
    env.pop("GITHUB_ACTIONS", None)
    done = subprocess.run(
        [sys.executable, "-m", "toolchain", "oracle", "predict", "--tree", str(tree), "--ops", str(OPS)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 70, done.stderr
    assert "ggml_metal_device_init" in done.stderr and "Traceback" not in done.stderr
