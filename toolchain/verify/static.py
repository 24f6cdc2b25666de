"""Static verification: does this build carry its backend? Read from the binaries, no device.

Driven by the profile's :class:`~toolchain.profiles.StaticExpectations` (and those of its
``also_profiles``, e.g. the CPU backend every build has). Checks, per architecture of the programs:

- ``dependencies``: every library a program names resolves the way the loader would resolve it
  (a binary moved away from its libraries fails here);
- ``registration``: the backend's registration symbol is defined in a file the programs link, or
  in a ``GGML_BACKEND_DL`` module they can load (``ggml_backend_init`` in ``lib<stem>[-*].so``);
- ``linked-libraries``: that file links what the backend needs (Metal.framework, OpenBLAS…);
- ``shader-library``: the embedded library (section + ``<prefix>[_<kind>]_start/_end`` pairs) or,
  when it is not embedded, the resource file beside the programs;
- ``deployment-target`` (Mach-O): no file requires a newer macOS than the configured target (or
  the running macOS, on a Mac).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..errors import VerifyError
from ..profiles import PROFILES, BackendProfile, PlatformInfo, StaticExpectations, current_platform
from .binaries import BinarySlice, binary_problem, read_binary, sniff, version_key
from .graph import DependencyGraph, Edge, build_graph
from .records import Check, Status

CMAKE_CACHE = "CMakeCache.txt"
# Folders llama.cpp builds and installs put programs and libraries in.
BINARY_DIRS = ("bin", "lib")
# Library names that belong to the build itself (a missing one is a broken build, not a
# missing system package).
PROJECT_LIBRARY_PREFIXES = ("libggml", "libllama", "libmtmd", "libcommon")


@dataclass(frozen=True)
class Inputs:
    """What was found at the path the user gave."""

    path: Path
    files: tuple[Path, ...]  # binaries to inspect (resolved)
    cache: Mapping[str, str] = field(default_factory=dict)  # CMakeCache.txt, NAME -> value
    cache_file: Path | None = None


@dataclass(frozen=True)
class StaticResult:
    checks: tuple[Check, ...]
    files: tuple[Path, ...]
    archs: tuple[str, ...]
    formats: tuple[str, ...]


def read_cmake_cache(path: Path) -> dict[str, str]:
    """``NAME:TYPE=VALUE`` lines of a CMakeCache.txt as NAME -> VALUE."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line or line.startswith(("#", "//")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.split(":", 1)[0]] = value.strip()
    return out


def _kind_of(path: Path) -> str:
    """ "a FIFO", "a socket", "a dangling symlink to X" … for what is neither a file nor a folder."""
    import stat

    if path.is_symlink() and not path.exists():
        return f"a dangling symlink to {os.readlink(path)}"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    for test, what in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return "not a regular file or directory"


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise VerifyError(
            f"{folder}: cannot be listed: {exc.strerror or exc}", "give a folder this user can read"
        ) from exc


