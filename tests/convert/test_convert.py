"""A real conversion of a representative subset with the 0.3.36 tree's own converter.

Cold (no converter venv in the test cache) this adds ~3 min for the venv plus ~1-2 min of work;
warm it takes well under a minute. The full 52 x {f16, q8_0} run is `llama-toolchain convert`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import shared_settings
from tests.models.configs import REAL_CONFIGS
from toolchain.convert.env import ConverterEnv
from toolchain.convert.results import Conversion, results_table
from toolchain.convert.stage import convert_architectures
from toolchain.convert.validate import validate_gguf
from toolchain.models.shrink import shrink_config
from toolchain.models.spec import load_specs

pytestmark = pytest.mark.slow  # the load check needs the real build (coverage_build)
SPECS = load_specs()
# phi2, phi3 and phimoe: specs whose GGUFs the gguf package accepted and the tree's loader refused
SUBSET = ["llama", "gemma2", "mixtral", "phi2", "phi3", "phimoe", "jamba", "mamba", "bert", "gpt2"]
# phi2 as it was: intermediate_size 2560 (2 x hidden), while the tree's converter writes
# feed_forward_length = 4 x hidden: a valid-looking GGUF the loader refuses
PHI2_OLD = replace(
    SPECS["phi2"], name="phi2-ffn2x", config={**SPECS["phi2"].config, "intermediate_size": 2560}
)


@pytest.fixture(scope="module")
def loader_bin(coverage_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real build's loader (and its libraries), without llama-quantize: q4_0 is "not-available"."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "test-export-graph-ops").symlink_to(coverage_build / "bin" / "test-export-graph-ops")
    for lib in (coverage_build / "bin").glob("lib*.so*"):
        (bin_dir / lib.name).symlink_to(lib)
    return bin_dir


@pytest.fixture(scope="module")
def conversion(
    converter_env: ConverterEnv, tree_0336: Path, loader_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Conversion:
    settings = shared_settings(tmp_path_factory.mktemp("convert"))
    specs = [SPECS[n] for n in SUBSET] + [PHI2_OLD, SPECS["modernbert"]]
    shrinks = {}
    for config in REAL_CONFIGS.values():
        spec, items = shrink_config(config, SPECS)
        specs.append(spec)
        shrinks[spec.name] = items
    # an architecture transformers has and this tree's converter does not: a verdict, not the end
    specs.append(
        replace(
            SPECS["gpt2"],
            name="gptj",
            architecture="GPTJForCausalLM",
            model_type="gptj",
            gguf_arch="gptj",
            config={"n_embd": 256, "n_head": 4, "n_layer": 2, "rotary_dim": 16, "n_positions": 512},
            config_json_extra={},
        )
    )
    return convert_architectures(
        specs, ("f16", "q8_0", "q4_0"), settings, tree=tree_0336, shrinks=shrinks, bin_dir=loader_bin
    )


def test_subset_converts_validates_and_loads(conversion: Conversion) -> None:
    print(results_table(conversion))
    by = {(r.architecture, r.type): r for r in conversion.results}
    for name in SUBSET:
        for t in ("f16", "q8_0"):
            r = by[(name, t)]
            assert r.status == "pass", (name, t, r.cause, r.error, r.tail)
            assert r.gguf is not None and r.gguf.is_file() and r.tensor_count > 0 and r.matched_tensors > 0
            assert r.loaded_by == "test-export-graph-ops", (name, t)
    assert by[("llama", "f16")].types.get("F16") and by[("llama", "q8_0")].types.get("Q8_0")


def test_a_gguf_the_tree_cannot_load_is_a_load_verdict(conversion: Conversion) -> None:
    r = next(r for r in conversion.results if r.architecture == "phi2-ffn2x" and r.type == "f16")
    assert (r.status, r.cause, r.whose) == ("error", "load", ""), (r.status, r.cause, r.error)
    # the loader's own message, verbatim
    assert "check_tensor_dims: tensor 'blk.0.ffn_down.weight' has wrong shape" in r.error, r.error
    assert r.tail and r.gguf is not None and r.gguf.is_file()


def test_converter_loader_disagreement_is_upstream(conversion: Conversion) -> None:
    r = next(r for r in conversion.results if r.architecture == "modernbert" and r.type == "f16")
    assert (r.status, r.cause, r.whose) == ("error", "load", "upstream"), (r.status, r.cause, r.error)
    assert r.finding["missing_key"] == "modern-bert.attention.layer_norm_epsilon"
    keys = r.finding["gguf_keys"]
    assert isinstance(keys, dict) and "modern-bert.attention.layer_norm_epsilon" not in keys
    assert "modern-bert.attention.layer_norm_rms_epsilon" in keys  # what the converter wrote instead


def test_load_verdicts_are_cached_per_file_and_loader(
    conversion: Conversion, tree_0336: Path, loader_bin: Path, tmp_path: Path
) -> None:
    work = next(r.gguf for r in conversion.results if r.gguf).parents[2].parent
    settings = shared_settings(work)
    good = next(r for r in conversion.results if r.architecture == "llama" and r.type == "f16")
    bad = next(r for r in conversion.results if r.architecture == "phi2-ffn2x" and r.type == "f16")
    assert good.gguf and bad.gguf
    # the loader writes these; they are absent when the fixture's verdicts came from the GGUF
    # cache (a warm test cache): either way, none may be written by the second run
    logs = [p.with_name(p.name + ".load.log") for p in (good.gguf, bad.gguf)]
    for log in logs:
        log.unlink(missing_ok=True)
    again = convert_architectures(
        [SPECS["llama"], PHI2_OLD], ("f16",), settings, tree=tree_0336, write=False, bin_dir=loader_bin
    )
    by = {r.architecture: r for r in again.results}
    assert by["llama"].status == "pass" and by["llama"].cached and by["llama"].loaded_by
    assert by["phi2-ffn2x"].cause == "load" and by["phi2-ffn2x"].cached
    assert "wrong shape" in by["phi2-ffn2x"].error
    assert not [p for p in logs if p.exists()], "the loader ran again"
    # no loader at all: valid for the gguf package is not a pass
    empty = tmp_path / "no-build"
    empty.mkdir()
    unloaded = convert_architectures(
        [SPECS["llama"]], ("f16",), settings, tree=tree_0336, write=False, bin_dir=empty
    )
    assert unloaded.results[0].status == "not-loaded" and "not loaded" in unloaded.results[0].error


def test_from_config_models_convert(conversion: Conversion) -> None:
    from_config = [m for m in conversion.models.models if m.name.startswith("from-config-")]
    assert len(from_config) == 3
    for model in from_config:
        assert model.shrinks and all(s.why for s in model.shrinks)
        results = [
            r for r in conversion.results if r.architecture == model.name and r.type in ("f16", "q8_0")
        ]
        assert [r.status for r in results] == ["pass", "pass"], [(r.cause, r.error) for r in results]
    heads = {m.reference: (m.shape.head_dim, m.shape.gqa_ratio) for m in from_config if m.shape}
    assert sorted(heads.values()) == [(128, 4.0), (128, 7.0), (256, 2.0)]


def test_unknown_to_the_converter_is_a_verdict(conversion: Conversion) -> None:
    gptj = [r for r in conversion.results if r.architecture == "gptj" and r.type in ("f16", "q8_0")]
    assert gptj and all(r.status == "error" for r in gptj)
    assert gptj[0].cause == "unknown-architecture", (gptj[0].error, gptj[0].tail)


def test_quantized_types_without_llama_quantize(conversion: Conversion) -> None:
    q4 = [r for r in conversion.results if r.type == "q4_0" and r.architecture in SUBSET]
    assert all(r.status == "not-available" and "llama-quantize" in r.error for r in q4)


def test_report_written(conversion: Conversion, tmp_path: Path) -> None:
    reports = sorted(
        Path(p)
        for p in {str(r.gguf.parents[2] / "reports" / "convert.json") for r in conversion.results if r.gguf}
    )
    data = json.loads(reports[0].read_text())
    assert data["kind"] == "convert" and data["schema_version"] == 1
    row = next(r for r in data["results"] if r["architecture"] == "llama" and r["type"] == "f16")
    assert {"status", "gguf", "tensor_count", "size_bytes", "seconds", "tokenizer", "error"} <= set(row)
    assert any("sentencepiece" in c for c in data["requirement_changes"])
    assert data["installed"]["torch"]


def test_cached_ggufs_are_reused(conversion: Conversion, tree_0336: Path, coverage_build: Path) -> None:
    settings = shared_settings(next(r.gguf for r in conversion.results if r.gguf).parents[2].parent)
    again = convert_architectures(
        [SPECS["llama"]], ("f16",), settings, tree=tree_0336, write=False, bin_dir=coverage_build / "bin"
    )
    assert again.results[0].status == "pass" and again.results[0].cached


def test_validation_catches_a_tampered_gguf(conversion: Conversion, tmp_path: Path) -> None:
    import gguf

    good = next(r for r in conversion.results if r.architecture == "llama" and r.type == "f16")
    assert good.gguf is not None
    model = next(m for m in conversion.models.models if m.name == "llama")
    assert validate_gguf(good.gguf, model.path, "llama", "f16").ok

    shape = tmp_path / "shape.gguf"
    shutil.copyfile(good.gguf, shape)
    reader = gguf.GGUFReader(str(shape), "r+")
    target = next(t for t in reader.tensors if t.name == "blk.0.attn_k.weight")
    target.field.parts[3][1] = 2  # a dimension changed in the header
    del reader
    check = validate_gguf(shape, model.path, "llama", "f16")
    assert not check.ok and any("blk.0.attn_k.weight" in p for p in check.problems), check.problems

    kind = tmp_path / "type.gguf"
    shutil.copyfile(good.gguf, kind)
    reader = gguf.GGUFReader(str(kind), "r+")
    norm = next(t for t in reader.tensors if t.name == "blk.0.attn_norm.weight")
    norm.field.parts[4][0] = int(gguf.GGMLQuantizationType.I32)
    del reader
    check = validate_gguf(kind, model.path, "llama", "f16")
    assert not check.ok and any("I32" in p for p in check.problems), check.problems

    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(good.gguf.read_bytes()[: good.gguf.stat().st_size // 2])
    assert not validate_gguf(truncated, model.path, "llama", "f16").ok
    assert not validate_gguf(good.gguf, model.path, "qwen2", "f16").ok  # wrong architecture
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"GGML" + b"\x00" * 64)
    assert not validate_gguf(not_gguf, model.path, "llama", "f16").ok


def test_moe_get_rows_is_tested_not_a_harness_crash(
    conversion: Conversion, coverage_build: Path, tmp_path: Path
) -> None:
    """Mixtral's routing-weight GET_ROWS takes a strided index view; test-backend-ops filled it as
    one block and the CPU reference aborted on the uninitialised rows (1 run in 3 here). The test
    column now runs it with a dense index and reports its real verdict, run after run. And no case
    may say "NaN on both sides" from memory the harness left uninitialised (its sentinels, the rows
    SET_ROWS does not write: backends.HARNESS_ENV): without that, every run here had 1-3."""
    from toolchain.coverage.engine.cell import CellOptions, CellRunner, CellSpec
    from toolchain.coverage.engine.tools import detect
    from toolchain.coverage.records import ModelInput

    gguf = next(r.gguf for r in conversion.results if r.architecture == "mixtral" and r.type == "f16")
    assert gguf is not None
    tools = detect(coverage_build / "bin")
    for i in range(5):
        runner = CellRunner(
            tools, tmp_path / f"cache{i}", tmp_path / f"logs{i}", CellOptions(columns=("support", "test"))
        )
        cell = runner.run(CellSpec(ModelInput("llama", "f16", gguf, "convert.json", "mixtral"), "CPU"))
        test = next(c for c in cell.checks if c.column == "test")
        assert test.status == "pass", (test.summary, test.evidence)
        assert cell.whose != "harness"
        rewritten = test.details["index_views_made_contiguous"]
        assert isinstance(rewritten, list) and "GET_ROWS(name=ffn_moe_weights-0)" in rewritten
        routed = [o for o in cell.ops if o.op == "GET_ROWS" and "ffn_moe_weights-0" in o.params]
        assert routed and all(o.test == "ok" for o in routed), routed
        nans = [(o.key, o.message) for o in cell.ops if o.test in ("nan-both", "nan-reference")]
        assert not nans and test.details["nan"] == 0, nans
        assert "made contiguous" in test.summary


def test_own_model_and_subset_runs_keep_the_main_jobs_report(
    conversion: Conversion, tree_0336: Path, tmp_path: Path
) -> None:
    """`convert --from-config` writes its own report; `convert -a X` replaces only X's pairs."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, test_cache_dir
    from tests.models.configs import LLAMA_3_8B

    main_report = next(r.gguf for r in conversion.results if r.gguf).parents[2] / "reports" / "convert.json"
    project = tmp_path / "project"
    reports = project / ".toolchain" / "reports"
    reports.mkdir(parents=True)
    (reports / "convert.json").write_bytes(main_report.read_bytes())
    before = json.loads(main_report.read_text())
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_3_8B))
    env = {
        **os.environ,
        "TOOLCHAIN_CACHE": str(test_cache_dir() / "convert-cache"),
        "NO_COLOR": "1",
        "PYTHONPATH": str(ROOT),
    }

    def convert(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "toolchain", "convert", "--tree", str(tree_0336), "--keep-going", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    done = convert("--from-config", str(config), "--types", "f16")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (reports / "convert.json").read_bytes() == main_report.read_bytes()  # untouched
    own = list(reports.glob("convert-from-config-*.json"))
    assert len(own) == 1 and own[0].name in done.stdout + done.stderr
    data = json.loads(own[0].read_text())
    assert [r["architecture"] for r in data["results"]] == [data["models"]["models"][0]["name"]]

    done = convert("-a", "llama", "--types", "f16")
    assert done.returncode == 0, done.stdout + done.stderr
    after = json.loads((reports / "convert.json").read_text())
    pairs = lambda d: sorted((r["architecture"], r["type"]) for r in d["results"])  # noqa: E731
    assert pairs(after) == pairs(before)  # every pair of the main job still there
    llama = next(r for r in after["results"] if (r["architecture"], r["type"]) == ("llama", "f16"))
    assert llama["status"] == "not-loaded"  # this project has no build: this run's own verdict
    others = [r for r in after["results"] if r["architecture"] != "llama"]
    assert others == [r for r in before["results"] if r["architecture"] != "llama"]


def test_a_shrunk_config_the_tree_cannot_load_is_a_model_error(
    conversion: Conversion, tree_0336: Path, coverage_build: Path, tmp_path: Path
) -> None:
    """A valid PhiForCausalLM config with intermediate = 2 x hidden: the shrink keeps the ratio, the
    tree's converter writes 4 x hidden and its loader refuses the file: ModelError (40), the
    loader's message and the shrinks named, never a silent bad model."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, test_cache_dir

    config = {
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "hidden_size": 2560,
        "intermediate_size": 5120,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "partial_rotary_factor": 0.4,
        "vocab_size": 51200,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "TOOLCHAIN_CACHE": str(test_cache_dir() / "convert-cache"), "NO_COLOR": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolchain",
            "convert",
            "--tree",
            str(tree_0336),
            "--build-dir",
            str(coverage_build),
            "--from-config",
            str(path),
            "--types",
            "f16",
        ],
        cwd=project,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 40, out
    assert "cannot be loaded by this tree" in out and "check_tensor_dims" in out, out
    assert "intermediate_size" in out  # the shrinks applied are named


def test_upstream_defect_is_labelled_in_the_coverage_matrix(
    conversion: Conversion, coverage_build: Path, tmp_path: Path
) -> None:
    """ModernBERT converts, its loader refuses it: the matrix shows `error (upstream)` cells with the
    evidence, not a silent gap and not our harness or the backend."""
    from toolchain.coverage import CoverageRequest, plan, run_matrix
    from toolchain.coverage.reports.write import markdown

    report = next(r.gguf for r in conversion.results if r.gguf).parents[2] / "reports" / "convert.json"
    request = CoverageRequest(
        build_dir=coverage_build,
        reports_dir=tmp_path / "reports",
        scratch_dir=tmp_path / "scratch",
        architectures=("modern-bert", "llama"),
        types=("f16",),
        backends=("CPU", "BLAS"),
        columns=("support",),
        convert_report=report,
        use_archs_models=False,
    )
    run = run_matrix(request, plan(request))
    mb = [c for c in run.cells if c.architecture == "modern-bert"]
    assert {c.backend for c in mb} == {"CPU", "BLAS"}
    for c in mb:
        assert (c.status, c.whose) == ("error", "upstream"), (c.status, c.whose, c.reason)
        assert "modern-bert.attention.layer_norm_epsilon" in c.reason and "layer_norm_rms_epsilon" in c.reason
    assert all(c.whose != "upstream" for c in run.cells if c.architecture == "llama")
    md = markdown(run)
    assert "error (upstream)" in md and "modern-bert.attention.layer_norm_epsilon" in md


def test_op_export_builds_its_graphs_for_one_context_not_the_files(
    coverage_build: Path, tree_0336: Path, tmp_path: Path
) -> None:
    """The exporter takes the training context the GGUF states unless told otherwise, and some
    converters write 2**20 there (RWKV, Mamba, granitehybrid without RoPE): granitehybrid's
    FLASH_ATTN_EXT then had a 1M-row KV and its CPU test column hung in every main job. The op
    export runs with backends.EXPORT_ARGS, so every attention case has the KV of that context,
    whatever the file says."""
    from toolchain.core.tree import EXPORT_ARGS, EXPORT_CTX
    from toolchain.coverage.engine.cell import CellOptions, CellRunner
    from toolchain.coverage.engine.opsfile import ggml_ids
    from toolchain.coverage.engine.tools import detect
    from toolchain.coverage.records import ModelInput
    from toolchain.verify.probe_model import write_probe_model

    assert EXPORT_ARGS == ("-c", str(EXPORT_CTX)) and EXPORT_CTX < 2**20
    gguf = write_probe_model(tmp_path / "long-context.gguf", n_ctx=2**20)
    runner = CellRunner(detect(coverage_build / "bin"), tmp_path / "cache", tmp_path / "logs", CellOptions())
    ops, _, problem = runner.export_ops(ModelInput("llama", "f32", gguf, "fixture"))
    assert ops is not None, problem
    op_ids, _ = ggml_ids(tree_0336)
    kv_lengths = set()
    for line in ops.read_text().splitlines():
        tokens = line.split()
        if int(tokens[0]) != op_ids["GGML_OP_FLASH_ATTN_EXT"]:
            continue
        pos = 7 + int(tokens[6])  # op, type, ne0..ne3, n_params, params
        pos += 1 + 9  # n_src, then q: type, ne[4], nb[4]
        kv_lengths.add(int(tokens[pos + 2]))  # k's ne[1]
    # the prompt graph and the generation graph each have one attention case
    assert kv_lengths == {EXPORT_CTX}, kv_lengths
