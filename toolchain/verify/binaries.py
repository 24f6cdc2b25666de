"""What a binary carries, read with LIEF: one :class:`BinarySlice` per architecture.

Mach-O (thin and fat), ELF, and ``.a`` archives (each member; fat archives per slice) are read.
LIEF does the parsing; this module only sniffs the file type, splits archives (a few lines: LIEF
does not read ``ar``) and flattens LIEF's objects into plain data, working around its traps
(LIEF 1.0 behaviour, checked on the fixtures in tests/verify/):

- Mach-O: ``Symbol.is_external`` means *undefined*; a stripped executable keeps its exports only
  in the export trie (LIEF merges them into ``symbols`` with ``has_export_info``).
- ELF: symbols defined in assembly are untyped and dropped by ``exported_symbols``: the dynamic
  and static symbol tables are filtered here instead (defined section, non-local binding).

LIEF is imported lazily (about a second).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Literal

from ..core.binlayout import (
    MAX_BINARY_BYTES,
    MalformedBinary,
    elf_problem,
    macho_slices,
    read_whole,
    too_large,
    walk_macho,
)
from ..core.proc import deferred_interrupt

Format = Literal["macho", "elf"]
Kind = Literal["executable", "library", "module", "object", "other"]
FileType = Literal["macho", "fat", "elf", "ar"]

_MACHO_MAGICS = {b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"}
_FAT_MAGICS = {b"\xca\xfe\xba\xbe": False, b"\xca\xfe\xba\xbf": True}  # -> 64-bit fat_arch
_ELF_MAGIC = b"\x7fELF"
_AR_MAGIC = b"!<arch>\n"
# <mach/machine.h> CPU types, for the slices of fat archives (LIEF reads the others).
_CPU_NAMES = {7: "i386", 0x01000007: "x86_64", 12: "arm", 0x0100000C: "arm64", 0x0200000C: "arm64_32"}
_ELF_ARCH_NAMES = {"X86_64": "x86_64", "AARCH64": "aarch64", "I386": "i386", "ARM": "arm", "RISCV": "riscv64"}

# nlist n_type bits (<mach-o/nlist.h>)
_N_STAB, _N_TYPE, _N_EXT = 0xE0, 0x0E, 0x01


@dataclass(frozen=True)
class BinarySlice:
    """One architecture of one binary (or of one archive member)."""

    path: Path
    member: str  # archive member name; "" for a plain file
    format: Format
    arch: str  # arm64, x86_64, aarch64, ...
    kind: Kind
    install_name: str  # LC_ID_DYLIB / DT_SONAME
    needed: tuple[str, ...]  # LC_LOAD_*DYLIB / DT_NEEDED, in load order (own id excluded)
    rpaths: tuple[str, ...]  # LC_RPATH / DT_RUNPATH or DT_RPATH
    runpath: bool  # ELF: the rpaths come from DT_RUNPATH (searched after LD_LIBRARY_PATH, not inherited)
    defined: frozenset[str]  # defined global symbols, C names (Mach-O's leading "_" removed)
    sections: tuple[tuple[str, str, int], ...]  # (segment, section, size); ELF segment = ""
    minos: str | None  # Mach-O deployment target (LC_BUILD_VERSION / LC_VERSION_MIN_MACOSX)
    stripped: bool  # no symbol table beyond what dynamic linking needs
    sdk: str | None = None  # Mach-O: the SDK it was built with (same load command; None if 0 / absent)
    # defined symbols that are not exported (hidden visibility, static linking): the code is in
    # the file, callable from the file itself only
    local: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return f"{self.path.name}({self.member})" if self.member else self.path.name

    def section_size(self, segment: str, section: str) -> int | None:
        for seg, sect, size in self.sections:
            if sect == section and (seg == segment or not segment):
                return size
        return None


@cache
def _lief() -> ModuleType:
    import lief

    lief.logging.disable()
    return lief


def sniff(path: Path) -> FileType | None:
    """The container type from the first bytes, or None for anything else (scripts, data)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head[:4] in _MACHO_MAGICS:
        return "macho"
    if head[:4] in _FAT_MAGICS:
        # Java class files share 0xcafebabe; their "count" is a version number >= 45.
        count = struct.unpack(">I", head[4:8])[0] if len(head) == 8 else 0
        return "fat" if 0 < count < 30 else None
    if head[:4] == _ELF_MAGIC:
        return "elf"
    if head == _AR_MAGIC:
        return "ar"
    return None


