"""The stand-in must match the tree's Objective-C interface exactly, or the dry run refuses by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from toolchain.dryrun.interface import mismatches, objc_interface, standin_interface


def test_the_pin_matches_the_stand_in(tree_0336: Path) -> None:
    assert mismatches(tree_0336) == []
    # every function the .m files define behind the two headers, except the cut supports_op
    assert len(objc_interface(tree_0336)) == len(standin_interface()) == 71


def test_an_older_tree_is_refused_with_each_difference_named(tree_0320: Path) -> None:
    problems = mismatches(tree_0320)
    assert "missing file: ggml/src/ggml-metal/ggml-metal-fusion.cpp" in problems
    assert any(
        p.startswith("changed signature of ggml_metal_device_init (ggml/src/ggml-metal/ggml-metal-device.h:")
        and "ggml_metal_device_init(int device)`" in p
        for p in problems
    ), problems
    assert any(p.startswith("ggml_metal_library_get_device: the stand-in defines it") for p in problems)


def test_a_new_function_in_the_tree_is_named(tree_0336: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["cp", "-r", str(tree_0336 / "ggml"), str(tree)], check=True)
    header = tree / "ggml/src/ggml-metal/ggml-metal-device.h"
    header.write_text(
        header.read_text().replace(
            "void ggml_metal_encoder_memory_barrier(ggml_metal_encoder_t encoder);",
            "void ggml_metal_encoder_memory_barrier(ggml_metal_encoder_t encoder);\n"
            "void ggml_metal_encoder_set_tensor_api(ggml_metal_encoder_t encoder, bool on);",
        )
    )
    device_m = tree / "ggml/src/ggml-metal/ggml-metal-device.m"
    device_m.write_text(
        device_m.read_text()
        + "\nvoid ggml_metal_encoder_set_tensor_api(ggml_metal_encoder_t encoder, bool on) {\n}\n"
    )
    assert [p for p in mismatches(tree) if "set_tensor_api" in p] == [
        "new function ggml_metal_encoder_set_tensor_api (ggml/src/ggml-metal/ggml-metal-device.h:91): "
        "`void ggml_metal_encoder_set_tensor_api(ggml_metal_encoder_t encoder,bool on)`"
    ]


def test_the_command_refuses_with_its_exit_code(tree_0320: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolchain",
            "dryrun",
            "run",
            "--tree",
            str(tree_0320),
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
    assert "Metal dry run unavailable" in err and "changed signature of ggml_metal_device_init" in err
    assert "commit" in err
