"""The shipped-library check: does a built binary's embedded Metal library hold every kernel the
dry run needs?

A build with ``GGML_METAL_EMBED_LIBRARY`` carries the Metal *source* in ``__DATA,__ggml_metallib``
(one ``ggml_metallib[_<kind>]_start/_end`` pair per kernel file, or one pair in older trees).
That text is read out of the Mach-O (per architecture, with LIEF), preprocessed with the profile's
loader defines like the tree's own sources, and every kernel base name the dry run's encoders asked
for on that profile that it lacks is named. A library older than its host code, or one built
without the bf16 kernels, shows up here before a Mac reports "Function … was not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.binlayout import MalformedBinary, macho_sections, read_whole
from ..errors import UnreadableBinaryError
from .library import names_in_text
from .records import DryRun

SEGMENT, SECTION = "__DATA", "__ggml_metallib"


@dataclass(frozen=True)
class ShippedProfile:
    profile: str
    needed: int
    missing: tuple[str, ...]  # kernel base names the library lacks


@dataclass(frozen=True)
class ShippedLibrary:
    path: str
    arch: str
    bytes: int
    kernels: int  # names the embedded library holds (with the first profile's defines)
    profiles: tuple[ShippedProfile, ...]

    @property
    def ok(self) -> bool:
        return all(not p.missing for p in self.profiles)


def embedded_text(path: Path) -> list[tuple[str, str]]:
    """(architecture, embedded Metal source) of each Mach-O slice that carries the section, read
    by the bounded reader (UnreadableBinaryError for a file whose headers point outside it)."""
    try:
        raw = macho_sections(read_whole(path), SEGMENT, SECTION)
    except MalformedBinary as exc:
        raise UnreadableBinaryError(
            f"{path}: not a readable binary: {exc}",
            "the file is damaged or was copied in part: rebuild it, or copy it again",
        ) from None
    return [(arch, body.decode("utf-8", errors="replace")) for arch, body in raw]


def check_shipped(path: Path, run: DryRun) -> tuple[ShippedLibrary, ...]:
    """One result per architecture slice of ``path`` that embeds a library."""
    needed: dict[str, set[str]] = {}
    for batch in run.runs:
        for r in batch.results:
            needed.setdefault(r.profile, set()).update(r.kernels_needed)
    out: list[ShippedLibrary] = []
    for arch, text in embedded_text(path):
        profiles: list[ShippedProfile] = []
        first_count = 0
        for info in run.profiles:
            defines = {d.name: d.value for d in info.library_defines if d.active}
            names = names_in_text(text, defines)
            first_count = first_count or len(names)
            want = needed.get(info.profile, set())
            profiles.append(ShippedProfile(info.profile, len(want), tuple(sorted(want - names))))
        out.append(ShippedLibrary(str(path), arch, len(text.encode()), first_count, tuple(profiles)))
    return tuple(out)
