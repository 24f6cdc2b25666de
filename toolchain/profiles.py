"""Backend profiles: everything the toolchain knows about a ggml backend, as data, in one place.

A profile says how to configure a build (CMake options), what a correct build must contain
(symbols, sections, linked libraries, resource files: used by ``verify``), what the backend is
called at run time (``test-backend-ops -b`` name, device-list prefix) and which log lines report
its device. No other module branches on the platform or the backend by hand: they look here.

Option names drift between llama.cpp versions; ``optional_defines`` are passed only when the
checked-out tree declares the option (see ``build.capabilities``).
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from .errors import ProfileError


def _frozen(d: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class BackendEra:
    """One way a build has carried a backend over llama.cpp's history, read from the symbols it
    defines (any one of ``symbols``). ``verify`` names the era it found."""

    name: str  # "registry", "pre-registry", "pre-backend"
    symbols: tuple[str, ...]
    what: str  # when it was, in words (with the upstream change that ended it where known)


@dataclass(frozen=True)
class StaticExpectations:
    """What ``verify`` must find in a build of this profile (read from binaries: ``static``)."""

    # Exported by the library that carries the backend (any one of them is enough).
    registration_symbols: tuple[str, ...]
    # Exported by a backend built as a loadable module (GGML_BACKEND_DL=ON).
    dl_module_symbol: str = "ggml_backend_init"
    # Base name of the backend library / module, e.g. "ggml-metal" -> libggml-metal.{so,dylib}.
    library_stem: str = ""
    # Libraries that must be linked (DT_NEEDED / LC_LOAD_DYLIB), matched as substrings.
    needed_libraries: tuple[str, ...] = ()
    # Embedded shader library: (segment, section) and the start-symbol prefix.
    embedded_section: tuple[str, str] | None = None
    embedded_symbol_prefix: str = ""
    # Resource that must sit beside the binaries when the library is not embedded.
    resource_file: str = ""
    # Libraries that must be linked only in one binary format ("macho" / "elf"), e.g. the BLAS
    # vendor differs between macOS (Accelerate) and Linux (OpenBLAS). Matched like needed_libraries.
    needed_libraries_by_format: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # How people call the backend in messages ("built without Metal").
    label: str = ""
    # The CMake option that turns the backend on: "built without X: rebuild with -D<option>=ON".
    enable_option: str = ""
    # Profiles whose expectations a build of this one must meet too (every build has the CPU
    # backend; a profile is never its own).
    also_profiles: tuple[str, ...] = ("cpu",)
    # The CMake option that embeds the shader library (when it is off, resource_file is needed).
    embed_option: str = ""
    # Builds of before the backend registry, newest first: they define none of
    # registration_symbols but one of an older era's symbols (apps still ship them).
    older_eras: tuple[BackendEra, ...] = ()
    # Older resource files that stand in for resource_file beside the binary (the Metal source the
    # library is compiled from at run time, e.g. ggml-metal.metal).
    resource_alternatives: tuple[str, ...] = ()

    @property
    def eras(self) -> tuple[BackendEra, ...]:
        """Every era, newest first: the registry's (registration_symbols) and the older ones."""
        registry = BackendEra(
            "registry",
            self.registration_symbols,
            "the backend registry (ggml_backend_<name>_reg; Metal: llama.cpp PR #9713, Oct 2024)",
        )
        return (registry, *self.older_eras) if self.registration_symbols else self.older_eras

    @property
    def resource_files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.resource_file, *self.resource_alternatives) if f)


@dataclass(frozen=True)
class DeviceLog:
    """How a run's log describes the backend's devices (the formats of the tree's sources), read by
    ``verify.devices.parse_device_log``."""

    # A line of the backend's device report: the text after the reporting function, as ``rest``.
    line: re.Pattern[str]
    # The line that starts a device: its ``name`` ...
    name: re.Pattern[str]
    # ... which may carry the description: ``name`` (``desc``).
    name_desc: re.Pattern[str]
    # A name starting with this is a device id (MTL0), not a description (older trees log the GPU's).
    id_prefix: str
    # The GPU family: the ``family`` name and, for the numbered Apple families, ``apple`` (N).
    family: re.Pattern[str]
    # The working-set limit, in ``mb``.
    working_set: re.Pattern[str]
    # DeviceInfo flag -> what the log calls it, on a line "<that> = true|false".
    flags: Mapping[str, str]