def _binaries_in(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in _entries(folder):
        if entry.suffix == ".framework" and entry.is_dir():
            inner = entry / entry.stem
            if inner.exists():
                found.append(inner.resolve())
        elif entry.is_file() and sniff(entry) in ("macho", "fat", "elf"):
            found.append(entry.resolve())
    return list(dict.fromkeys(found))


def discover(path: Path) -> Inputs:
    """A build dir (``bin/``, ``lib/``), an install prefix, a folder of binaries (an app's
    ``Frameworks``) or a single binary."""
    path = path.expanduser()
    if not path.exists():
        why = f"is {_kind_of(path)}" if path.is_symlink() else "does not exist"
        raise VerifyError(f"{path} {why}", "give a build dir, a binary or an app's Frameworks folder")
    if not path.is_file() and not path.is_dir():
        raise VerifyError(
            f"{path} is not a regular file or directory ({_kind_of(path)})",
            "give a build dir, a binary or an app's Frameworks folder",
        )
    cache_file: Path | None = None
    if path.is_file():
        files = [path.resolve()] if _is_binary(path) else []
        if not files:
            raise VerifyError(
                f"{path} is not a Mach-O or ELF binary", "give a program, a library or a build dir"
            )
        for parent in path.resolve().parents[:2]:
            if (parent / CMAKE_CACHE).is_file():
                cache_file = parent / CMAKE_CACHE
                break
    else:
        subdirs = [path / d for d in BINARY_DIRS if (path / d).is_dir()]
        files = [f for d in (subdirs or [path]) for f in _binaries_in(d)]
        if path.name == "Frameworks" and path.parent.name == "Contents" and (path.parent / "MacOS").is_dir():
            files = _binaries_in(path.parent / "MacOS") + files  # the app's programs load these
        if (path / CMAKE_CACHE).is_file():
            cache_file = path / CMAKE_CACHE
        if not files:
            where = ", ".join(str(d) for d in (subdirs or [path]))
            odd = [
                f"{d.name} is {_kind_of(d)}"
                for d in (path / name for name in BINARY_DIRS)
                if (d.is_symlink() or d.exists()) and not d.is_dir()
            ]
            odd += [
                f"{e.name} is {_kind_of(e)}"
                for d in (subdirs or [path])
                for e in _entries(d)
                if not e.is_file() and not e.is_dir()
            ]
            raise VerifyError(
                f"no Mach-O or ELF binaries in {where}" + (f" ({'; '.join(odd[:8])})" if odd else ""),
                "give the build dir (the one holding bin/), a binary, or an app bundle's Contents/Frameworks",
            )
    cache_data = read_cmake_cache(cache_file) if cache_file else {}
    return Inputs(path=path, files=tuple(files), cache=cache_data, cache_file=cache_file)


def _is_binary(path: Path) -> bool:
    return sniff(path) in ("macho", "fat", "elf", "ar")


def _on(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.upper() in ("ON", "1", "YES", "TRUE", "Y")


def _profiles(profile: BackendProfile) -> list[BackendProfile]:
    return [profile, *(PROFILES[name] for name in profile.expectations.also_profiles if name != profile.name)]


def _needed_for(exp: StaticExpectations, fmt: str) -> tuple[str, ...]:
    return (*exp.needed_libraries, *exp.needed_libraries_by_format.get(fmt, ()))


def _is_module_name(path: Path, stem: str) -> bool:
    # ggml_backend_load_best: "lib" + name + ".so" or "lib" + name + "-<variant>.so" (".dll" on Windows)
    name = path.name
    return (
        name.startswith(f"lib{stem}")
        and name.endswith((".so", ".dll"))
        and (name[len(stem) + 3 :] in (".so", ".dll") or name[len(stem) + 3 :].startswith("-"))
    )


def short_library(name: str) -> str:
    """ "/System/Library/Frameworks/Metal.framework/Versions/A/Metal" -> "Metal.framework"."""
    for part in name.split("/"):
        if part.endswith(".framework"):
            return part
    return name.rsplit("/", 1)[-1]


def _chain_text(root: BinarySlice, chain: tuple[Edge, ...]) -> str:
    if not chain:
        return f"in {root.path.name} itself"
    return "linked: " + " -> ".join([root.path.name, *(e.name.rsplit("/", 1)[-1] for e in chain)])


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


class _Checker:
    def __init__(
        self,
        inputs: Inputs,
        profile: BackendProfile,
        *,
        deployment_target: str | None,
        embed_library: bool | None,
        host_macos: str | None,
        read: Callable[[Path], tuple[BinarySlice, ...]],
    ) -> None:
        self.inputs = inputs
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
            else _on(cache.get(exp.embed_option))
            if exp.embed_option
            else None
        )
        self.host_macos = host_macos
        self.checks: list[Check] = []
        self.broken = False

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
    def readable(self) -> dict[Path, tuple[BinarySlice, ...]]:
        """The slices of every input file that can be read; a ``readable`` failure for each that
        cannot (truncated, malformed, a broken archive): never described as "stripped"."""
        slices: dict[Path, tuple[BinarySlice, ...]] = {}
        for f in self.inputs.files:
            problem = binary_problem(f)
            got = () if problem else self.read(f)
            if not problem and not got and sniff(f) != "ar":
                problem = "its headers cannot be parsed as Mach-O or ELF"
            if problem:
                self.add(
                    "readable",
                    "every binary is a whole Mach-O / ELF file or archive",
                    f"{self.rel(f)}: not a readable binary: {problem}",
                    "fail",
                    f,
                    hint="the file is damaged or was copied in part: rebuild it, or copy it again",
                )
                continue
            slices[f] = got
        return slices

    def run(self) -> StaticResult:
        slices = self.readable()
        every = [s for group in slices.values() for s in group if not s.member]
        programs = [s for s in every if s.kind == "executable"]
        roots_all = programs or [s for s in every if s.kind in ("library", "module")]
        if not roots_all and self.checks:  # only unreadable files: that is the verdict
            seen = tuple(sorted({s.format for group in slices.values() for s in group}))
            return StaticResult(tuple(self.checks), tuple(self.inputs.files), (), seen)
        if not roots_all:
            raise VerifyError(
                f"no programs or libraries among {', '.join(self.rel(f) for f in slices)}",
                "give a build dir, a program, a library or an app's Frameworks folder",
            )
        archs = sorted({s.arch for s in roots_all})
        formats = sorted({s.format for s in every})
        multi = len(archs) > 1
        for arch in archs:
            self.check_arch(
                arch, [s for s in roots_all if s.arch == arch], [s for s in every if s.arch == arch], multi
            )
        return StaticResult(tuple(self.checks), tuple(slices), tuple(archs), tuple(formats))

    def check_arch(self, arch: str, roots: list[BinarySlice], every: list[BinarySlice], multi: bool) -> None:
        tag = arch if multi else ""
        graph = build_graph(roots, read=self.read)
        programs = [r for r in roots if r.kind == "executable"]
        # backend modules (GGML_BACKEND_DL) are dlopen()ed: their own dependencies are a graph too
        module_dirs = {p.path.parent for p in programs} or {self.base}
        modules = [
            s
            for s in every
            if s.path.parent in module_dirs
            and s.kind in ("module", "library")
            and any(_is_module_name(s.path, p.expectations.library_stem) for p in _profiles(self.profile))
            and any(p.expectations.dl_module_symbol in s.defined for p in _profiles(self.profile))
        ]
        module_graph = build_graph(modules, read=self.read) if modules else None
        self.check_dependencies(tag, graph, module_graph)
        known = {n.path: n for n in [*every, *graph.nodes, *(module_graph.nodes if module_graph else ())]}
        carriers_all: list[BinarySlice] = []
        for prof in _profiles(self.profile):
            carriers = self.check_registration(tag, prof, graph, programs, list(known.values()), modules)
            if prof is self.profile:
                carriers_all = carriers
            if carriers:
                self.check_linked(tag, prof, carriers)
        if self.profile.expectations.embedded_section and carriers_all:
            self.check_shader_library(tag, self.profile, carriers_all, programs)
        macho_nodes = [n for n in known.values() if n.format == "macho" and n.kind != "object"]
        if macho_nodes:
            self.check_deployment(tag, macho_nodes, programs)

    # ------------------------------------------------------------------------------------------------
    def check_dependencies(
        self, tag: str, graph: DependencyGraph, module_graph: DependencyGraph | None
    ) -> None:
        edges = [*graph.edges, *(module_graph.edges if module_graph else ())]
        scanned_names = {f.name for f in self.inputs.files}
        broken: list[Edge] = []
        absent: list[Edge] = []
        for e in edges:
            if e.kind != "missing":
                continue
            leaf = e.name.rsplit("/", 1)[-1]
            if e.name.startswith("@") or leaf in scanned_names or leaf.startswith(PROJECT_LIBRARY_PREFIXES):
                broken.append(e)
            else:
                absent.append(e)
        project = sorted({e.name.rsplit("/", 1)[-1] for e in edges if e.kind == "project"})
        expected = "every library the programs name resolves as the loader would resolve it"
        for e in broken:
            where = ", ".join(e.searched[:4]) or "no LC_RPATH / RUNPATH to search"
            fmt = "LC_RPATH" if e.name.startswith("@") or e.loader.suffix == ".dylib" else "RUNPATH"
            self.add(
                "dependencies",
                expected,
                f"{e.loader.name} needs {e.name}: not found (looked in {where})",
                "fail",
                e.loader,
                arch=tag,
                hint=f"the binary was moved away from its libraries or its {fmt} is wrong: keep the build's "
                "bin/ together (or install it with `cmake --install`) and verify again",
            )
        for e in absent:
            self.add(
                "dependencies",
                expected,
                f"{e.loader.name} needs {e.name}: not on this machine",
                "unverifiable",
                e.loader,
                arch=tag,
                hint="a system library the machine that runs the build must provide",
            )
        self.broken = bool(broken)
        if not broken:
            found = (
                f"{len(project)} project libraries resolved: {', '.join(project)}"
                if project
                else "no project libraries needed"
            )
            self.add("dependencies", expected, found, "pass", arch=tag)

    def check_registration(
        self,
        tag: str,
        prof: BackendProfile,
        graph: DependencyGraph,
        programs: list[BinarySlice],
        known: list[BinarySlice],
        modules: list[BinarySlice],
    ) -> list[BinarySlice]:
        exp = prof.expectations
        name = "registration" if prof is self.profile else f"registration:{prof.name}"
        label = exp.label or prof.name
        syms = exp.registration_symbols
        expected = f"{' or '.join(syms)} in a file the programs link, or {exp.dl_module_symbol} in a lib{exp.library_stem}*.so module"
        dl = [
            m
            for m in modules
            if _is_module_name(m.path, exp.library_stem) and exp.dl_module_symbol in m.defined
        ]
        linked = [
            s for s in known if s.kind in ("executable", "library") and set(syms) & s.defined and s not in dl
        ]
        reached: list[tuple[BinarySlice, str]] = []
        for carrier in linked:
            for prog in programs or [carrier]:
                chain = graph.path_to(prog, carrier.path) if programs else ()
                if chain is not None:
                    reached.append(
                        (carrier, _chain_text(prog, chain) if programs else f"in {carrier.path.name}")
                    )
                    break
        for module in dl:
            reached.append(
                (module, f"loadable module {module.path.name} ({exp.dl_module_symbol}) beside the programs")
            )
        if reached:
            found = "; ".join(
                f"{next(iter(set(syms) & c.defined), exp.dl_module_symbol)} {how}" for c, how in reached
            )
            self.add(name, expected, found, "pass", reached[0][0].path, arch=tag)
            return [c for c, _ in reached]
        configured = _on(self.inputs.cache.get(exp.enable_option)) if exp.enable_option else None
        cache_note = f" ({CMAKE_CACHE}: {exp.enable_option}=OFF)" if configured is False else ""
        rebuild = (
            f"rebuild with -D{exp.enable_option}=ON" if exp.enable_option else "rebuild with the backend on"
        )
        if linked:
            self.add(
                name,
                expected,
                f"{syms[0]} is in {', '.join(c.label for c in linked)} but no program links it",
                "fail",
                linked[0].path,
                arch=tag,
                hint=f"{label} is built but not linked into the programs: {rebuild} from a clean build dir",
            )
            return []
        inspected = sorted({n.path.name for n in known})
        if self.broken:
            self.add(
                name,
                expected,
                f"no {' / '.join(syms)} in {', '.join(inspected)}, but libraries are missing",
                "unverifiable",
                arch=tag,
                hint="fix the dependencies check first",
            )
            return []
        if inspected and all(n.stripped and n.format == "elf" for n in known):
            self.add(
                name,
                expected,
                f"no symbols left in stripped {', '.join(inspected)}",
                "unverifiable",
                arch=tag,
                hint="verify the unstripped build dir",
            )
            return []
        self.add(
            name,
            expected,
            f"no {' / '.join(syms)} in {', '.join(inspected)}{cache_note}",
            "fail",
            arch=tag,
            hint=f"built without {label}: {rebuild}",
        )
        return []

    def check_linked(self, tag: str, prof: BackendProfile, carriers: list[BinarySlice]) -> None:
        exp = prof.expectations
        name = "linked-libraries" if prof is self.profile else f"linked-libraries:{prof.name}"
        for c in carriers:
            wanted = _needed_for(exp, c.format)
            if not wanted:
                continue
            missing = [w for w in wanted if not any(w.lower() in n.lower() for n in c.needed)]
            expected = f"{c.path.name} links {', '.join(wanted)}"
            if missing:
                rebuild = f" -D{exp.enable_option}=ON" if exp.enable_option else ""
                self.add(
                    name,
                    expected,
                    f"{c.path.name} does not link {', '.join(missing)} "
                    f"(links: {', '.join(short_library(n) for n in c.needed) or 'nothing'})",
                    "fail",
                    c.path,
                    arch=tag,
                    hint=f"{exp.label or prof.name} cannot create its device without {', '.join(missing)}: "
                    f"rebuild from a clean build dir{rebuild} (and install the system package if it is missing)",
                )
            else:
                hits = [short_library(n) for n in c.needed if any(w.lower() in n.lower() for w in wanted)]
                self.add(name, expected, f"links {', '.join(hits)}", "pass", c.path, arch=tag)

    def check_shader_library(
        self, tag: str, prof: BackendProfile, carriers: list[BinarySlice], programs: list[BinarySlice]
    ) -> None:
        exp = prof.expectations
        assert exp.embedded_section is not None
        seg, sect = exp.embedded_section
        prefix = exp.embedded_symbol_prefix
        expected = f"{seg},{sect} with {prefix}[_<kind>]_start/_end pairs, or {exp.resource_file} beside the programs"
        for c in carriers:
            size = c.section_size(seg, sect)
            if size is not None:
                starts = sorted(s for s in c.defined if s.startswith(prefix) and s.endswith("_start"))
                unpaired = [s for s in starts if s[: -len("_start")] + "_end" not in c.defined]
                kinds = [s[len(prefix) : -len("_start")].strip("_") for s in starts]
                if size == 0 or unpaired:
                    what = "is empty" if size == 0 else f"lacks the end of {', '.join(unpaired)}"
                    self.add(
                        "shader-library",
                        expected,
                        f"{seg},{sect} in {c.path.name} {what}",
                        "fail",
                        c.path,
                        arch=tag,
                        hint="the embedded library is broken: rebuild from a clean build dir",
                    )
                    continue
                if not starts:
                    layout = "start/end symbols not visible"
                elif kinds == [""]:
                    layout = f"one library ({prefix}_start/_end, older layout)"
                else:
                    layout = f"{len(kinds)} kernel libraries ({', '.join(kinds[:4])}{'…' if len(kinds) > 4 else ''})"
                self.add(
                    "shader-library",
                    expected,
                    f"embedded: {seg},{sect} {size} bytes, {layout}",
                    "pass",
                    c.path,
                    arch=tag,
                )
                continue
            if self.embed:
                self.add(
                    "shader-library",
                    expected,
                    f"{c.path.name} has no {seg},{sect} section although {exp.embed_option}=ON",
                    "fail",
                    c.path,
                    arch=tag,
                    hint="the embed step did not run: rebuild from a clean build dir",
                )
                continue
            dirs = self.resource_dirs(c, programs)
            hits = [d / exp.resource_file for d in dirs if (d / exp.resource_file).is_file()]
            if hits:
                self.add(
                    "shader-library",
                    expected,
                    f"not embedded; {self.rel(hits[0])} present",
                    "pass",
                    hits[0],
                    arch=tag,
                )
                continue
            where = self.rel(dirs[0]) if dirs else "bin"
            where = "." if where == "" else where
            self.add(
                "shader-library",
                expected,
                f"no {seg},{sect} section in {c.path.name} and no {exp.resource_file} in "
                + ", ".join(self.rel(d) + "/" for d in dirs),
                "fail",
                c.path,
                arch=tag,
                hint=f"{exp.resource_file} missing beside {where}/: embed the library "
                f"(-D{exp.embed_option}=ON) or copy {exp.resource_file} next to the programs",
            )

    def resource_dirs(self, carrier: BinarySlice, programs: list[BinarySlice]) -> list[Path]:
        # ggml-metal looks in the bundle's resources, then beside the running program (argv[0])
        dirs = [p.path.parent for p in programs] or [carrier.path.parent]
        for d in list(dirs) + [carrier.path.parent]:
            for parent in (d, *d.parents):
                if parent.name == "Contents":
                    dirs.append(parent / "Resources")
                    break
        return list(dict.fromkeys(dirs))

    def check_deployment(self, tag: str, nodes: list[BinarySlice], programs: list[BinarySlice]) -> None:
        with_minos = [(n, n.minos) for n in nodes if n.minos]
        if not with_minos:
            self.add(
                "deployment-target",
                "LC_BUILD_VERSION minos",
                "no LC_BUILD_VERSION in any file",
                "unverifiable",
                arch=tag,
            )
            return
        newest_node, newest = max(with_minos, key=lambda item: version_key(item[1]))
        limits: list[tuple[str, str]] = []
        if self.target:
            limits.append((self.target, f"the deployment target {self.target} ({self.target_source})"))
        if self.host_macos:
            limits.append((self.host_macos, f"this Mac's macOS {self.host_macos}"))
        if not limits:
            prog_minos = [p.minos for p in programs if p.minos]
            if prog_minos:
                oldest_prog = min(prog_minos, key=version_key)
                limits.append((oldest_prog, f"the programs' own minos {oldest_prog}"))
        summary = ", ".join(sorted({f"{n.path.name} {m}" for n, m in with_minos}))
        expected = "minos not newer than " + (
            " and ".join(text for _, text in limits) or "the deployment target"
        )
        for limit, text in limits:
            too_new = sorted({n.path.name for n, m in with_minos if version_key(m) > version_key(limit)})
            if too_new:
                self.add(
                    "deployment-target",
                    expected,
                    f"{', '.join(too_new)} built for macOS {newest}, newer than {text}",
                    "fail",
                    newest_node.path,
                    arch=tag,
                    hint=f"on macOS older than {newest} the Metal module does not load and llama.cpp silently "
                    f"runs on the CPU: rebuild from a clean build dir with -DCMAKE_OSX_DEPLOYMENT_TARGET="
                    f"{self.target or limit}",
                )
                return
        if self.target or self.host_macos:
            self.add(
                "deployment-target", expected, f"minos {newest} (newest of: {summary})", "pass", arch=tag
            )
        elif limits:
            self.add(
                "deployment-target",
                expected,
                f"minos {newest} everywhere ({summary}); no deployment target configured and not on a Mac",
                "pass",
                arch=tag,
            )
        else:
            self.add(
                "deployment-target",
                expected,
                f"minos {newest} ({summary})",
                "unverifiable",
                arch=tag,
                hint="no deployment target configured (--deployment-target or CMAKE_OSX_DEPLOYMENT_TARGET) "
                "and not on a Mac",
            )


def host_macos_version(plat: PlatformInfo | None = None) -> str | None:
    plat = plat or current_platform()
    if plat.name != "darwin":
        return None
    return platform.mac_ver()[0] or None


def static_checks(
    path: Path | Inputs,
    profile: BackendProfile,
    *,
    deployment_target: str | None = None,
    embed_library: bool | None = None,
    host_macos: str | None = None,
    read: Callable[[Path], tuple[BinarySlice, ...]] | None = None,
) -> StaticResult:
    """Run every static check of ``profile`` on ``path`` (see the module docstring)."""
    inputs = path if isinstance(path, Inputs) else discover(path)
    reader = read or cache(read_binary)
    checker = _Checker(
        inputs,
        profile,
        deployment_target=deployment_target,
        embed_library=embed_library,
        host_macos=host_macos,
        read=reader,
    )
    return checker.run()
