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

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Literal

from ..core.binlayout import MalformedBinary, elf_problem, macho_slices, walk_macho
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
def ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each member of a System V / GNU / BSD ``ar`` archive; symbol tables skipped."""
    if not data.startswith(_AR_MAGIC):
        raise ValueError("not an ar archive")
    pos, long_names = len(_AR_MAGIC), b""
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"bad ar member header at offset {pos}")
        raw_name = header[:16].decode("ascii", "replace").rstrip()
        size_field = header[48:58].decode("ascii", "replace").strip()
        if not size_field.isdigit():
            raise ValueError(f"member at offset {pos}: size field {size_field!r} is not a number")
        size = int(size_field)
        if pos + 60 + size > len(data):
            raise ValueError(f"member at offset {pos}: {size} bytes, past the end of the archive")
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if raw_name.startswith("#1/"):  # BSD: the name leads the body
            if not raw_name[3:].isdigit() or int(raw_name[3:]) > size:
                raise ValueError(f"member at offset {pos}: bad BSD name length {raw_name[3:]!r}")
            name_len = int(raw_name[3:])
            name, body = body[:name_len].rstrip(b"\0").decode("utf-8", "replace"), body[name_len:]
        elif raw_name == "//":  # GNU long-name table
            long_names = body
            continue
        elif raw_name.startswith("/") and raw_name[1:].isdigit():  # GNU long name reference
            start = int(raw_name[1:])
            end = long_names.find(b"/\n", start)
            name = long_names[start : end if end >= 0 else None].decode("utf-8", "replace")
        else:
            name = raw_name[:-1] if raw_name.endswith("/") else raw_name
        if name in (
            "",
            "/",
            "/SYM64",
            "__.SYMDEF",
            "__.SYMDEF SORTED",
            "__.SYMDEF_64",
            "__.SYMDEF_64 SORTED",
        ):
            continue
        yield name, body


def fat_slices(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(arch, content) of each slice of a fat (universal) file: the container header only.
    ValueError for a header that points outside the file."""
    is64 = _FAT_MAGICS[data[:4]]
    (count,) = struct.unpack(">I", data[4:8])
    entry = ">iiQQII" if is64 else ">iiIII"
    step = struct.calcsize(entry)
    if 8 + count * step > len(data):
        raise ValueError(f"the fat header lists {count} slices but the file ends first")
    for i in range(count):
        fields = struct.unpack(entry, data[8 + i * step : 8 + (i + 1) * step])
        cputype, offset, size = fields[0], fields[2], fields[3]
        if offset + size > len(data):
            raise ValueError(f"slice {i} ({offset}+{size} bytes) lies past the end of the file")
        yield _CPU_NAMES.get(cputype, f"cpu{cputype:#x}"), data[offset : offset + size]


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
        if kind == "elf":
            with path.open("rb") as fh:
                head = fh.read(64)
            problem = _elf_problem(head, path.stat().st_size)
            if problem:
                return problem
            return elf_problem(path.read_bytes())
        if kind == "ar":
            for _name, body in ar_members(path.read_bytes()):
                _member_problem(body)
            return ""
        for _off, view in macho_slices(path.read_bytes()):
            if bytes(view[:8]) == _AR_MAGIC:
                for _member, member in ar_members(bytes(view)):
                    _member_problem(member)
            else:
                walk_macho(view)
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


def _archive_slices(path: Path, data: bytes, arch_hint: str = "") -> list[BinarySlice]:
    out: list[BinarySlice] = []
    for name, body in ar_members(data):
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
        return tuple(_archive_slices(path, path.read_bytes()))
    if kind == "elf":
        parsed = lief.ELF.parse(str(path))
        return (_elf_slice(path, "", parsed),) if parsed is not None else ()
    if kind == "fat":
        data = path.read_bytes()
        if any(body.startswith(_AR_MAGIC) for _, body in fat_slices(data)):  # a universal static library
            return tuple(s for arch, body in fat_slices(data) for s in _archive_slices(path, body, arch))
    fat = lief.MachO.parse(str(path))
    return tuple(_macho_slice(path, "", b) for b in fat) if fat is not None else ()
