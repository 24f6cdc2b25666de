"""Static verification of real Mach-O files cross-built at test time (fixtures/macho)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fixtures.macho.build_fixtures import VARIANTS
from toolchain.errors import VerifyError
from toolchain.profiles import PROFILES
from toolchain.verify import Verification, require_ok, verify_path
from toolchain.verify.binaries import read_binary

METAL = PROFILES["metal"]
GOOD = [
    v.name
    for v in VARIANTS
    if v.name not in {"no-metal", "no-shader-library", "no-metal-framework", "too-new", "moved"}
]
# bad variant -> (failing check, text in its `found`, text in its hint)
BAD = {
    "no-metal": (
        "registration",
        "no ggml_backend_metal_reg",
        "built without Metal: rebuild with -DGGML_METAL=ON",
    ),
    "no-shader-library": (
        "shader-library",
        "no __DATA,__ggml_metallib section in libggml-metal.dylib and no default.metallib or ggml-metal.metal in bin/",
        "default.metallib missing beside bin/: embed the library",
    ),
    "no-metal-framework": (
        "linked-libraries",
        "libggml-metal.dylib does not link Metal.framework",
        "Metal.framework",
    ),
    "too-new": (
        "deployment-target",
        "built for macOS 26.0, newer than the deployment target 13.3",
        "CMAKE_OSX_DEPLOYMENT_TARGET=13.3",
    ),
    "moved": (
        "dependencies",
        "llama-cli needs @rpath/libggml.dylib: not found",
        "moved away from its libraries",
    ),
}
# What the project configured, as `llama-toolchain build` would pass it.
TARGET = {"too-new": "13.3"}


def _verify(macho_fixtures: dict[str, Path], name: str) -> Verification:
    return verify_path(macho_fixtures[name], METAL, runtime=False, deployment_target=TARGET.get(name))


def test_every_variant_is_covered() -> None:
    assert set(GOOD) | set(BAD) == {v.name for v in VARIANTS}


@pytest.mark.parametrize("name", GOOD)
def test_good_builds_pass(macho_fixtures: dict[str, Path], name: str) -> None:
    v = _verify(macho_fixtures, name)
    assert v.ok, "\n".join(f"{c.name}: {c.found}" for c in v.failures)
    statuses = {(c.name, c.arch): c.status for c in v.checks}
    for check in ("dependencies", "registration", "linked-libraries", "registration:cpu", "shader-library"):
        assert any(n == check and s == "pass" for (n, _), s in statuses.items()), (check, statuses)
    assert all(c.observed_by in ("static", "static+dry-run") for c in v.checks)  # nothing ran
    require_ok(v)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_builds_name_the_exact_problem(macho_fixtures: dict[str, Path], name: str) -> None:
    check, found, hint = BAD[name]
    v = _verify(macho_fixtures, name)
    assert not v.ok
    failed = {c.name for c in v.failures}
    assert failed == {check}, [(c.name, c.found) for c in v.failures]
    (failure,) = v.failures
    assert found in failure.found
    assert hint in failure.hint
    with pytest.raises(VerifyError) as info:
        require_ok(v)
    assert info.value.exit_code == 30
    assert hint in str(info.value)


def test_shared_build_follows_rpath_to_the_backend(macho_fixtures: dict[str, Path]) -> None:
    v = _verify(macho_fixtures, "shared")
    reg = next(c for c in v.checks if c.name == "registration")
    assert reg.found.startswith(
        "ggml_backend_metal_reg linked: llama-cli -> libggml.dylib -> libggml-metal.dylib (era: registry, "
    )
    assert reg.file == "bin/libggml-metal.dylib"
    lib = next(c for c in v.checks if c.name == "shader-library")
    assert "2 kernel libraries (mul_mm, softmax)" in lib.found


def test_fat_build_is_checked_per_architecture(macho_fixtures: dict[str, Path]) -> None:
    v = _verify(macho_fixtures, "fat")
    archs = {c.arch for c in v.checks if c.name == "registration"}
    assert archs == {"arm64", "x86_64"}


def test_old_single_pair_layout(macho_fixtures: dict[str, Path]) -> None:
    v = _verify(macho_fixtures, "old-embed")
    lib = next(c for c in v.checks if c.name == "shader-library")
    assert "one library (ggml_metallib_start/_end, older layout)" in lib.found


def test_dl_module_build(macho_fixtures: dict[str, Path]) -> None:
    v = _verify(macho_fixtures, "dl-modules")
    reg = next(c for c in v.checks if c.name == "registration")
    assert "loadable module libggml-metal.so (ggml_backend_init)" in reg.found
    linked = next(c for c in v.checks if c.name == "linked-libraries")
    assert linked.file == "bin/libggml-metal.so" and linked.status == "pass"


def test_app_frameworks_folder_finds_the_app_program(macho_fixtures: dict[str, Path]) -> None:
    path = macho_fixtures["app-frameworks"]
    assert path.name == "Frameworks"
    reg = next(c for c in _verify(macho_fixtures, "app-frameworks").checks if c.name == "registration")
    assert reg.found.startswith("ggml_backend_metal_reg linked: llama-cli -> libggml.dylib")


def test_stripped_files_keep_their_exports(macho_fixtures: dict[str, Path]) -> None:
    (exe,) = read_binary(macho_fixtures["static-stripped"] / "bin" / "llama-cli")
    assert exe.stripped
    assert {"ggml_backend_metal_reg", "ggml_metallib_mul_mm_start", "ggml_metallib_mul_mm_end"} <= exe.defined


@pytest.mark.skipif(sys.platform == "darwin", reason="on a Mac the running macOS is the limit")
def test_too_new_without_a_target_on_linux_compares_with_nothing(macho_fixtures: dict[str, Path]) -> None:
    # every file says 26.0, nothing configured, not on a Mac: consistent, so not a failure
    v = verify_path(macho_fixtures["too-new"], METAL, runtime=False)
    dep = next(c for c in v.checks if c.name == "deployment-target")
    assert dep.status == "pass" and "26.0" in dep.found


def test_static_archives_are_read_per_member_and_slice(macho_fixtures: dict[str, Path]) -> None:
    archive = macho_fixtures["fat"] / "archives" / "libggml-metal.a"
    slices = read_binary(archive)
    assert {s.arch for s in slices} == {"arm64", "x86_64"}
    assert all(s.kind == "object" and s.member for s in slices)
    regs = [s for s in slices if "ggml_backend_metal_reg" in s.defined]
    assert {s.arch for s in regs} == {"arm64", "x86_64"}
    embedded = [s for s in slices if s.section_size("__DATA", "__ggml_metallib")]
    assert len(embedded) == 4  # two kernel files x two architectures


@pytest.mark.skipif(sys.platform == "darwin", reason="on a Mac the fixtures would be run for real")
def test_runtime_of_a_mac_build_on_linux_is_unverifiable(
    macho_fixtures: dict[str, Path], tmp_path: Path
) -> None:
    v = verify_path(macho_fixtures["shared"], METAL, runtime=True, report=tmp_path / "verify.json")
    rt = [c for c in v.checks if c.observed_by == "device"]
    assert rt and all(c.status == "unverifiable" for c in rt), rt
    assert v.ok
    assert "macho binaries cannot run on linux" in rt[0].found