# ggml-metal-device.m (0.3.20+): "ggml_metal_device_init: GPU name:   MTL0 (Apple M4)"; ggml-metal.m
# (older): "ggml_metal_init: GPU name:   Apple M1 Pro", "... support = true", "hasUnifiedMemory".
METAL_LOG = DeviceLog(
    line=re.compile(r"^(?P<func>ggml_metal_\w+): (?P<rest>.*)$"),
    name=re.compile(r"^GPU name:\s+(?P<name>.+?)\s*$"),
    name_desc=re.compile(r"^(?P<name>MTL\d+) \((?P<desc>.*)\)$"),
    id_prefix="MTL",
    family=re.compile(
        r"^GPU family: (?P<family>MTLGPUFamily(?:Apple(?P<apple>\d+)|(?:Common|Metal)\d+))\s+\(\d+\)"
    ),
    working_set=re.compile(r"^recommendedMaxWorkingSetSize\s*=\s*(?P<mb>[\d.]+) MB"),
    flags=_frozen(
        {
            "simdgroup_reduction": r"simdgroup reduction(?: support)?",
            "simdgroup_mm": r"simdgroup matrix mul\.(?: support)?",
            "unified_memory": r"(?:has unified memory|hasUnifiedMemory)",
            "bfloat": r"has bfloat",
            "tensor": r"has tensor",
        }
    ),
)


@dataclass(frozen=True)
class DeviceExpectations:
    """What ``verify`` expects of the backend's device at run time (``observed_by: device``)."""

    # How the backend's device lines read in a run's log (None: it prints none).
    log: DeviceLog | None = None
    # A device is "real" only with these capabilities (names of DeviceInfo fields) ...
    required_capabilities: tuple[str, ...] = ()
    # ... and at least this GPU family number (MTLGPUFamilyAppleN), where the backend reports one.
    min_gpu_family: int = 0
    # Whether `--list-devices` shows the device (it leaves out CPU-type devices).
    listed: bool = True
    # A device whose name or description has one of these is a VM's (the hosted runners' "Apple
    # Paravirtual device"), whatever it reports ...
    vm_markers: tuple[str, ...] = ("paravirtual",)
    # ... and where to verify instead.
    vm_hint: str = "verify on a machine with the real device"


@dataclass(frozen=True)
class BackendProfile:
    name: str
    description: str
    # sys.platform values this profile builds on.
    platforms: tuple[str, ...]
    # Always passed to CMake.
    defines: Mapping[str, str]
    # Passed only where the tree declares the option (names drift between versions).
    optional_defines: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    # Per-platform additions, e.g. the BLAS vendor.
    platform_defines: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    # test-backend-ops -b name(s) of the device this profile adds (first = current name).
    backend_names: tuple[str, ...] = ()
    # Prefix of this backend's devices in `--list-devices` output.
    device_prefixes: tuple[str, ...] = ()
    expectations: StaticExpectations = field(default_factory=lambda: StaticExpectations(()))
    device: DeviceExpectations = field(default_factory=DeviceExpectations)
    # Human hint when the backend's system dependency is missing at configure time.
    system_hint: str = ""
    # How work reaches the backend: "gpu" takes model layers (-ngl 99 -dev NAME); "accel" is added
    # by llama.cpp next to the CPU and takes only the ops its supports_op accepts, from batches of
    # at least ``min_batch`` (BLAS: MUL_MAT with every dimension >= 32); "cpu" is the CPU itself.
    placement: Literal["cpu", "accel", "gpu"] = "gpu"
    min_batch: int = 0

    @property
    def offloads_layers(self) -> bool:
        """Whether model layers are offloaded to this device (`offloaded N/N layers to GPU`)."""
        return self.placement == "gpu"

    def defines_for(self, platform_name: str) -> dict[str, str]:
        out = dict(self.defines)
        out.update(self.platform_defines.get(platform_name, {}))
        return out


