"""The stand-in follows each tree's Objective-C interface (toolchain.dryrun.standin): derived from the
tree's declarations, modelled by hand where a verdict is decided, "modelled by default" elsewhere,
and refused by name only when a verdict-deciding function changed in a way it cannot follow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.dryrun.conftest import ggml_git_tree, needs_ggml_git
from toolchain.dryrun.interface import mismatches, objc_interface, standin_interface
from toolchain.dryrun.standin import StandInRefused, generate
from toolchain.oracle.extract import extract

METAL = "ggml/src/ggml-metal"


def _props(tree: Path) -> list[str]:
    return [f.name for f in extract(tree).props_fields]


def _copy(tree: Path, dest: Path) -> Path:
    dest.mkdir()
    shutil.copytree(tree / "ggml", dest / "ggml")
    (dest / "tests").mkdir()
    shutil.copy(tree / "tests/test-backend-ops.cpp", dest / "tests")
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def test_the_pin_is_modelled_function_for_function(tree_0336: Path) -> None:
    assert mismatches(tree_0336) == []
    # every function the .m files define behind the two headers, except the cut supports_op
    assert len(objc_interface(tree_0336)) == len(standin_interface()) == 71
    s = generate(tree_0336, _props(tree_0336))
    assert len(s.modelled) == 71 and s.defaults == () and s.adapted == ()
    assert [p.name for p in s.metal_sources] == [
        "ggml-metal.cpp",
        "ggml-metal-device.cpp",
        "ggml-metal-common.cpp",
        "ggml-metal-fusion.cpp",
        "ggml-metal-ops.cpp",
        "ggml-metal-tuning.cpp",
    ]
    assert "#define TOOLCHAIN_TREE_HAS_FUSION_H 1" in s.source
    assert "ggml_metal_op_init((ctx)->dev, nullptr, (gf), (ctx)->finfo, 0," in s.source


def test_an_older_tree_is_followed_not_refused(tree_0320: Path) -> None:
    # 0.3.20: device_init(int device), rsets_init(void), no fusion.h/-fusion.cpp/-tuning.cpp, no
    # library_get_device: exactly what the one-commit stand-in used to refuse (exit 72)
    assert any("changed signature of ggml_metal_device_init" in p for p in mismatches(tree_0320))
    s = generate(tree_0320, _props(tree_0320))
    assert s.adapted == ("ggml_metal_device_init: without n_devices", "ggml_metal_rsets_init: without dev")
    assert s.defaults == ("ggml_metal_supports_family: this tree's props have no gpu_family",)
    assert "ggml_metal_library_get_device" in s.not_in_tree
    assert [p.name for p in s.metal_sources] == [
        "ggml-metal.cpp",
        "ggml-metal-device.cpp",
        "ggml-metal-common.cpp",
        "ggml-metal-ops.cpp",
    ]
    assert "ggml_metal_device_t ggml_metal_device_init(int device) {" in s.source
    assert "#define TOOLCHAIN_TREE_HAS_FUSION_H 0" in s.source
    # the tree's op_init takes use_fusion/debug_fusion instead of the fusion-info object
    assert "(ctx)->use_fusion" in s.source and "(ctx)->finfo" not in s.source.split("TOOLCHAIN_OP_INIT")[1]


@needs_ggml_git
def test_a_single_device_tree_is_followed_with_one_process_per_profile(tree_0336: Path) -> None:
    # ggml-org/ggml bce8a97c (2026-01-08): `ggml_metal_device_t ggml_metal_device_init(void);`, one
    # device per process (ggml_metal_device_get's singleton) until virtual devices (e1fda9de, 2026-02-02)
    tree = ggml_git_tree("bce8a97c")
    s = generate(tree, _props(tree))
    assert s.single_device
    assert s.adapted == (
        "ggml_metal_device_init: without device: one device per process (the profile of the process: "
        "one dry-run process per profile), without n_devices",
        "ggml_metal_rsets_init: without dev",
    )
    assert (
        "ggml_metal_device_t ggml_metal_device_init(void) {\n"
        "    const int device = toolchain_dryrun_single_device();"
    ) in s.source
    assert any("one dry-run process per profile" in line for line in s.report_lines())
    # the pin's device_init(int device, int n_devices): one process, one device per profile
    assert not generate(tree_0336, _props(tree_0336)).single_device


@needs_ggml_git
def test_a_tree_before_pipelines_with_params_is_refused_naming_every_function() -> None:
    # ggml-org/ggml 7f26d40d (2025-11-06), before c72a006f (2025-12-04): pipelines are pointers with
    # their own nsg/nr0/nr1/smem (dispatch geometry and threadgroup memory), which the model lacks;
    # refused by name, none of them "modelled by default"
    tree = ggml_git_tree("7f26d40d")
    with pytest.raises(StandInRefused) as exc:
        generate(tree, _props(tree))
    named = sorted(p.split(" ")[0] for p in exc.value.problems)
    per_pipeline = [
        f"ggml_metal_pipeline_{gs}_{x}" for x in ("nr0", "nr1", "nsg", "smem") for gs in ("get", "set")
    ]
    changed = [
        "ggml_metal_encoder_set_pipeline",
        "ggml_metal_library_compile_pipeline",
        "ggml_metal_library_get_pipeline",
        "ggml_metal_pipeline_max_theads_per_threadgroup",
    ]
    assert named == sorted(per_pipeline + changed)
    params = [p for p in exc.value.problems if "_pipeline_get_" in p or "_pipeline_set_" in p]
    assert len(params) == 8
    assert all("(a pipeline's dispatch parameter (threads, grid or threadgroup memory))" in p for p in params)


def test_a_missing_parameter_the_model_uses_is_still_refused(tree_0336: Path, tmp_path: Path) -> None:
    # only the parameters standin.MISSING_PARAMS names are stood in for; any other one refuses
    tree = _copy(tree_0336, tmp_path / "tree")
    old = "ggml_metal_buffer_t ggml_metal_buffer_init(ggml_metal_device_t dev, size_t size, bool shared)"
    new = "ggml_metal_buffer_t ggml_metal_buffer_init(ggml_metal_device_t dev, bool shared)"
    _edit(tree / METAL / "ggml-metal-device.h", old, new)
    _edit(tree / METAL / "ggml-metal-device.m", old, new)
    with pytest.raises(StandInRefused) as exc:
        generate(tree, _props(tree))
    assert exc.value.problems[0].startswith(
        "ggml_metal_buffer_init decides verdicts (buffers (tensor addresses))"
    )
    assert "the model uses parameter size, which this tree's signature lacks" in exc.value.problems[0]


def test_a_new_function_that_decides_nothing_is_modelled_by_default(tree_0336: Path, tmp_path: Path) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    _edit(
        tree / METAL / "ggml-metal-device.h",
        "void ggml_metal_encoder_memory_barrier(ggml_metal_encoder_t encoder);",
        "void ggml_metal_encoder_memory_barrier(ggml_metal_encoder_t encoder);\n"
        "int ggml_metal_encoder_set_label(ggml_metal_encoder_t encoder, const char * label);",
    )
    with (tree / METAL / "ggml-metal-device.m").open("a") as f:
        f.write("\nint ggml_metal_encoder_set_label(ggml_metal_encoder_t encoder, const char * label) {\n}\n")
    s = generate(tree, _props(tree))
    assert s.defaults == (f"ggml_metal_encoder_set_label: new in this tree ({METAL}/ggml-metal-device.h:91)",)
    assert (
        "int ggml_metal_encoder_set_label(ggml_metal_encoder_t encoder, const char* label) {\n"
        "    (void) encoder; (void) label; return {};\n}"
    ) in s.source


def test_a_new_dispatch_function_is_refused_by_name(tree_0336: Path, tmp_path: Path) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    _edit(
        tree / METAL / "ggml-metal-device.h",
        "void ggml_metal_encoder_memory_barrier(ggml_metal_encoder_t encoder);",
        "void ggml_metal_encoder_memory_barrier(ggml_metal_encoder_t encoder);\n"
        "void ggml_metal_encoder_dispatch_threads(ggml_metal_encoder_t encoder, int n0, int n1, int n2);",
    )
    with (tree / METAL / "ggml-metal-device.m").open("a") as f:
        f.write(
            "\nvoid ggml_metal_encoder_dispatch_threads(ggml_metal_encoder_t encoder, int n0, int n1, int n2) {\n}\n"
        )
    with pytest.raises(StandInRefused) as exc:
        generate(tree, _props(tree))
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(
        "ggml_metal_encoder_dispatch_threads decides verdicts (its name says it takes part in dispatch)"
    )


def test_a_changed_limit_function_is_refused_by_name(tree_0336: Path, tmp_path: Path) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    old = "ggml_metal_encoder_set_threadgroup_memory_size(ggml_metal_encoder_t encoder, size_t size, int idx)"
    new = "ggml_metal_encoder_set_threadgroup_memory_size(ggml_metal_encoder_t encoder, int size, int idx)"
    _edit(tree / METAL / "ggml-metal-device.h", old, new)
    _edit(tree / METAL / "ggml-metal-device.m", old, new)
    with pytest.raises(StandInRefused) as exc:
        generate(tree, _props(tree))
    assert exc.value.problems[0].startswith(
        "ggml_metal_encoder_set_threadgroup_memory_size decides verdicts (the threadgroup-memory limit) and "
        "the stand-in cannot follow it: changed signature (ggml/src/ggml-metal/ggml-metal-device.h:"
    )
    assert "parameter size is `int` (model `size_t`)" in exc.value.problems[0]


def test_an_op_init_argument_it_cannot_supply_is_refused(tree_0336: Path, tmp_path: Path) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    _edit(
        tree / METAL / "ggml-metal-ops.h",
        "int  debug_graph);",
        "int  debug_graph,\n        int  n_cb_split);",
    )
    with pytest.raises(StandInRefused) as exc:
        generate(tree, _props(tree))
    assert exc.value.problems == (
        "ggml_metal_graph_compute: ggml_metal_op_init (ggml/src/ggml-metal/ggml-metal-ops.h) takes "
        "`int n_cb_split`, which the stand-in cannot supply",
    )


def test_a_source_the_cmakelists_lists_must_exist(tree_0336: Path, tmp_path: Path) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    (tree / METAL / "ggml-metal-tuning.cpp").unlink()
    with pytest.raises(StandInRefused) as exc:
        generate(tree, _props(tree))
    assert exc.value.problems == (
        "missing file: ggml/src/ggml-metal/ggml-metal-tuning.cpp (listed in ggml/src/ggml-metal/CMakeLists.txt)",
    )


def test_the_command_refuses_with_its_exit_code(tree_0336: Path, tmp_path: Path) -> None:
    tree = _copy(tree_0336, tmp_path / "tree")
    old = "void ggml_metal_encoder_set_pipeline(ggml_metal_encoder_t encoder, struct ggml_metal_pipeline_with_params pipeline)"
    new = "void ggml_metal_encoder_set_pipeline(ggml_metal_encoder_t encoder, ggml_metal_pipeline_t pipeline)"
    _edit(tree / METAL / "ggml-metal-device.h", old, new)
    _edit(tree / METAL / "ggml-metal-device.m", old, new)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolchain",
            "dryrun",
            "run",
            "--tree",
            str(tree),
            "--ops",
            str(tmp_path / "x"),
        ],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "TOOLCHAIN_CACHE": str(tmp_path / "cache"),
            "NO_COLOR": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 72, done.stderr
    err = " ".join(done.stderr.split())
    assert "Metal dry run unavailable" in err and "commit" in err
    assert (
        "ggml_metal_encoder_set_pipeline decides verdicts (encoder dispatch (a nil pipeline aborts))" in err
    )


def test_the_trees_own_argument_asserts_are_copied(tree_0336: Path, tree_0320: Path) -> None:
    # 0.3.36's .m asserts a threadgroup-memory length is a multiple of 16; 0.3.20's passes any
    # length to Metal: the stand-in asserts exactly where the tree does
    pin = generate(tree_0336, _props(tree_0336)).source
    old = generate(tree_0320, _props(tree_0320)).source
    assert "GGML_ASSERT(size % 16 == 0);  // ggml/src/ggml-metal/ggml-metal-device.m:" in pin
    assert "GGML_ASSERT(size % 16" not in old
