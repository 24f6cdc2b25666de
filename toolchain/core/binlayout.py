"""The bounded reader: every offset and size a Mach-O or ELF header states is checked against the
file before LIEF (or anything else) follows it.

A file cut short, a load command count of 2^32-1, a symbol table or a section past the end, an
embedded ``__ggml_metallib`` section claiming 2^63 bytes, an ELF ``DT_NEEDED`` past its string
table: each is a :class:`MalformedBinary` naming the field, and the file is "not a readable
binary" (never "built without Metal", never a pass). Work is bounded by the file's size: a header
cannot make this loop longer than the bytes it has.

Also the one place that hands out a section's bytes (:func:`macho_sections`, :func:`section_bytes`),
so that nobody reads a section by a size the header merely claims, and the one that reads a whole
binary (:func:`read_whole`, at most ``MAX_BINARY_BYTES``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

# <mach-o/loader.h>
_LC_SEGMENT, _LC_SEGMENT_64, _LC_SYMTAB = 0x1, 0x19, 0x2
_LC_REQ_DYLD = 0x80000000
_DYLIB_CMDS = {0xC, 0xD, 0x18 | _LC_REQ_DYLD, 0x1F | _LC_REQ_DYLD, 0x20, 0x23 | _LC_REQ_DYLD, 0x1C}
_LC_RPATH = 0x1C | _LC_REQ_DYLD
_LINKEDIT_DATA = {0x1D, 0x1E, 0x26, 0x29, 0x2B, 0x2E, 0x80000033, 0x80000034}  # dataoff, datasize
_DYLD_INFO = {0x22, 0x22 | _LC_REQ_DYLD}
_ZEROFILL = {0x1, 0xC, 0x12}  # S_ZEROFILL, S_GB_ZEROFILL, S_THREAD_LOCAL_ZEROFILL: no file bytes
_CPU_NAMES = {7: "i386", 0x01000007: "x86_64", 12: "arm", 0x0100000C: "arm64", 0x0200000C: "arm64_32"}


MAX_BINARY_BYTES = 2 << 30  # a Metal build is a few MB, a CUDA library for every GPU about 1 GB: a
# larger file is "not a readable binary" (LIEF holds a whole file, about twice over)


class MalformedBinary(ValueError):
    """A header field points outside the file (or is impossible): the message names it."""


def too_large(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB, larger than any llama.cpp build (at most {MAX_BINARY_BYTES >> 30} GiB is read): not read"


def read_whole(path: Path) -> bytes:
    """The whole binary, refused (MalformedBinary) past ``MAX_BINARY_BYTES`` before a byte is
    read; ``OSError`` passes through. Read, not memory-mapped: a map of a file that a build
    rewrites meanwhile dies of SIGBUS where a read sees a short file (a MalformedBinary)."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_BINARY_BYTES:
            raise MalformedBinary(too_large(size))
        return fh.read(MAX_BINARY_BYTES + 1)


@dataclass(frozen=True)
class Section:
    segment: str
    name: str
    offset: int  # in the slice
    size: int
    zerofill: bool


@dataclass(frozen=True)
class MachoLayout:
    arch: str
    sections: tuple[Section, ...]

    def find(self, segment: str, name: str) -> Section | None:
        return next((s for s in self.sections if s.segment == segment and s.name == name), None)


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _within(what: str, offset: int, size: int, total: int) -> None:
    if offset < 0 or size < 0 or offset + size > total:
        raise MalformedBinary(f"{what} ({offset}+{size} bytes) lies past the end of the file ({total} bytes)")


