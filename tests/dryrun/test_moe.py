"""The MoE proof: 3 experts per token asks for a map0 kernel the pin instantiates nowhere."""

from __future__ import annotations

from pathlib import Path

from tests.dryrun.conftest import FIXTURES
from toolchain.dryrun.build import DryRunProgram
from toolchain.dryrun.records import DryRun
from toolchain.dryrun.run import dry_run

MOE = FIXTURES / "moe"


def _run(tree: Path, cache: Path, work: Path, k: int) -> DryRun:
    return dry_run(
        tree,
        cache,
        work,
        batches=[
            ("generation", MOE / f"qwen3moe-k{k}-f16-generation.ops"),
            ("prompt", MOE / f"qwen3moe-k{k}-f16-prompt.ops"),
        ],
    )


def test_three_experts_per_token_is_missing_a_kernel_at_the_prompt_batch(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    run = _run(tree_0336, dryrun_cache, tmp_path, 3)
    assert run.observed_by == "dry-run"
    generation, prompt = run.runs
    verdicts = {p.profile: p.verdict for p in generation.results}
    assert verdicts == {"apple7": "pass", "apple9": "pass", "apple10": "pass", "paravirtual": "unsupported"}
    for p in prompt.results:
        if p.profile == "paravirtual":
            assert p.verdict == "unsupported"
            continue
        assert p.verdict == "missing-kernel", p
        (f1, f2) = p.findings
        assert {f1.case.split(",")[0], f2.case.split(",")[0]} == {
            "name=ffn_moe_gate-0",
            "name=ffn_moe_down-0",
        }
        for f in (f1, f2):
            assert f.op == "MUL_MAT_ID" and f.out.ne[1:3] == (3, 512)
            assert [m.base for m in f.missing] == ["kernel_mul_mm_id_map0_ne20_3"]
            assert f.missing[0].name.startswith("kernel_mul_mm_id_map0_ne20_3_ne02=6")


def test_eight_experts_per_token_passes_both_batches(
    program_0336: DryRunProgram, tree_0336: Path, dryrun_cache: Path, tmp_path: Path
) -> None:
    run = _run(tree_0336, dryrun_cache, tmp_path, 8)
    for batch in run.runs:
        verdicts = {p.profile: p.verdict for p in batch.results}
        assert verdicts == {
            "apple7": "pass",
            "apple9": "pass",
            "apple10": "pass",
            "paravirtual": "unsupported",
        }
        mm = [k for p in batch.results if p.profile == "apple9" for k in p.counts]
        assert mm == ["pass"]
