"""The off-device columns' cache (``metal_columns.ColumnCache``): a model's metal-predicted or
metal-dryrun cells are computed once and reused, with no op export, while the toolchain, the
tree's ggml sources, the profiles, the commit, the tools and the model are unchanged; any of them
changed computes that model again. The test double (fixtures/coverage/fake_tool.py) stands in for
the exporter and records each run; the computation is counted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from toolchain.coverage.engine.run import Plan
from toolchain.coverage.engine.tools import Toolset, detect
from toolchain.coverage.metal.columns import ColumnCache, per_model_cells, profile_cell
from toolchain.coverage.records import Cell, CheckResult, ModelInput
from toolchain.errors import DryRunUnavailableError, ToolchainError


def _tree(root: Path) -> Path:
    (root / "ggml" / "src" / "ggml-metal").mkdir(parents=True)
    (root / "ggml" / "src" / "ggml-metal" / "ggml-metal.metal").write_text("kernel void kernel_add() {}\n")
    (root / "tests").mkdir()
    (root / "tests" / "test-backend-ops.cpp").write_text("int main() { return 0; }\n")
    return root


class Counted:
    """A column's computation: one cell per profile, from the ops file the exporter wrote."""

    def __init__(self) -> None:
        self.models: list[str] = []

    def __call__(self, model: ModelInput, ops_file: Path) -> list[Cell]:
        self.models.append(model.architecture)
        text = ops_file.read_text()
        check = CheckResult("support", "pass", f"{len(text.splitlines())} op lines")
        return [
            profile_cell(
                model, f"metal-dryrun:{p}", "c0ffee", check, (), ("dry-run", "dry-run", "no device"), (p, {})
            )
            for p in ("apple7", "apple9")
        ]


def _plan(tools: Toolset, models: tuple[ModelInput, ...]) -> Plan:
    return Plan(tools, models, (), (), None, {}, "", ())


def _columns(
    work: Path, tools: Toolset, models: tuple[ModelInput, ...], compute: Counted, kept: ColumnCache | None
) -> list[Cell]:
    cells, columns, why = per_model_cells(
        _plan(tools, models), work, "metal-dryrun", compute, DryRunUnavailableError, kept
    )
    assert why == "" and columns == ["metal-dryrun:apple7", "metal-dryrun:apple9"]
    return cells


def _exports(pids: Path) -> int:
    return sum(1 for _ in pids.iterdir())


def _same(a: list[Cell], b: list[Cell]) -> bool:
    return [replace(c, reused=False) for c in a] == [replace(c, reused=False) for c in b]


def test_unchanged_models_are_reused_without_an_export(
    tmp_path: Path,
    fake_build: Path,
    fake_models: tuple[ModelInput, ...],
    pids: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tree, tools, models = _tree(tmp_path / "tree"), detect(fake_build / "bin"), fake_models[:2]
    monkeypatch.setenv("FAKE_PIDS", str(pids))  # after detection: from here each run is an export
    root = tmp_path / "cache" / "columns"

    def cache(
        profiles: tuple[str, ...] = ("apple7", "apple9"), commit: str = "c0ffee", tools: Toolset = tools
    ) -> ColumnCache:
        return ColumnCache(root, "metal-dryrun", tree, list(profiles), commit, tools)

    compute = Counted()
    first = _columns(tmp_path / "w1", tools, models, compute, cache())
    assert compute.models == ["llama", "qwen3"] and not any(c.reused for c in first)
    assert _exports(pids) == 2

    # a fresh work dir, the same cache (a warm CI job): nothing computed, nothing exported
    compute, before = Counted(), _exports(pids)
    again = _columns(tmp_path / "w2", tools, models, compute, cache())
    assert compute.models == [] and _exports(pids) == before
    assert all(c.reused for c in again) and _same(again, first)

    # one model changed: only it is exported and computed again
    models[0].path.write_bytes(models[0].path.read_bytes() + b" changed")
    compute = Counted()
    third = _columns(tmp_path / "w3", tools, models, compute, cache())
    assert compute.models == ["llama"] and [c.reused for c in third] == [False, False, True, True]

    # each input of the common key computes every model again
    for changed in (
        lambda: cache(profiles=("apple7", "apple9", "apple10")),
        lambda: cache(commit="deadbeef"),
    ):
        compute = Counted()
        _columns(tmp_path / "w4", tools, models, compute, changed())
        assert compute.models == ["llama", "qwen3"]
    metal = tree / "ggml" / "src" / "ggml-metal" / "ggml-metal.metal"
    metal.write_text(metal.read_text() + "kernel void kernel_mul() {}\n")
    compute = Counted()
    _columns(tmp_path / "w5", tools, models, compute, cache())
    assert compute.models == ["llama", "qwen3"]
    exporter = fake_build / "bin" / "test-export-graph-ops"
    exporter.write_text(exporter.read_text() + "\n# rebuilt\n")
    rebuilt, compute = detect(fake_build / "bin"), Counted()
    _columns(tmp_path / "w6", rebuilt, models, compute, cache(tools=rebuilt))
    assert compute.models == ["llama", "qwen3"]

    # --fresh (no cache): computed every time
    compute = Counted()
    _columns(tmp_path / "w7", tools, models, compute, None)
    _columns(tmp_path / "w7", tools, models, compute, None)
    assert compute.models == ["llama", "qwen3"] * 2


def test_a_failed_computation_is_not_kept(
    tmp_path: Path, fake_build: Path, fake_models: tuple[ModelInput, ...]
) -> None:
    tree, tools, models = _tree(tmp_path / "tree"), detect(fake_build / "bin"), fake_models[:1]
    root = tmp_path / "cache" / "columns"
    calls: list[str] = []

    def failing(model: ModelInput, ops_file: Path) -> list[Cell]:
        calls.append(model.architecture)
        raise ToolchainError("the dry run keeps ending at case 3", "rerun by hand")

    for work in ("w1", "w2"):
        kept = ColumnCache(root, "metal-dryrun", tree, ["apple7"], "c0ffee", tools)
        cells, _columns_, why = per_model_cells(
            _plan(tools, models), tmp_path / work, "metal-dryrun", failing, DryRunUnavailableError, kept
        )
        assert cells == [] and why == ""
    assert calls == ["llama", "llama"]
    assert not root.exists() or not any(root.iterdir())
