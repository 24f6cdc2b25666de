"""The step summary stays readable and small: findings first, one line per architecture, under
64 KB at 200 architectures × 2 types × 6 columns (GitHub caps a step summary at 1 MiB)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from toolchain.coverage.metal.sweep import with_sweep
from toolchain.coverage.records import Cell, CoverageRun, OpResult, SweepClassRow, SweepSection, TensorShape
from toolchain.coverage.reports.html import html_page
from toolchain.coverage.reports.summary import LIMIT, step_summary
from toolchain.coverage.reports.write import markdown, write_reports
from toolchain.dryrun.space import Space
from toolchain.dryrun.sweep import MinimalCase, Sweep, SweepClass
from toolchain.records import DRYRUN_SWEEP, write_report

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
    assert short.index("## Findings: needs action") < short.index("## Architectures")
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


# --- what a person reads first: findings that need action, expected-by-design apart (issue #29) ----
TYPES4 = ("f16", "q8_0", "q4_0", "q4_K")


def _all_ops(n: int, supported: str) -> tuple[OpResult, ...]:
    return tuple(
        OpResult(
            op=f"OP_{i % 60}",
            params=f"type=f32,ne=[{4096 + i},{i},1,1]",
            output=TensorShape("f32", (4096, i + 1, 1, 1)),
            sources=(TensorShape("f32", (4096, i + 1, 1, 1)),),
            supported=supported,  # type: ignore[arg-type]
            test="ok" if supported == "yes" else "not-supported",
        )
        for i in range(n)
    )


def four_type_run(n_arch: int = 200) -> CoverageRun:
    """200 architectures × 4 weight types × 6 columns, 120 op results per cell (60 distinct ops)."""
    base = generated_run(n_arch)
    cells = []
    for c in base.cells:
        if c.weight_type != "f16":
            continue
        for t in TYPES4:
            cells.append(
                dataclasses.replace(
                    c,
                    id=c.id.replace("-f16-", f"-{t}-"),
                    weight_type=t,
                    ops=_all_ops(120, "no" if c.status == "unsupported" else "yes"),
                )
            )
    return dataclasses.replace(base, cells=tuple(cells), weight_types=TYPES4)


def _cell(arch: str, backend: str, status: str, whose: str = "") -> Cell:
    return Cell(
        id=f"{arch}-f16-{backend}",
        architecture=arch,
        weight_type="f16",
        backend=backend,
        model="/m.gguf",
        status=status,  # type: ignore[arg-type]
        reason=f"{status} here",
        observed_by="fixture",
        whose=whose,  # type: ignore[arg-type]
    )


def _small_run() -> CoverageRun:
    cells = (
        _cell("llama", "CPU", "wrong"),
        _cell("llama", "BLAS", "fallback"),
        _cell("qwen3", "BLAS", "unsupported"),
        _cell("llama", "MTL0", "unverifiable"),
        _cell("llama", "metal-predicted:apple7", "unsupported"),
        _cell("gemma", "metal-predicted:apple7", "crash", "upstream"),
        _cell("bert", "CPU", "error", "harness"),
        _cell("qwen3", "CPU", "pass"),
    )
    base = generated_run(1)
    return dataclasses.replace(
        base,
        cells=cells,
        backends=("CPU", "BLAS", "MTL0", "metal-predicted:apple7"),
        architectures=("bert", "gemma", "llama", "qwen3"),
        weight_types=("f16",),
    )


def test_summary_leads_with_what_needs_action_and_groups_the_expected_apart() -> None:
    short = step_summary(_small_run())
    action = short.index("## Findings: needs action")
    ours = short.index("## Ours to fix")
    expected = short.index("## Expected by design")
    assert action < ours < expected < short.index("## Architectures")
    findings = short[action:ours]
    # the Metal column before the CPU one; BLAS' by-design fallbacks and the paravirtual device's
    # unverifiable verdicts are not findings
    assert findings.index("metal-predicted:apple7") < findings.index("**`CPU`**")
    assert "crash (upstream) ×1" in findings and "wrong ×1" in findings
    assert "BLAS" not in findings and "unverifiable" not in findings and "bert" not in findings
    assert "`bert-f16-CPU`" in short[ours:expected]
    grouped = short[expected:]
    assert "only large matrix products" in grouped and "`BLAS` 🟧 fallback ×1, 🟨 unsupported ×1" in grouped
    assert "paravirtual" in grouped and "`MTL0` ❔ unverifiable ×1" in grouped
    header = next(line for line in short.splitlines() if line.startswith("| architecture"))
    assert header.index("MTL0") < header.index("metal-predicted") < header.index("BLAS") < header.index("CPU")


def test_html_leads_with_findings_and_metal(tmp_path: Path) -> None:
    page = html_page(_small_run())
    assert page.index("Needs action") < page.index("Expected by design") < page.index("Heatmap")
    heatmaps = [line.split("<")[0] for line in page.split("<h2>Heatmap — ")[1:]]
    assert heatmaps[0].startswith("MTL0") and heatmaps[-1].startswith("CPU"), heatmaps
    matrix = page[page.index("id='m-action'") :]
    assert "gemma-f16-metal-predicted:apple7" in matrix and "qwen3-f16-BLAS" not in page.split("Expected")[0]
    assert "qwen3-f16-CPU" not in matrix, "passing cells are counted, not listed"


def test_html_stays_small_at_200_architectures_by_4_types() -> None:
    """Measured: 26.9 MB before (every cell in the matrix, a titled square per op per weight type);
    2.6 MB now for 4,800 cells (200 architectures × 4 types × 6 columns, 120 op results each)."""
    run = four_type_run(200)
    assert len(run.cells) == 4800
    size = len(html_page(run).encode())
    assert size <= 3_000_000, size
    assert len(step_summary(run).encode()) <= LIMIT


def test_the_sweep_classes_of_the_same_commit_are_shown_and_another_commits_are_named(tmp_path: Path) -> None:
    """coverage shows `nox -s sweep`'s classes (dryrun-sweep.json) only for the run's own commit."""
    run = generated_run(3)
    row = SweepClassRow(
        "missing-kernel",
        "upstream (Metal backend)",
        "mul_mat_id",
        "kernel_mul_mm_id_map0_ne20_{3,7}",
        ("apple7", "apple9"),
        4,
        "`kernel_mul_mm_id_map0_ne20_{3,7}`: not in the library: MoE with 3 or 7 experts per token",
        "add the missing instantiations",
        "27 0 64 3 64 1 0 3 1 256 64 8 1 0 0 0 0 0 256 3 64 1 0 0 0 0 26 3 64 1 1 0 0 0 0 sweep",
    )
    section = SweepSection("r", "a" * 40, "dry-run", "Dry-run sweep: …", ("apple7", "apple9"), 100, (row,))
    shown = dataclasses.replace(run, sweep=section)
    for text in (markdown(shown), step_summary(shown), html_page(shown)):
        assert "Latent Metal crashes of this llama.cpp (dry-run sweep)" in text
        assert "kernel_mul_mm_id_map0_ne20_{3,7}" in text
    assert "27 0 64 3 64 1 0 3" in markdown(shown)  # the minimal case line, verbatim
    assert "dry-run sweep" not in markdown(run)

    # the report of another commit is not shown, and a note says so
    klass = SweepClass(
        row.verdict,
        row.blame,
        row.family,
        row.what,
        "kernel_mul_mm_id_map0_ne20_%d",
        "f:1",
        ("3", "7"),
        row.profiles,
        4,
        {},
        row.summary,
        row.fix,
        MinimalCase(row.minimal_case, {}, {}),
    )
    space = Space((), (), (), (), "", (), (), ())
    for commit, expect_shown in (("a" * 40, True), ("b" * 40, False)):
        found = Sweep("dry-run", "s", "/t", commit, "p", "k", ("apple7",), space, (), (klass,))
        write_report(tmp_path / DRYRUN_SWEEP.name, DRYRUN_SWEEP.kind, found)
        got = with_sweep(run, tmp_path)
        assert (got.sweep is not None) == expect_shown
        assert expect_shown or any("not this run's" in n for n in got.notes)


def test_the_sweep_section_says_what_the_update_changed() -> None:
    section = SweepSection(
        "r",
        "a" * 40,
        "dry-run",
        "s",
        ("apple9",),
        10,
        (),
        "against the sweep of bbbbbbbbbbbb (p): 1 of its latent crash(es) no longer crash here, 1 new",
        (
            "no longer crashes on apple9: missing-kernel kernel_mul_mv_f32_f16_4",
            "new on apple9: missing-kernel kernel_x",
        ),
    )
    shown = dataclasses.replace(generated_run(2), sweep=section)
    for text in (markdown(shown), step_summary(shown), html_page(shown)):
        assert "no longer crash here, 1 new" in text
        assert "kernel_mul_mv_f32_f16_4" in text and "new on apple9" in text
