"""The step summary stays readable and small: findings first, one line per architecture, under
64 KB at 200 architectures × 2 types × 6 columns (GitHub caps a step summary at 1 MiB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.coverage.records import Cell, CoverageRun, OpResult, TensorShape
from toolchain.coverage.reports.summary import LIMIT, step_summary
from toolchain.coverage.reports.write import markdown, write_reports

COLUMNS = ("CPU", "BLAS", "metal-predicted:apple7", "metal-predicted:apple9", "metal-dryrun:apple9", "MTL0")
STATUSES = ("pass", "unsupported", "fallback", "error", "crash", "unverifiable")


def _ops(n: int) -> tuple[OpResult, ...]:
    return tuple(
        OpResult(
            op=f"OP_{i % 40}",
            params=f"type=f32,ne=[{4096 + i},{i},1,1],sources=f32[4096,{i},1,1]",
            output=TensorShape("f32", (4096, i + 1, 1, 1)),
            sources=(TensorShape("f32", (4096, i + 1, 1, 1)),),
            supported="no",
        )
        for i in range(n)
    )


def generated_run(n_arch: int = 200) -> CoverageRun:
    cells = []
    for a in range(n_arch):
        for t in ("f16", "q8_0"):
            for k, b in enumerate(COLUMNS):
                status = STATUSES[(a + k) % len(STATUSES)]
                cells.append(
                    Cell(
                        id=f"arch{a:03d}-{t}-{b}",
                        architecture=f"arch{a:03d}",
                        weight_type=t,
                        backend=b,
                        model=f"/models/arch{a:03d}-{t}.gguf",
                        status=status,  # type: ignore[arg-type]
                        reason=f"{status}: " + "a very long reason with `backticks` | pipes [x](y) " * 20,
                        observed_by="fixture",
                        ops=_ops(60) if status == "unsupported" else (),
                    )
                )
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    return CoverageRun(
        source={"kind": "git", "location": "file:///x", "commit": "a" * 40},
        profile="metal",
        build_dir="/b",
        device_class="real",
        devices=(),
        backends=COLUMNS,
        architectures=tuple(f"arch{a:03d}" for a in range(n_arch)),
        weight_types=("f16", "q8_0"),
        columns=(),
        cells=tuple(cells),
        complete=True,
        interrupted=False,
        started_at="2026-12-01T00:00:00Z",
        seconds=1.0,
        counts=counts,
    )


def test_summary_of_200_architectures_is_under_64_kb_and_opens_with_findings() -> None:
    run = generated_run(200)
    full = markdown(run)
    short = step_summary(run)
    assert len(full.encode()) > 4 * LIMIT, "the full coverage.md of such a run is far over the budget"
    assert len(short.encode()) <= LIMIT
    assert "cut here" not in short, "the caps keep it under the limit without the hard guard"
    assert short.index("## Findings") < short.index("## Architectures")
    arch_rows = [line for line in short.splitlines() if line.startswith("| `arch")]
    assert len(arch_rows) == 200, "one line per architecture"
    assert all(line.count("|") == len(COLUMNS) + 2 for line in arch_rows)
    for b in COLUMNS:
        assert f"**`{b}`**" in short, f"findings name column {b}"
    outside_code = [seg for line in short.splitlines() for seg in line.split("`")[::2]]
    assert not any("](y)" in seg or "¦" in seg for seg in outside_code), "data only inside code spans"
    assert any("`arch004` (f16, q8_0)" in line for line in short.splitlines()), (
        "types grouped per architecture"
    )


def test_summary_is_what_goes_to_the_step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    run = generated_run(5)
    paths = write_reports(run, tmp_path / "reports")
    assert (
        paths["summary"].read_text(encoding="utf-8") == step.read_text(encoding="utf-8") == step_summary(run)
    )


def test_hard_guard_cuts_at_a_line_and_says_so() -> None:
    short = step_summary(generated_run(200), limit=8_000)
    assert len(short.encode()) <= 8_000 and short.rstrip().endswith("see coverage.html / coverage.json")
