"""The state every static check shares: the inputs, the profile, what was configured, and the
list the checks append to (:class:`CheckerBase`); small helpers of the check modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..profiles import PROFILES, BackendProfile
from .binaries import BinarySlice
from .inputs import CMAKE_CACHE, Inputs
from .records import Check, Status
from .shipped_kernels import Fact


def cache_on(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.upper() in ("ON", "1", "YES", "TRUE", "Y")


def profiles_of(profile: BackendProfile) -> list[BackendProfile]:
    return [profile, *(PROFILES[name] for name in profile.expectations.also_profiles if name != profile.name)]


def short_library(name: str) -> str:
    """ "/System/Library/Frameworks/Metal.framework/Versions/A/Metal" -> "Metal.framework"."""
    for part in name.split("/"):
        if part.endswith(".framework"):
            return part
    return name.rsplit("/", 1)[-1]


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


class CheckerBase:
    def __init__(
        self,
        inputs: Inputs,
        profile: BackendProfile,
        *,
        deployment_target: str | None,
        embed_library: bool | None,
        host_macos: str | None,
        read: Callable[[Path], tuple[BinarySlice, ...]],
        tree: Path | None = None,
    ) -> None:
        self.inputs = inputs
        self.tree = tree  # the llama.cpp checkout the build came from, when known
        self.profile = profile
        self.read = read
        self.base = (inputs.path if inputs.path.is_dir() else inputs.path.parent).resolve()
        cache = inputs.cache
        self.target = deployment_target or cache.get("CMAKE_OSX_DEPLOYMENT_TARGET") or None
        self.target_source = "given" if deployment_target else (f"{CMAKE_CACHE}" if self.target else "")
        exp = profile.expectations
        self.embed = (
            embed_library
            if embed_library is not None
            else cache_on(cache.get(exp.embed_option))
            if exp.embed_option
            else None
        )
        self.host_macos = host_macos
        self.checks: list[Check] = []
        self.broken = False
        self.eras: dict[str, str] = {}  # arch tag -> the profile's backend era found there
        self.facts: list[Fact] = []  # the shipped library's can / cannot-run lines

    def add(
        self,
        name: str,
        expected: str,
        found: str,
        status: Status,
        file: Path | str = "",
        *,
        arch: str = "",
        hint: str = "",
    ) -> None:
        file_text = _rel(file, self.base) if isinstance(file, Path) else file
        self.checks.append(Check(name, expected, found, file_text, status, "static", arch, hint))

    def rel(self, path: Path) -> str:
        return _rel(path, self.base)

    # ------------------------------------------------------------------------------------------------
