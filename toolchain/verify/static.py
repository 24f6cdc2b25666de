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
  the running macOS, on a Mac); each file's SDK is reported beside its minos;
- ``tensor-api`` (Metal, Mach-O): whether the tree's Metal 4 tensor API could ever be used on an
  M5 by this build (SDK, deployment target, ``ggml-tensor.metallib``), the conditions read from
  the checked-out tree with file:line (:mod:`.tensor_rules`).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import VerifyError
from ..profiles import BackendEra, BackendProfile, PlatformInfo, StaticExpectations, current_platform
from .binaries import BinarySlice, binary_problem, read_binary, sniff
from .checkbase import cache_on, profiles_of, short_library
from .graph import DependencyGraph, Edge, build_graph
from .inputs import CMAKE_CACHE, Inputs, discover, read_cmake_cache
from .macos import MacChecks
from .records import Check
from .shipped_kernels import Fact
from .shipped_kernels import facts as shipped_facts
from .tensor_rules import tree_of

__all__ = ["Inputs", "StaticResult", "discover", "host_macos_version", "read_cmake_cache", "static_checks"]
# Library names that belong to the build itself (a missing one is a broken build, not a
# missing system package).
PROJECT_LIBRARY_PREFIXES = ("libggml", "libllama", "libmtmd", "libcommon")


@dataclass(frozen=True)
class StaticResult:
    checks: tuple[Check, ...]
    files: tuple[Path, ...]
    archs: tuple[str, ...]
    formats: tuple[str, ...]
    era: str = ""  # the profile's backend era read from the binaries ("arm64: x; x86_64: y" if they differ)
    shipped: tuple[Fact, ...] = ()  # what the shipped kernel library can / cannot run (static)


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


def era_of(exp: StaticExpectations, defined: frozenset[str]) -> tuple[BackendEra, str] | None:
    """The newest era whose symbols ``defined`` has, and the symbol found (None: no era's)."""
    for era in exp.eras:
        for sym in era.symbols:
            if sym in defined:
                return era, sym
    return None


def _era_text(exp: StaticExpectations, carrier: BinarySlice, how: str) -> str:
    hit = era_of(exp, carrier.defined)
    if hit is None:  # a GGML_BACKEND_DL module: `how` names it
        return f"{exp.dl_module_symbol} {how}"
    era, sym = hit
    return f"{sym} {how} (era: {era.name}, {era.what})"


def _chain_text(root: BinarySlice, chain: tuple[Edge, ...]) -> str:
    if not chain:
        return f"in {root.path.name} itself"
    return "linked: " + " -> ".join([root.path.name, *(e.name.rsplit("/", 1)[-1] for e in chain)])


class _Checker(MacChecks):
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
        eras = {a: e for a, e in self.eras.items() if e}
        era = (
            next(iter(eras.values()))
            if len(set(eras.values())) == 1
            else "; ".join(f"{a}: {e}" for a, e in eras.items())
        )
        return StaticResult(
            tuple(self.checks), tuple(slices), tuple(archs), tuple(formats), era, tuple(self.facts)
        )

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
            and any(_is_module_name(s.path, p.expectations.library_stem) for p in profiles_of(self.profile))
            and any(p.expectations.dl_module_symbol in s.defined for p in profiles_of(self.profile))
        ]
        module_graph = build_graph(modules, read=self.read) if modules else None
        self.check_dependencies(tag, graph, module_graph)
        known = {n.path: n for n in [*every, *graph.nodes, *(module_graph.nodes if module_graph else ())]}
        carriers_all: list[BinarySlice] = []
        for prof in profiles_of(self.profile):
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
        section = self.profile.expectations.embedded_section
        macho_carriers = [c for c in carriers_all if c.format == "macho"]
        if section and macho_carriers:  # the Metal backend: its tensor API (ggml-metal-device.m)
            embedded = macho_carriers[0].section_size(*section) is not None
            self.check_tensor_api(tag, macho_carriers, programs, embedded)
            # what the shipped library can and cannot run, from the build alone
            carrier = macho_carriers[0]
            self.facts.extend(shipped_facts(carrier, self.resource_dirs(carrier, programs)))

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
        syms = tuple(s for era in exp.eras for s in era.symbols)
        eras_text = "; ".join(f"{e.name}: {' / '.join(e.symbols)}" for e in exp.eras)
        expected = (
            f"the backend's symbol of one era ({eras_text}) in a file the programs link, "
            f"or {exp.dl_module_symbol} in a lib{exp.library_stem}*.so module"
        )
        dl = [
            m
            for m in modules
            if _is_module_name(m.path, exp.library_stem) and exp.dl_module_symbol in m.defined
        ]
        linked = [
            s
            for s in known
            if s.kind in ("executable", "library", "module") and set(syms) & s.defined and s not in dl
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
                (
                    module,
                    f"loadable module {module.path.name} ({exp.dl_module_symbol}) beside the programs "
                    "(era: registry, built with GGML_BACKEND_DL)",
                )
            )
        if not reached:  # linked in statically with hidden visibility: the code is there, unexported
            for carrier in known:
                hit = (
                    era_of(exp, carrier.local)
                    if carrier.kind in ("executable", "library", "module")
                    else None
                )
                if hit is not None:
                    era, sym = hit
                    found = (
                        f"{sym} defined in {carrier.path.name} but not exported (linked in with hidden "
                        f"visibility: usable by that file's own code only) (era: {era.name}, {era.what})"
                    )
                    self.add(name, expected, found, "pass", carrier.path, arch=tag)
                    if prof is self.profile:
                        self.eras[tag] = era.name
                    return [carrier]
        if reached:
            found = "; ".join(_era_text(exp, c, how) for c, how in reached)
            if prof is self.profile:
                first = era_of(exp, reached[0][0].defined)
                self.eras[tag] = first[0].name if first else "registry (GGML_BACKEND_DL module)"
            self.add(name, expected, found, "pass", reached[0][0].path, arch=tag)
            return [c for c, _ in reached]
        configured = cache_on(self.inputs.cache.get(exp.enable_option)) if exp.enable_option else None
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
        given = self.inputs.files[0] if len(self.inputs.files) == 1 and self.inputs.path.is_file() else None
        if prof is not self.profile and given is not None and not programs:
            # one library of a set (an app's Frameworks): the other backend lives in a file not given
            self.add(
                name,
                expected,
                f"{given.name} was given alone: {label} is in none of {', '.join(inspected)}; it lives in "
                f"another file (lib{exp.library_stem}*) of the set that was not given",
                "unverifiable",
                arch=tag,
                hint=f"verify the whole Contents/Frameworks folder or the build dir to check {label} too",
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
    tree: Path | None = None,
) -> StaticResult:
    """Run every static check of ``profile`` on ``path`` (see the module docstring). ``tree``: the
    llama.cpp checkout the build came from (default: CMakeCache.txt's CMAKE_HOME_DIRECTORY)."""
    inputs = path if isinstance(path, Inputs) else discover(path)
    reader = read or cache(read_binary)
    checker = _Checker(
        inputs,
        profile,
        deployment_target=deployment_target,
        embed_library=embed_library,
        host_macos=host_macos,
        read=reader,
        tree=tree_of(inputs.cache, tree),
    )
    return checker.run()
