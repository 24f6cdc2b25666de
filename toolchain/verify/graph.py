"""The real dependency graph of a build: which file a program loads for each library it names.

Files are identified by their real path (symlinks such as ``libggml.so.0`` resolved); the name a
loader asked for stays in :attr:`Edge.name`.

Mach-O follows dyld: ``@rpath/`` is tried against the LC_RPATHs of the loading image and of every
image above it up to the program; ``@loader_path`` is the loading image's folder,
``@executable_path`` the program's (for a library alone: ``../MacOS`` beside an app bundle's
``Frameworks``). ``/System/…`` and ``/usr/lib/…`` live in the dyld shared cache: they are system
libraries, never files to look for.

ELF follows ld.so: DT_RPATH of the loader and its ancestors (ignored when the loader has
DT_RUNPATH), then the loader's DT_RUNPATH, then the system folders; ``$ORIGIN`` is the folder of
the object whose path list it is in. ``LD_LIBRARY_PATH`` is ignored on purpose: verification
answers for the build as shipped, not for one shell's environment.

System libraries are recorded, not descended into; project libraries are read and followed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .binaries import BinarySlice, read_binary

EdgeKind = Literal["project", "system", "missing"]

MACHO_SYSTEM_PREFIXES = ("/System/", "/usr/lib/")
ELF_SYSTEM_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib")


@dataclass(frozen=True)
class Edge:
    loader: Path
    arch: str
    name: str  # as written in the load command / DT_NEEDED
    resolved: Path | None
    kind: EdgeKind
    searched: tuple[str, ...] = ()  # candidate paths tried, for the message when missing


@dataclass(frozen=True)
class DependencyGraph:
    arch: str
    roots: tuple[BinarySlice, ...]
    nodes: tuple[BinarySlice, ...]  # every project file reached (roots included), breadth first
    edges: tuple[Edge, ...]

    def node(self, path: Path) -> BinarySlice | None:
        return next((n for n in self.nodes if n.path == path), None)

    def path_to(self, root: BinarySlice, target: Path) -> tuple[Edge, ...] | None:
        """The chain of edges from ``root`` to ``target`` (() when target is root), or None."""
        if root.path == target:
            return ()
        prev: dict[Path, Edge] = {}
        queue = [root.path]
        while queue:
            cur = queue.pop(0)
            for e in self.edges:
                if (
                    e.loader == cur
                    and e.resolved is not None
                    and e.resolved not in prev
                    and e.resolved != root.path
                ):
                    prev[e.resolved] = e
                    if e.resolved == target:
                        chain = [e]
                        while chain[0].loader != root.path:
                            chain.insert(0, prev[chain[0].loader])
                        return tuple(chain)
                    queue.append(e.resolved)
        return None


def _elf_system_dirs() -> tuple[str, ...]:
    dirs: list[str] = []
    for conf in sorted(glob.glob("/etc/ld.so.conf.d/*.conf")):
        try:
            lines = Path(conf).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        dirs.extend(line.strip() for line in lines if line.strip().startswith("/"))
    dirs.extend(ELF_SYSTEM_DIRS)
    return tuple(dict.fromkeys(dirs))


def _under_system(path: Path, system_dirs: Iterable[str]) -> bool:
    text = str(path)
    return any(text == d or text.startswith(d.rstrip("/") + "/") for d in system_dirs)


class _Resolver:
    def __init__(self, arch: str, read: Callable[[Path], tuple[BinarySlice, ...]]) -> None:
        self.arch = arch
        self.read = read
        self.elf_system = _elf_system_dirs()

    def slice_of(self, path: Path) -> BinarySlice | None:
        return next((s for s in self.read(path) if s.arch == self.arch and not s.member), None)

    # -- Mach-O -----------------------------------------------------------------------------------
    def macho(
        self, name: str, chain: list[BinarySlice], exe_dir: Path | None
    ) -> tuple[Path | None, EdgeKind, list[str]]:
        loader = chain[-1]
        if name.startswith(MACHO_SYSTEM_PREFIXES):
            return None, "system", []

        def expand(text: str, owner: BinarySlice) -> str | None:
            if text.startswith("@loader_path"):
                return str(owner.path.parent) + text[len("@loader_path") :]
            if text.startswith("@executable_path"):
                return None if exe_dir is None else str(exe_dir) + text[len("@executable_path") :]
            return text

        candidates: list[str] = []
        if name.startswith("@rpath/"):
            rest = name[len("@rpath") :]
            for owner in reversed(chain):  # the loader's own LC_RPATHs first, then up to the program
                for rp in owner.rpaths:
                    base = expand(rp, owner)
                    if base is not None:
                        candidates.append(base + rest)
        else:
            expanded = expand(name, loader)
            if expanded is not None:
                candidates.append(expanded)
        for cand in candidates:
            path = Path(os.path.normpath(cand)).resolve()
            if path.is_file() and self.slice_of(path) is not None:
                return path, "project", candidates
        return None, "missing", candidates

    # -- ELF ----------------------------------------------------------------------------------------
    def elf(self, name: str, chain: list[BinarySlice]) -> tuple[Path | None, EdgeKind, list[str]]:
        loader = chain[-1]

        def expand(text: str, owner: BinarySlice) -> str:
            origin = str(owner.path.parent)
            return text.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)

        dirs: list[str] = []
        if "/" in name:
            candidates = [name]
        else:
            if not loader.runpath:
                for owner in reversed(chain):
                    if not owner.runpath:
                        dirs.extend(expand(p, owner) for p in owner.rpaths)
            else:
                dirs.extend(expand(p, loader) for p in loader.rpaths)
            candidates = [str(Path(d) / name) for d in dirs]
        for cand in candidates:
            path = Path(os.path.normpath(cand)).resolve()
            if path.is_file() and self.slice_of(path) is not None:
                kind: EdgeKind = "system" if _under_system(path, self.elf_system) else "project"
                return path, kind, candidates
        for d in self.elf_system:
            path = (Path(d) / name).resolve()
            if path.is_file() and self.slice_of(path) is not None:
                return path, "system", candidates
        return None, "missing", candidates + [f"{d}/{name}" for d in self.elf_system]


def build_graph(
    roots: Iterable[BinarySlice],
    *,
    read: Callable[[Path], tuple[BinarySlice, ...]] = read_binary,
) -> DependencyGraph:
    """Follow every root's libraries (one architecture: that of the roots)."""
    root_list = tuple(roots)
    if not root_list:
        raise ValueError("no roots")
    arch = root_list[0].arch
    resolver = _Resolver(arch, read)
    nodes: dict[Path, BinarySlice] = {}
    edges: list[Edge] = []
    seen_edges: set[tuple[Path, str]] = set()
    for root in root_list:
        exe_dir = root.path.parent if root.kind == "executable" else _app_executable_dir(root.path)
        nodes.setdefault(root.path, root)
        stack: list[list[BinarySlice]] = [[root]]
        while stack:
            chain = stack.pop()
            cur = chain[-1]
            for name in cur.needed:
                key = (cur.path, name)
                if cur.format == "macho":
                    resolved, kind, searched = resolver.macho(name, chain, exe_dir)
                else:
                    resolved, kind, searched = resolver.elf(name, chain)
                if key not in seen_edges:
                    seen_edges.add(key)
                    edges.append(Edge(cur.path, arch, name, resolved, kind, tuple(searched)))
                if resolved is None or kind != "project" or any(c.path == resolved for c in chain):
                    continue
                nxt = nodes.get(resolved) or resolver.slice_of(resolved)
                if nxt is None:
                    continue
                first = resolved not in nodes
                nodes[resolved] = nxt
                # a library reached through another chain may resolve @rpath differently: revisit
                # only the first time (dyld loads each image once, by its first resolution)
                if first:
                    stack.append([*chain, nxt])
    return DependencyGraph(arch, root_list, tuple(nodes.values()), tuple(edges))


def _app_executable_dir(lib: Path) -> Path | None:
    """For a library inside ``X.app/Contents/Frameworks``: ``X.app/Contents/MacOS``."""
    for parent in lib.parents:
        if parent.name == "Frameworks" and parent.parent.name == "Contents":
            return parent.parent / "MacOS"
    return None
