"""The MoE proof: 3 experts per token asks for a map0 kernel the pin instantiates nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dryrun.conftest import FIXTURES, moe_run
from toolchain.dryrun.build import DryRunProgram
from toolchain.dryrun.records import DryRun
from toolchain.dryrun.run import dry_run

MOE = FIXTURES / "moe"


def _run(tree: Path, cache: Path, work: Path, k: int) -> DryRun:
    return moe_run(tree, cache, work, k)


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


# --- the same proof made for real: config -> `models --from-config` shrink -> the tree's converter ->
# the tree's exporter at both batches -> the dry run (slow: the session's real 0.3.36 build)

REAL_CONFIG = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "qwen3-30b-a3b.json"


def _export(exporter: Path, gguf: Path, out: Path, batch: int) -> Path:
    import os
    import subprocess

    from toolchain.core.tree import PLAIN_CPU_ENV

    n = str(batch)
    done = subprocess.run(
        [str(exporter), "-m", str(gguf), "-o", str(out), "-ub", n, "-b", n, "-c", "512"],
        env={**os.environ, **PLAIN_CPU_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    return out


def _made_for_real(k: int, tree: Path, coverage_build: Path, tmp: Path) -> tuple[Path, Path]:
    """(generation ops, prompt ops) of the Qwen3-30B-A3B config with ``k`` experts per token."""
    import json

    from tests.conftest import shared_settings
    from toolchain.convert.stage import convert_architectures
    from toolchain.models.config_input import read_config
    from toolchain.models.shrink import shrink_config
    from toolchain.models.spec import load_specs

    config = json.loads(REAL_CONFIG.read_text())
    config["num_experts_per_tok"] = k
    path = tmp / f"qwen3-30b-a3b-k{k}.json"
    path.write_text(json.dumps(config))
    spec, shrinks = shrink_config(read_config(path), load_specs())  # what `models --from-config` does
    assert spec.config["num_experts_per_tok"] == k
    conversion = convert_architectures(
        [spec],
        ("f16",),
        shared_settings(tmp / "convert"),
        tree=tree,
        shrinks={spec.name: shrinks},
        bin_dir=coverage_build / "bin",
        write=False,
    )
    (result,) = conversion.results
    assert result.status == "pass" and result.gguf is not None, result
    exporter = coverage_build / "bin" / "test-export-graph-ops"
    generation = _export(exporter, result.gguf, tmp / "generation.ops", 1)
    everything = _export(exporter, result.gguf, tmp / "all.ops", 512)
    tg = set(generation.read_text().splitlines())
    prompt = tmp / "prompt.ops"
    prompt.write_text("".join(f"{line}\n" for line in everything.read_text().splitlines() if line not in tg))
    return generation, prompt


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 8])
def test_moe_proof_made_from_the_real_config_by_the_trees_own_tools(
    k: int,
    program_0336: DryRunProgram,
    tree_0336: Path,
    dryrun_cache: Path,
    converter_env: object,
    coverage_build: Path,
    tmp_path: Path,
) -> None:
    generation, prompt = _made_for_real(k, tree_0336, coverage_build, tmp_path)
    run = dry_run(
        tree_0336,
        dryrun_cache,
        tmp_path / "work",
        batches=[("generation", generation), ("prompt", prompt)],
        profiles=["apple7", "apple9"],
    )
    at_generation, at_prompt = run.runs
    assert {p.profile: p.verdict for p in at_generation.results} == {"apple7": "pass", "apple9": "pass"}
    for p in at_prompt.results:
        if k == 8:
            assert p.verdict == "pass", p
            continue
        assert p.verdict == "missing-kernel", p
        assert p.findings and all(f.op == "MUL_MAT_ID" for f in p.findings)
        assert {m.base for f in p.findings for m in f.missing} == {"kernel_mul_mm_id_map0_ne20_3"}