def version_text(parts: list[int] | tuple[int, ...]) -> str:
    """[13, 0, 0] -> "13.0"; [13, 3, 1] -> "13.3.1"."""
    nums = list(parts) + [0] * (2 - len(parts))
    if len(nums) > 2 and nums[2] == 0:
        nums = nums[:2]
    return ".".join(str(n) for n in nums)


def version_key(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    while len(out) > 1 and out[-1] == 0:
        out.pop()
    return tuple(out)


# --- archives ---------------------------------------------------------------------------------
# An archive is read member by member, never whole (a 3 GB ``.a`` was a MemoryError, issue #32 E):
# its headers one at a time, a member's content only when it is an object file, one at a time.
MAX_MEMBER = 512 << 20  # bytes of one object member read at most (a real object file is a few MiB)
MAX_NAME_TABLE = 16 << 20  # bytes of the GNU long-name table read at most
_SYMBOL_TABLES = frozenset(
    {"", "/", "/SYM64", "__.SYMDEF", "__.SYMDEF SORTED", "__.SYMDEF_64", "__.SYMDEF_64 SORTED"}
)


class MemberTooLarge(ValueError):
    """An object member larger than :data:`MAX_MEMBER`: not read (the message names it)."""


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int  # of its content in the file (after a BSD name)
    size: int


def ar_index(fh: BinaryIO, start: int = 0, end: int | None = None) -> Iterator[ArMember]:
    """Each member of the System V / GNU / BSD ``ar`` archive at ``start`` .. ``end`` of ``fh`` (a
    fat file's slice, or the whole file), from its header alone; symbol tables skipped. Offsets in
    messages are within the archive. ValueError for a header that is malformed or points past
    ``end``."""
    if end is None:
        end = fh.seek(0, os.SEEK_END)
    fh.seek(start)
    if fh.read(8) != _AR_MAGIC:
        raise ValueError("not an ar archive")
    pos, long_names = start + 8, b""
    while pos + 60 <= end:
        fh.seek(pos)
        header = fh.read(60)
        at = pos - start
        if len(header) < 60 or header[58:60] != b"`\n":
            raise ValueError(f"bad ar member header at offset {at}")
        raw_name = header[:16].decode("ascii", "replace").rstrip()
        size_field = header[48:58].decode("ascii", "replace").strip()
        if not size_field.isascii() or not size_field.isdigit():
            raise ValueError(f"member at offset {at}: size field {size_field!r} is not a number")
        size = int(size_field)
        if pos + 60 + size > end:
            raise ValueError(f"member at offset {at}: {size} bytes, past the end of the archive")
        body, pos = pos + 60, pos + 60 + size + (size & 1)
        if raw_name.startswith("#1/"):  # BSD: the name leads the body
            digits = raw_name[3:]
            if not digits.isascii() or not digits.isdigit() or int(digits) > size:
                raise ValueError(f"member at offset {at}: bad BSD name length {digits!r}")
            name_len = int(digits)
            fh.seek(body)
            name = fh.read(name_len).rstrip(b"\0").decode("utf-8", "replace")
            body, size = body + name_len, size - name_len
        elif raw_name == "//":  # GNU long-name table
            if size > MAX_NAME_TABLE:
                raise ValueError(
                    f"member at offset {at}: a long-name table of {size} bytes "
                    f"(more than the {MAX_NAME_TABLE >> 20} MiB read)"
                )
            fh.seek(body)
            long_names = fh.read(size)
            continue
        elif raw_name.startswith("/") and raw_name[1:].isascii() and raw_name[1:].isdigit():
            first = int(raw_name[1:])  # GNU long name reference
            last = long_names.find(b"/\n", first)
            name = long_names[first : last if last >= 0 else None].decode("utf-8", "replace")
        else:
            name = raw_name[:-1] if raw_name.endswith("/") else raw_name
        if name not in _SYMBOL_TABLES:
            yield ArMember(name, body, size)


def object_members(fh: BinaryIO, start: int = 0, end: int | None = None) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each object member (Mach-O, fat or ELF) of the archive at ``start`` ..
    ``end`` of ``fh``, one at a time; other members are not read past their first 4 bytes.
    :class:`MemberTooLarge` for an object member above :data:`MAX_MEMBER`."""
    for member in ar_index(fh, start, end):
        fh.seek(member.offset)
        magic = fh.read(4)
        if magic not in _MACHO_MAGICS and magic not in _FAT_MAGICS and magic != _ELF_MAGIC:
            continue
        if member.size > MAX_MEMBER:
            raise MemberTooLarge(
                f"member {member.name}: an object of {member.size} bytes, more than the "
                f"{MAX_MEMBER >> 20} MiB read per member"
            )
        fh.seek(member.offset)
        yield member.name, fh.read(member.size)


def fat_entries(fh: BinaryIO) -> list[tuple[str, int, int]]:
    """(arch, offset, size) of each slice of the fat (universal) file ``fh``: its header only.
    ValueError for a header that points outside the file."""
    total = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    head = fh.read(8)
    is64 = _FAT_MAGICS[head[:4]]
    (count,) = struct.unpack(">I", head[4:8])
    entry = ">iiQQII" if is64 else ">iiIII"
    step = struct.calcsize(entry)
    if 8 + count * step > total:
        raise ValueError(f"the fat header lists {count} slices but the file ends first")
    table = fh.read(count * step)
    out = []
    for i in range(count):
        fields = struct.unpack(entry, table[i * step : (i + 1) * step])
        cputype, offset, size = fields[0], fields[2], fields[3]
        if offset + size > total:
            raise ValueError(f"slice {i} ({offset}+{size} bytes) lies past the end of the file")
        out.append((_CPU_NAMES.get(cputype, f"cpu{cputype:#x}"), offset, size))
    return out


def _is_archive_at(fh: BinaryIO, offset: int) -> bool:
    fh.seek(offset)
    return fh.read(8) == _AR_MAGIC


def _elf_problem(head: bytes, size: int) -> str:
    """Why an ELF file is not usable, from its header alone ("" when it looks whole)."""
    if len(head) < 6 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return "truncated or malformed ELF identification"
    is64, order = head[4] == 2, "<" if head[5] == 1 else ">"
    need = 64 if is64 else 52
    if size < need:
        return f"truncated: {size} bytes, shorter than its {need}-byte ELF header"
    if is64:
        phoff, shoff = struct.unpack(order + "QQ", head[32:48])
        phentsize, phnum, shentsize, shnum = struct.unpack(order + "HHHH", head[54:62])
    else:
        phoff, shoff = struct.unpack(order + "II", head[28:36])
        phentsize, phnum, shentsize, shnum = struct.unpack(order + "HHHH", head[42:50])
    (etype,) = struct.unpack(order + "H", head[16:18])
    if phoff + phentsize * phnum > size or shoff + shentsize * shnum > size:
        return f"truncated: its headers point past the end of the file ({size} bytes)"
    if etype in (2, 3) and phnum == 0:  # EXEC / DYN without program headers cannot be loaded
        return "no program headers: not a loadable program or library"
    return ""


def binary_problem(path: Path) -> str:
    """Why ``path`` (sniffed as a binary) cannot be read as one ("" when it can): truncated or
    malformed headers, a malformed archive, or a file LIEF cannot parse."""
    kind = sniff(path)
    if kind is None:
        return ""
    try:
        size = path.stat().st_size
        if kind != "ar" and size > MAX_BINARY_BYTES:  # LIEF holds the whole file, twice over
            return too_large(size)
        if kind == "elf":
            with path.open("rb") as fh:
                head = fh.read(64)
            problem = _elf_problem(head, size)
            if problem:
                return problem
            return elf_problem(read_whole(path))
        if kind == "ar":
            with path.open("rb") as fh:
                for _name, body in object_members(fh):
                    _member_problem(body)
            return ""
        if kind == "fat":
            with path.open("rb") as fh:
                for _arch, offset, size in fat_entries(fh):
                    if _is_archive_at(fh, offset):  # a universal static library: streamed too
                        for _name, body in object_members(fh, offset, offset + size):
                            _member_problem(body)
                    else:
                        fh.seek(offset)
                        walk_macho(fh.read(size))
            return ""
        for _off, view in macho_slices(read_whole(path)):
            walk_macho(view)
    except MemberTooLarge as exc:
        return f"archive {exc}"
    except ValueError as exc:
        return f"malformed {'archive' if kind == 'ar' else kind + ' file'}: {exc}"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return ""


def _member_problem(body: bytes) -> None:
    """Raise MalformedBinary for an archive member whose headers point outside it."""
    if body[:4] in _MACHO_MAGICS:
        walk_macho(body)
    elif body[:4] == _ELF_MAGIC:
        problem = elf_problem(body)
        if problem:
            raise MalformedBinary(problem)


# --- LIEF -> BinarySlice -------------------------------------------------------------------------
def _macho_slice(path: Path, member: str, binary: object) -> BinarySlice:
    lief = _lief()
    macho = lief.MachO
    b = binary
    header = b.header  # type: ignore[attr-defined]
    cpu = str(header.cpu_type).rsplit(".", 1)[-1]
    arch = {"ARM64": "arm64", "X86_64": "x86_64", "X86": "i386", "ARM": "arm"}.get(cpu, cpu.lower())
    file_type = header.file_type
    kinds: dict[object, Kind] = {
        macho.Header.FILE_TYPE.EXECUTE: "executable",
        macho.Header.FILE_TYPE.DYLIB: "library",
        macho.Header.FILE_TYPE.BUNDLE: "module",
        macho.Header.FILE_TYPE.OBJECT: "object",
    }
    kind: Kind = kinds.get(file_type, "other")
    load = {
        macho.LoadCommand.TYPE.LOAD_DYLIB,
        macho.LoadCommand.TYPE.LOAD_WEAK_DYLIB,
        macho.LoadCommand.TYPE.REEXPORT_DYLIB,
        macho.LoadCommand.TYPE.LAZY_LOAD_DYLIB,
        macho.LoadCommand.TYPE.LOAD_UPWARD_DYLIB,
    }
    install_name, needed = "", []
    for lib in b.libraries:  # type: ignore[attr-defined]
        if lib.command == macho.LoadCommand.TYPE.ID_DYLIB:
            install_name = lib.name
        elif lib.command in load:
            needed.append(lib.name)
    defined: set[str] = set()
    local: set[str] = set()
    nlist_defined = 0
    for sym in b.symbols:  # type: ignore[attr-defined]
        raw = sym.raw_type
        in_table = not (raw & _N_STAB) and (raw & _N_TYPE) != 0
        if in_table:
            nlist_defined += 1
        name = sym.name
        if sym.has_export_info or (in_table and raw & _N_EXT):
            defined.add(name[1:] if name.startswith("_") else name)
        elif in_table:
            local.add(name[1:] if name.startswith("_") else name)
    minos: str | None = None
    sdk: list[int] = []
    if b.has_build_version:  # type: ignore[attr-defined]
        minos = version_text(b.build_version.minos)  # type: ignore[attr-defined]
        sdk = list(b.build_version.sdk)  # type: ignore[attr-defined]
    elif b.has_version_min:  # type: ignore[attr-defined]
        minos = version_text(b.version_min.version)  # type: ignore[attr-defined]
        sdk = list(b.version_min.sdk)  # type: ignore[attr-defined]
    return BinarySlice(
        path=path,
        member=member,
        format="macho",
        arch=arch,
        kind=kind,
        install_name=install_name,
        needed=tuple(needed),
        rpaths=tuple(r.path for r in b.rpaths),  # type: ignore[attr-defined]
        runpath=False,
        defined=frozenset(defined),
        sections=tuple((s.segment_name, s.name, int(s.size)) for s in b.sections),  # type: ignore[attr-defined]
        minos=minos,
        stripped=kind != "object" and nlist_defined <= 1,  # __mh_execute_header survives strip
        sdk=version_text(sdk) if any(sdk) else None,
        local=frozenset(local - defined),
    )


def _elf_slice(path: Path, member: str, b: object) -> BinarySlice:
    lief = _lief()
    elf = lief.ELF
    header = b.header  # type: ignore[attr-defined]
    machine = str(header.machine_type).rsplit(".", 1)[-1]
    ftype = header.file_type
    if ftype == elf.Header.FILE_TYPE.EXEC or (ftype == elf.Header.FILE_TYPE.DYN and b.has_interpreter):  # type: ignore[attr-defined]
        kind: Kind = "executable"
    elif ftype == elf.Header.FILE_TYPE.DYN:
        kind = "library"
    elif ftype == elf.Header.FILE_TYPE.REL:
        kind = "object"
    else:
        kind = "other"
    soname = ""
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    for entry in b.dynamic_entries:  # type: ignore[attr-defined]
        tag = entry.tag
        if tag == elf.DynamicEntry.TAG.NEEDED:
            needed.append(entry.name)
        elif tag == elf.DynamicEntry.TAG.SONAME:
            soname = entry.name
        elif tag == elf.DynamicEntry.TAG.RPATH:
            rpath.extend(p for p in entry.paths if p)
        elif tag == elf.DynamicEntry.TAG.RUNPATH:
            runpath.extend(p for p in entry.paths if p)
    keep = {elf.Symbol.BINDING.GLOBAL, elf.Symbol.BINDING.WEAK, elf.Symbol.BINDING.GNU_UNIQUE}
    defined = {
        s.name
        for table in (b.dynamic_symbols, b.symtab_symbols)  # type: ignore[attr-defined]
        for s in table
        if s.name and s.shndx != 0 and s.binding in keep
    }
    local = {
        s.name
        for s in b.symtab_symbols  # type: ignore[attr-defined]
        if s.name and s.shndx != 0 and s.binding == elf.Symbol.BINDING.LOCAL
    }
    sections = tuple(("", s.name, int(s.size)) for s in b.sections if s.name)  # type: ignore[attr-defined]
    return BinarySlice(
        path=path,
        member=member,
        format="elf",
        arch=_ELF_ARCH_NAMES.get(machine, machine.lower()),
        kind=kind,
        install_name=soname,
        needed=tuple(needed),
        rpaths=tuple(runpath or rpath),
        runpath=bool(runpath),
        defined=frozenset(defined),
        sections=sections,
        minos=None,
        stripped=not any(name == ".symtab" for _, name, _ in sections),
        local=frozenset(local - defined),
    )


def _parse_bytes(path: Path, member: str, data: bytes) -> list[BinarySlice]:
    lief = _lief()
    if data[:4] == _ELF_MAGIC:
        parsed = lief.ELF.parse(data)
        return [_elf_slice(path, member, parsed)] if parsed is not None else []
    if data[:4] in _MACHO_MAGICS or data[:4] in _FAT_MAGICS:
        fat = lief.MachO.parse(data)
        return [_macho_slice(path, member, b) for b in fat] if fat is not None else []
    return []


def _archive_slices(
    path: Path, fh: BinaryIO, start: int = 0, end: int | None = None, arch_hint: str = ""
) -> list[BinarySlice]:
    out: list[BinarySlice] = []
    for name, body in object_members(fh, start, end):
        out.extend(_parse_bytes(path, name if not arch_hint else f"{arch_hint}:{name}", body))
    return out


def read_binary(path: Path) -> tuple[BinarySlice, ...]:
    """Every slice of ``path`` (a thin or fat Mach-O, an ELF file or an archive); () if none."""
    with deferred_interrupt():  # Ctrl-C inside LIEF's native code would abort the process
        try:
            return _read_binary(path)
        except (ValueError, struct.error, OSError):  # malformed: binary_problem() says why
            return ()


def _read_binary(path: Path) -> tuple[BinarySlice, ...]:
    kind = sniff(path)
    if kind is None or binary_problem(path):  # LIEF never follows an offset past the file
        return ()
    lief = _lief()
    if kind == "ar":
        with path.open("rb") as fh:
            return tuple(_archive_slices(path, fh))
    if kind == "elf":
        parsed = lief.ELF.parse(str(path))
        return (_elf_slice(path, "", parsed),) if parsed is not None else ()
    if kind == "fat":
        with path.open("rb") as fh:
            entries = fat_entries(fh)
            if any(_is_archive_at(fh, offset) for _, offset, _ in entries):  # a universal static library
                return tuple(
                    s
                    for arch, offset, size in entries
                    for s in _archive_slices(path, fh, offset, offset + size, arch)
                )
    fat = lief.MachO.parse(str(path))
    return tuple(_macho_slice(path, "", b) for b in fat) if fat is not None else ()