# Options every build gets, where the tree knows them: build the tools and tests (only the targets
# asked for are compiled), nothing that downloads at build time, our own compiler launcher.
COMMON_OPTIONAL_DEFINES = _frozen(
    {
        "LLAMA_BUILD_TESTS": "ON",
        "LLAMA_BUILD_TOOLS": "ON",
        "LLAMA_BUILD_EXAMPLES": "ON",
        "LLAMA_BUILD_SERVER": "OFF",
        "LLAMA_CURL": "OFF",
        "LLAMA_OPENSSL": "OFF",
        "LLAMA_USE_PREBUILT_UI": "OFF",
        "LLAMA_BUILD_BORINGSSL": "OFF",
        "LLAMA_BUILD_WEBUI": "OFF",
        "GGML_CCACHE": "OFF",
    }
)

_CPU_EXPECT = StaticExpectations(
    registration_symbols=("ggml_backend_cpu_reg",),
    library_stem="ggml-cpu",
    label="CPU",
    enable_option="GGML_CPU",
    older_eras=(
        BackendEra(
            "pre-registry",
            ("ggml_backend_cpu_init",),
            "ggml-backend without the registry (Oct 2023 - Oct 2024): the CPU backend in ggml itself",
        ),
        BackendEra(
            "pre-backend", ("ggml_graph_compute",), "ggml before ggml-backend (2023): CPU compute in ggml"
        ),
    ),
)

PROFILES: Mapping[str, BackendProfile] = MappingProxyType(
    {
        "metal": BackendProfile(
            name="metal",
            description="Apple Metal GPU backend (macOS, Apple Silicon)",
            platforms=("darwin",),
            defines=_frozen({"GGML_METAL": "ON", "GGML_METAL_EMBED_LIBRARY": "ON"}),
            backend_names=("MTL0", "Metal"),
            device_prefixes=("MTL", "Metal"),
            expectations=StaticExpectations(
                registration_symbols=("ggml_backend_metal_reg",),
                library_stem="ggml-metal",
                needed_libraries=("Metal.framework", "Foundation.framework"),
                embedded_section=("__DATA", "__ggml_metallib"),
                embedded_symbol_prefix="ggml_metallib",
                resource_file="default.metallib",
                label="Metal",
                enable_option="GGML_METAL",
                embed_option="GGML_METAL_EMBED_LIBRARY",
                # ggml-metal.h of each era (llama-cpp-python sdists 0.1.x-0.2.x; gpt4all 2.8.2)
                older_eras=(
                    BackendEra(
                        "pre-registry",
                        ("ggml_backend_metal_init", "ggml_backend_is_metal", "ggml_backend_reg_metal_init"),
                        "ggml-backend without the registry (Oct 2023 - Oct 2024: ggml_backend_metal_init)",
                    ),
                    BackendEra(
                        "pre-backend",
                        ("ggml_metal_init",),
                        "the first Metal backend (Jun - Oct 2023: ggml_metal_init / ggml_metal_graph_compute)",
                    ),
                ),
                resource_alternatives=("ggml-metal.metal",),
            ),
            # Apple7+ has simdgroup reduction and matrix multiply; the paravirtual VM device
            # of hosted runners (Apple5 / Common3) has neither and falls back to the CPU.
            device=DeviceExpectations(
                log=METAL_LOG,
                vm_hint="verify on a real Apple Silicon Mac (self-hosted runner)",
                required_capabilities=("simdgroup_reduction", "simdgroup_mm"),
                min_gpu_family=7,
            ),
            system_hint="Install full Xcode (not only the Command Line Tools) and run `xcode-select --switch`.",
        ),
        "cpu": BackendProfile(
            name="cpu",
            description="CPU backend only (every other backend off)",
            platforms=("darwin", "linux", "win32"),
            defines=_frozen(
                {"GGML_METAL": "OFF", "GGML_BLAS": "OFF", "GGML_VULKAN": "OFF", "GGML_CUDA": "OFF"}
            ),
            backend_names=("CPU",),
            device_prefixes=("CPU",),
            expectations=_CPU_EXPECT,
            device=DeviceExpectations(listed=False),
            placement="cpu",
        ),
        "blas": BackendProfile(
            name="blas",
            description="BLAS backend (OpenBLAS on Linux, Accelerate on macOS) plus the CPU backend",
            platforms=("darwin", "linux"),
            defines=_frozen(
                {"GGML_BLAS": "ON", "GGML_METAL": "OFF", "GGML_VULKAN": "OFF", "GGML_CUDA": "OFF"}
            ),
            platform_defines=MappingProxyType(
                {
                    "linux": _frozen({"GGML_BLAS_VENDOR": "OpenBLAS"}),
                    "darwin": _frozen({"GGML_BLAS_VENDOR": "Apple"}),
                }
            ),
            backend_names=("BLAS",),
            device_prefixes=("BLAS",),
            expectations=StaticExpectations(
                registration_symbols=("ggml_backend_blas_reg",),
                library_stem="ggml-blas",
                needed_libraries_by_format=MappingProxyType(
                    {"elf": ("openblas",), "macho": ("Accelerate.framework",)}
                ),
                label="BLAS",
                enable_option="GGML_BLAS",
            ),
            system_hint="Install OpenBLAS headers: `apt-get install libopenblas-dev` (Debian/Ubuntu).",
            placement="accel",
            min_batch=32,
        ),
        "vulkan": BackendProfile(
            name="vulkan",
            description="Vulkan GPU backend",
            platforms=("linux", "win32", "darwin"),
            defines=_frozen({"GGML_VULKAN": "ON", "GGML_METAL": "OFF"}),
            backend_names=("Vulkan0",),
            device_prefixes=("Vulkan",),
            expectations=StaticExpectations(
                registration_symbols=("ggml_backend_vk_reg",),
                library_stem="ggml-vulkan",
                needed_libraries=("vulkan",),
                label="Vulkan",
                enable_option="GGML_VULKAN",
            ),
            system_hint="Install the Vulkan SDK (Debian: libvulkan-dev glslc spirv-headers).",
        ),
        "cuda": BackendProfile(
            name="cuda",
            description="CUDA GPU backend",
            platforms=("linux", "win32"),
            defines=_frozen({"GGML_CUDA": "ON"}),
            backend_names=("CUDA0",),
            device_prefixes=("CUDA",),
            expectations=StaticExpectations(
                registration_symbols=("ggml_backend_cuda_reg",),
                library_stem="ggml-cuda",
                needed_libraries=("cudart", "cublas"),
                label="CUDA",
                enable_option="GGML_CUDA",
            ),
            system_hint="Install the CUDA toolkit (nvcc on PATH).",
        ),
    }
)