def walk_macho(data: bytes | memoryview) -> MachoLayout:
    """Check one thin Mach-O's header and load commands against its size; its sections."""
    total = len(data)
    if total < 28:
        raise MalformedBinary(f"truncated: {total} bytes, shorter than a Mach-O header")
    magic = bytes(data[:4])
    order = "<" if magic in (b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe") else ">"
    is64 = magic in (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf")
    hdr = 32 if is64 else 28
    if total < hdr:
        raise MalformedBinary(f"truncated: {total} bytes, shorter than its {hdr}-byte Mach-O header")
    cputype, _sub, _ftype, ncmds, sizeofcmds = struct.unpack_from(order + "iIIII", data, 4)
    if hdr + sizeofcmds > total:
        raise MalformedBinary(
            f"truncated: its load commands take {sizeofcmds} bytes but the file has {total - hdr} after the header"
        )
    if ncmds * 8 > sizeofcmds:
        raise MalformedBinary(f"ncmds {ncmds} cannot fit in sizeofcmds {sizeofcmds} (8 bytes each at least)")
    sections: list[Section] = []
    pos, end = hdr, hdr + sizeofcmds
    for i in range(ncmds):
        if pos + 8 > end:
            raise MalformedBinary(f"load command {i} starts past sizeofcmds")
        cmd, cmdsize = struct.unpack_from(order + "II", data, pos)
        if cmdsize < 8 or pos + cmdsize > end:
            raise MalformedBinary(
                f"load command {i} (cmd {cmd:#x}) has cmdsize {cmdsize}, outside the load commands"
            )
        if cmd in (_LC_SEGMENT_64, _LC_SEGMENT):
            seg64 = cmd == _LC_SEGMENT_64
            head, step = (72, 80) if seg64 else (56, 68)
            if cmdsize < head:
                raise MalformedBinary(f"segment command {i} is {cmdsize} bytes, shorter than its header")
            segname = _name(bytes(data[pos + 8 : pos + 24]))
            if seg64:
                _vmaddr, _vmsize, fileoff, filesize, _mp, _ip, nsects, _fl = struct.unpack_from(
                    order + "QQQQiiII", data, pos + 24
                )
            else:
                _vmaddr, _vmsize, fileoff, filesize, _mp, _ip, nsects, _fl = struct.unpack_from(
                    order + "IIIIiiII", data, pos + 24
                )
            _within(f"segment {segname}", fileoff, filesize, total)
            if head + nsects * step > cmdsize:
                raise MalformedBinary(
                    f"segment {segname} lists {nsects} sections, more than its command holds"
                )
            for k in range(nsects):
                at = pos + head + k * step
                sect, sseg = _name(bytes(data[at : at + 16])), _name(bytes(data[at + 16 : at + 32]))
                if seg64:
                    _addr, size, offset, _al, _ro, _nr, flags = struct.unpack_from(
                        order + "QQIIIII", data, at + 32
                    )
                else:
                    _addr, size, offset, _al, _ro, _nr, flags = struct.unpack_from(
                        order + "IIIIIII", data, at + 32
                    )
                zerofill = (flags & 0xFF) in _ZEROFILL
                if not zerofill and size:
                    _within(f"section {sseg},{sect}", offset, size, total)
                sections.append(Section(sseg, sect, offset, size, zerofill))
        elif cmd == _LC_SYMTAB:
            if cmdsize < 24:
                raise MalformedBinary(f"LC_SYMTAB is {cmdsize} bytes")
            symoff, nsyms, stroff, strsize = struct.unpack_from(order + "IIII", data, pos + 8)
            _within("the symbol table (LC_SYMTAB)", symoff, nsyms * (16 if is64 else 12), total)
            _within("the string table (LC_SYMTAB)", stroff, strsize, total)
        elif cmd in _DYLIB_CMDS or cmd == _LC_RPATH:
            (name_off,) = struct.unpack_from(order + "I", data, pos + 8) if cmdsize >= 12 else (cmdsize,)
            if name_off >= cmdsize:
                raise MalformedBinary(f"load command {i} (cmd {cmd:#x}): its name lies outside the command")
        elif cmd in _LINKEDIT_DATA and cmdsize >= 16:
            dataoff, datasize = struct.unpack_from(order + "II", data, pos + 8)
            _within(f"load command {i} (cmd {cmd:#x}) data", dataoff, datasize, total)
        elif cmd in _DYLD_INFO and cmdsize >= 48:
            fields = struct.unpack_from(order + "10I", data, pos + 8)
            for j in range(0, 10, 2):
                _within(f"LC_DYLD_INFO data {j // 2}", fields[j], fields[j + 1], total)
        pos += cmdsize
    return MachoLayout(_CPU_NAMES.get(cputype, f"cpu{cputype:#x}"), tuple(sections))


def elf_problem(data: bytes | memoryview) -> str:
    """Why an ELF file's section headers or dynamic strings point outside it ("" when they do not)."""
    total = len(data)
    if total < 16 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return "truncated or malformed ELF identification"
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if total < (64 if is64 else 52):
        return f"truncated: {total} bytes, shorter than its ELF header"
    if is64:
        phoff, shoff = struct.unpack_from(order + "QQ", data, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", data, 54)
    else:
        phoff, shoff = struct.unpack_from(order + "II", data, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", data, 42)
    if phoff + phentsize * phnum > total or shoff + shentsize * shnum > total:
        return f"truncated: its headers point past the end of the file ({total} bytes)"
    need = 64 if is64 else 40
    if shnum and shentsize < need:
        return f"section header entries of {shentsize} bytes (less than {need})"
    secs: list[tuple[int, int, int, int]] = []  # (type, offset, size, link)
    for k in range(shnum):
        at = shoff + k * shentsize
        if is64:
            _n, stype, _f, _a, off, size, link = struct.unpack_from(order + "IIQQQQI", data, at)
        else:
            _n, stype, _f, _a, off, size, link = struct.unpack_from(order + "IIIIIII", data, at)
        if stype != 8 and size and off + size > total:  # SHT_NOBITS has no file bytes
            return f"section {k} ({off}+{size} bytes) lies past the end of the file ({total} bytes)"
        secs.append((stype, off, size, link))
    for stype, off, size, link in secs:
        if stype != 6:  # SHT_DYNAMIC
            continue
        if link >= len(secs):
            return f"the dynamic section's string table index {link} does not exist"
        strsize = secs[link][2]
        step = 16 if is64 else 8
        for e in range(size // step):
            tag, val = struct.unpack_from(order + ("qQ" if is64 else "iI"), data, off + e * step)
            if tag == 0:
                break
            if tag in (1, 14, 15, 29) and val >= strsize:  # NEEDED, SONAME, RPATH, RUNPATH
                name = {1: "DT_NEEDED", 14: "DT_SONAME", 15: "DT_RPATH", 29: "DT_RUNPATH"}[tag]
                return f"{name} string at offset {val} lies past its string table ({strsize} bytes)"
    return ""


def macho_slices(data: bytes) -> list[tuple[int, memoryview]]:
    """(offset, bytes) of each Mach-O slice of a thin or fat file (MalformedBinary if the fat
    header points outside the file)."""
    view = memoryview(data)
    magic = data[:4]
    if magic in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
        if len(data) < 8:
            raise MalformedBinary("truncated fat header")
        (count,) = struct.unpack_from(">I", data, 4)
        entry = ">iiQQII" if magic == b"\xca\xfe\xba\xbf" else ">iiIII"
        step = struct.calcsize(entry)
        if 8 + count * step > len(data):
            raise MalformedBinary(f"the fat header lists {count} slices but the file ends first")
        out = []
        for i in range(count):
            fields = struct.unpack_from(entry, data, 8 + i * step)
            offset, size = fields[2], fields[3]
            _within(f"slice {i}", offset, size, len(data))
            out.append((offset, view[offset : offset + size]))
        return out
    return [(0, view)]


def macho_sections(data: bytes, segment: str, name: str) -> list[tuple[str, bytes]]:
    """(arch, content) of ``segment,name`` in each Mach-O slice that has it, every offset checked
    (MalformedBinary otherwise)."""
    out: list[tuple[str, bytes]] = []
    for _off, body in macho_slices(data):
        if bytes(body[:8]).startswith(b"!<arch>\n"):
            continue
        layout = walk_macho(body)
        sect = layout.find(segment, name)
        if sect is not None and not sect.zerofill:
            out.append((layout.arch, bytes(body[sect.offset : sect.offset + sect.size])))
    return out
