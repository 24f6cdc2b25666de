"""The one adapter over scikit-build-core (pinned to a minor version in pyproject.toml).

We use two of its parts: the CMake/Ninja program search (system first, then the PyPI ``cmake`` and
``ninja`` wheels; ``CMAKE_EXECUTABLE`` picks one explicitly) and the CMake File API reader (typed
targets, artifacts, cache entries, compiler toolchains). Everything else talks to this module.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet

from ..errors import MissingToolError


@dataclass(frozen=True)
class Tool:
    name: str  # "cmake" or "ninja"
    path: Path  # the program used: the system's, or the PyPI wheel's when that is missing or too old
    version: str  # as the program reports it, e.g. "3.25.1"


@dataclass(frozen=True)
class Compiler:
    """A compiler CMake chose for the build, as its file API reports it."""

    language: str  # C, CXX, OBJC …
    id: str  # CMake's compiler id: GNU, Clang, AppleClang
    version: str
    path: str  # "" when CMake did not say


@dataclass(frozen=True)
class TargetInfo:
    name: str
    type: str  # EXECUTABLE, SHARED_LIBRARY, STATIC_LIBRARY, MODULE_LIBRARY, OBJECT_LIBRARY, UTILITY
    artifacts: tuple[Path, ...]  # absolute
    dependencies: tuple[str, ...]  # names of targets it depends on


@dataclass(frozen=True)
class ConfigureReply:
    cmake_version: str
    generator: str
    targets: dict[str, TargetInfo]
    cache: dict[str, tuple[str, str]]  # name -> (type, value)
    compilers: tuple[Compiler, ...]


def find_cmake(minimum: str) -> Tool:
    from scikit_build_core.cmake import CMake
    from scikit_build_core.errors import CMakeNotFoundError

    wanted = SpecifierSet(f">={minimum}")
    try:
        found = CMake.default_search(version=wanted, env=os.environ)
    except CMakeNotFoundError as exc:
        explicit = os.environ.get("CMAKE_EXECUTABLE")
        where = f" (CMAKE_EXECUTABLE={explicit})" if explicit else ""
        raise MissingToolError(
            f"no CMake {wanted} found{where}: {exc}",
            "install a current CMake (`pip install cmake`, Homebrew, apt) or unset CMAKE_EXECUTABLE",
        ) from exc
    return Tool("cmake", Path(found.cmake_path), str(found.version))


def find_ninja(minimum: str = "1.10") -> Tool:
    from scikit_build_core.program_search import best_program, get_ninja_programs

    program = best_program(get_ninja_programs(), version=SpecifierSet(f">={minimum}"))
    if program is None or program.version is None:
        raise MissingToolError(
            f"no Ninja >={minimum} found",
            "install it (`pip install ninja`, `brew install ninja`, `apt-get install ninja-build`)",
        )
    return Tool("ninja", Path(program.path), str(program.version))


def find_compilers(env: dict[str, str]) -> dict[str, str]:
    """C and C++ compilers CMake will pick (CC/CXX first, then PATH); fail early and clearly."""
    found: dict[str, str] = {}
    for var, names in (("CC", ("cc", "gcc", "clang")), ("CXX", ("c++", "g++", "clang++"))):
        explicit = env.get(var)
        if explicit:
            path = shutil.which(explicit, path=env.get("PATH"))
            if not path:
                raise MissingToolError(
                    f"{var}={explicit} is not an executable on PATH",
                    f"fix {var} or unset it to use the default compiler",
                )
            found[var] = path
            continue
        path = next((p for n in names if (p := shutil.which(n, path=env.get("PATH")))), None)
        if not path:
            raise MissingToolError(
                f"no {'C' if var == 'CC' else 'C++'} compiler found (tried {', '.join(names)} on PATH)",
                "install one: Xcode Command Line Tools on macOS (`xcode-select --install`), "
                "`apt-get install build-essential` on Debian/Ubuntu",
            )
        found[var] = path
    return found


def request_file_api(build_dir: Path) -> None:
    from scikit_build_core.file_api.query import stateless_query

    stateless_query(build_dir)


def read_file_api(build_dir: Path) -> ConfigureReply:
    from scikit_build_core.file_api.reply import load_reply_dir

    index = load_reply_dir(build_dir / ".cmake" / "api" / "v1" / "reply")
    reply = index.reply
    targets: dict[str, TargetInfo] = {}
    if reply.codemodel_v2 is not None:
        config = reply.codemodel_v2.configurations[0]
        by_id = {t.id: t.name for t in config.targets}
        for target in config.targets:
            artifacts = tuple(
                a.path if a.path.is_absolute() else build_dir / a.path for a in (target.artifacts or [])
            )
            deps = tuple(by_id.get(d.id, d.id) for d in (target.dependencies or []))
            targets[target.name] = TargetInfo(target.name, target.type, artifacts, deps)
    cache: dict[str, tuple[str, str]] = {}
    if reply.cache_v2 is not None:
        cache = {e.name: (e.type, e.value) for e in reply.cache_v2.entries}
    compilers: tuple[Compiler, ...] = ()
    if reply.toolchains_v1 is not None:
        compilers = tuple(
            Compiler(t.language, t.compiler.id or "", t.compiler.version or "", str(t.compiler.path or ""))
            for t in reply.toolchains_v1.toolchains
        )
    return ConfigureReply(
        cmake_version=index.cmake.version.string,
        generator=index.cmake.generator.name,
        targets=targets,
        cache=cache,
        compilers=compilers,
    )