# The profile `auto` picks, per platform.
DEFAULT_PROFILE = MappingProxyType({"darwin": "metal", "linux": "blas", "win32": "cpu"})


@dataclass(frozen=True)
class PlatformInfo:
    """Facts about the platform the toolchain runs on (one place that reads sys.platform)."""

    name: str  # sys.platform: darwin / linux / win32
    machine: str
    release: str


def current_platform() -> PlatformInfo:
    return PlatformInfo(name=sys.platform, machine=platform.machine(), release=platform.release())


def resolve_profile(name: str, plat: PlatformInfo | None = None) -> BackendProfile:
    plat = plat or current_platform()
    if name == "auto":
        name = DEFAULT_PROFILE.get(plat.name, "cpu")
    try:
        profile = PROFILES[name]
    except KeyError:
        known = ", ".join(["auto", *PROFILES])
        raise ProfileError(f"unknown backend profile {name!r}", f"choose one of: {known}") from None
    if plat.name not in profile.platforms:
        raise ProfileError(
            f"profile {name!r} does not build on {plat.name}",
            f"it builds on {', '.join(profile.platforms)}; on {plat.name} use "
            f"{DEFAULT_PROFILE.get(plat.name, 'cpu')!r}",
        )
    return profile


# Commands that describe the host for the build manifest, per platform (absent tools are skipped).
HOST_PROBES: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "darwin": MappingProxyType(
            {
                "macos": ("sw_vers", "-productVersion"),
                "sdk": ("xcrun", "--sdk", "macosx", "--show-sdk-version"),
                "xcode": ("xcodebuild", "-version"),
            }
        ),
        "linux": MappingProxyType({"distribution": ("lsb_release", "-ds")}),
    }
)

# What identifies the toolchain a build dir's objects were made with, beyond the compilers
# themselves (their resolved path and `--version` are always part of it): an Xcode or SDK update
# must give a new build dir, never reuse objects of the old one (builder/identity.py).
TOOLCHAIN_PROBES: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "darwin": MappingProxyType(
            {
                "sdk-version": ("xcrun", "--sdk", "macosx", "--show-sdk-version"),
                "sdk-path": ("xcrun", "--sdk", "macosx", "--show-sdk-path"),
                "xcode": ("xcodebuild", "-version"),
            }
        ),
    }
)
