"""llama-fit-params beside the memory plan: its real output (captured once from the 0.3.36 blas
build, fixtures/logs/fit-params/) parsed, compared and explained; the real program in the slow test."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from toolchain.builder.targets import choose_targets, parse_groups
from toolchain.doctor.classify import RunParams
from toolchain.doctor.fit_params import (
    FitDevice,
    UpstreamFit,
    fit_args,
    parse_fitted,
    parse_memory,
    side_by_side,
)
from toolchain.doctor.memory import GiB, MiB, estimate, plan, plan_findings
from toolchain.doctor.model_shape import uniform_shape

ROOT = Path(__file__).resolve().parents[2]
CAPTURED = ROOT / "fixtures" / "logs" / "fit-params"


def _lines(name: str) -> list[str]:
    return (CAPTURED / name).read_text(encoding="utf-8").splitlines()


def test_real_output_is_parsed() -> None:
    assert parse_memory(_lines("print-blas-0336.txt")) == (FitDevice("Host", 0, 0, 14),)
    assert parse_fitted(_lines("fit-blas-0336.txt")) == ("-c 256 -ngl -1", 256, -1)
    assert parse_memory(_lines("fit-blas-0336.txt")) == ()  # log lines are not memory lines


def test_the_runs_get_the_plans_parameters() -> None:
    params = RunParams(
        n_gpu_layers=99, cache_type_k="q8_0", cache_type_v="q8_0", n_ubatch=256, flash_attn=True
    )
    args = " ".join(fit_args(Path("m.gguf"), params, 8192))
    assert args == "-m m.gguf -c 8192 -ngl 99 -ctk q8_0 -ctv q8_0 -ub 256 -fa on"


def test_a_build_without_a_gpu_has_nothing_to_fit() -> None:
    fit = UpstreamFit(
        "llama-fit-params",
        (),
        parse_memory(_lines("print-blas-0336.txt")),
        *parse_fitted(_lines("fit-blas-0336.txt")),
    )
    lines = side_by_side(
        fit,
        weights=14 * MiB,
        kv=0,
        compute=7 * MiB,
        n_ctx=256,
        budget_text="budget 11.2 GiB",
        largest="-c 4096",
    )
    assert "ours 14 + 0 + ~7 = 21; llama-fit-params 0 + 0 + 14 = 14 (Host 0+0+14)" in lines[0]
    assert "no GPU device" in lines[-1] and "-c 256 -ngl -1" in lines[-1]


def test_differences_are_explained_per_part() -> None:
    fit = UpstreamFit(
        "llama-fit-params",
        (),
        (FitDevice("MTL0", 4403, 512, 1200), FitDevice("Host", 281, 0, 16)),
        "-c 4096 -ngl 33",
        4096,
        33,
    )
    lines = side_by_side(
        fit,
        weights=4684 * MiB,
        kv=512 * MiB,
        compute=300 * MiB,
        n_ctx=4096,
        budget_text="b",
        largest="-c 8192",
    )
    assert not any(line.startswith(("model differs", "context differs")) for line in lines)
    (compute,) = [line for line in lines if line.startswith("compute differs")]
    assert "+916 MiB" in compute and "scheduler" in compute
    assert "free memory of each device" in lines[-1]


def test_plan_findings_show_both_answers() -> None:
    shape = uniform_shape(
        "tiny", n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_embd=64, n_ff=128, n_vocab=32,
        weights_bytes=14 * MiB, n_ctx_train=4096,
    )  # fmt: skip
    p = plan(shape, 16 * GiB)
    fit = UpstreamFit("llama-fit-params", (), (), error="--fit-print gave no estimate (exit 1): boom")
    p = replace(p, upstream=fit, upstream_ours=estimate(shape, 256, p.budget_bytes))
    (f,) = plan_findings(p)
    assert any("llama-fit-params could not answer" in e.text and "boom" in e.text for e in f.evidence)


def test_the_build_builds_it_where_the_tree_has_it(tree_0336: Path, tree_0320: Path) -> None:
    for tree in (tree_0336, tree_0320):
        assert (tree / "tools" / "fit-params").is_dir()
    choices = {
        c.purpose: c for c in choose_targets(parse_groups("build"), {"llama-completion", "llama-fit-params"})
    }
    assert choices["fit-params"].name == "llama-fit-params"
    older = {c.purpose: c for c in choose_targets(parse_groups("build"), {"llama-completion"})}
    assert older["fit-params"].name is None and not older["fit-params"].required


@pytest.mark.slow
def test_doctor_runs_the_real_program_beside_its_plan(
    built_blas: object, tree_0336: Path, tmp_path: Path
) -> None:
    from tests.conftest import RealBuild, shared_settings
    from toolchain.convert.stage import convert_architectures
    from toolchain.models.spec import load_specs

    build = built_blas
    assert isinstance(build, RealBuild)
    assert (build.build_dir / "bin" / "llama-fit-params").is_file()
    done = convert_architectures([load_specs()["llama"]], ("f16",), shared_settings(tmp_path), tree=tree_0336)
    gguf = next(r.gguf for r in done.results if r.gguf)
    run = build.run(
        "doctor", "--gguf", str(gguf), "-c", "256", "--memory", "16GiB", "--build", str(build.build_dir),
        "--profile", "blas", "--no-system", "--json", timeout=600,
    )  # fmt: skip
    report = json.loads((build.project / ".toolchain" / "reports" / "doctor.json").read_text())
    upstream = report["memory"]["upstream"]
    assert upstream["error"] == "", run.stdout + run.stderr
    assert [d["name"] for d in upstream["devices"]] == ["Host"]
    assert upstream["fitted"].startswith("-c 256 ")
    memory = next(f for f in report["findings"] if f["class_id"] == "memory")
    assert any("llama-fit-params" in e["text"] for e in memory["evidence"])
