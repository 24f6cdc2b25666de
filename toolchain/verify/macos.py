"""The Mach-O side of the static checks: the shader library (embedded or beside the programs) and
the deployment target."""

from __future__ import annotations

from pathlib import Path

from ..profiles import BackendProfile
from .binaries import BinarySlice, version_key
from .checkbase import CheckerBase


class MacChecks(CheckerBase):
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
