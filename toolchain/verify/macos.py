"""The Mach-O side of the static checks: the shader library (embedded or beside the programs) and
the deployment target."""

from __future__ import annotations

from pathlib import Path

from ..profiles import BackendProfile
from .binaries import BinarySlice, version_key
from .checkbase import CheckerBase
from .tensor_rules import DEVICE_M, Condition, TensorRules, read_tensor_rules

M5 = "Apple M5"  # the GPU name an M5 reports (the tree's device-name test is run against it)


def _sdk_text(node: BinarySlice) -> str:
    return f" (SDK {node.sdk})" if node.sdk else " (SDK not recorded)"


def _older(have: str | None, need: str) -> bool:
    return have is not None and version_key(have) < version_key(need)


def _cites(conds: tuple[Condition, ...] | list[Condition]) -> str:
    return ", ".join(dict.fromkeys(c.source for c in conds))


class MacChecks(CheckerBase):
    def check_shader_library(
        self, tag: str, prof: BackendProfile, carriers: list[BinarySlice], programs: list[BinarySlice]
    ) -> None:
        exp = prof.expectations
        assert exp.embedded_section is not None
        seg, sect = exp.embedded_section
        prefix = exp.embedded_symbol_prefix
        resources = " or ".join(exp.resource_files)
        expected = f"{seg},{sect} with {prefix}[_<kind>]_start/_end pairs, or {resources} beside the programs"
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
            hits = [d / r for d in dirs for r in exp.resource_files if (d / r).is_file()]
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
                f"no {seg},{sect} section in {c.path.name} and no {resources} in "
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
                "LC_BUILD_VERSION (or LC_VERSION_MIN_MACOSX) minos",
                "no LC_BUILD_VERSION or LC_VERSION_MIN_MACOSX in any file",
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
        summary = ", ".join(sorted({f"{n.path.name} {m}" + _sdk_text(n) for n, m in with_minos}))
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

    # ------------------------------------------------------------------------------------------------
    def check_tensor_api(
        self, tag: str, carriers: list[BinarySlice], programs: list[BinarySlice], embedded: bool
    ) -> None:
        """Could this build ever use the tree's Metal 4 tensor API on an M5? Only what the tree
        ties to the binary is judged (SDK, deployment target, the tensor metallib); the run-time
        conditions (GPU family, device name, macOS) are listed, not judged."""
        name, expected = "tensor-api", "a build an M5 can use the tree's tensor API with (read from the tree)"
        if self.tree is None:
            self.add(
                name,
                "the tensor API's conditions read from the llama.cpp tree",
                "no llama.cpp tree to read them from",
                "unverifiable",
                arch=tag,
                hint="give the checkout with --tree, or verify the build dir (its CMakeCache.txt names it)",
            )
            return
        if not (self.tree / DEVICE_M).is_file():
            self.add(
                name,
                "the tensor API's conditions read from the llama.cpp tree",
                f"{self.tree} has no {DEVICE_M}: not a llama.cpp tree with a Metal backend",
                "unverifiable",
                arch=tag,
                hint="give the checkout the build was made from with --tree",
            )
            return
        rules = read_tensor_rules(self.tree)
        if not rules.has_tensor_api:
            self.add(name, expected, f"{rules.why_none}: nothing to use on an M5", "pass", arch=tag)
            return
        carrier = carriers[0]
        reasons = self._tensor_blockers(rules, carrier, programs, embedded)
        have = f"{carrier.path.name}: minos {carrier.minos or '?'}, SDK {carrier.sdk or 'not recorded'}, " + (
            "library embedded" if embedded else "library not embedded"
        )
        if reasons:
            self.add(
                name,
                expected,
                f"{have}: never uses the tensor API on an M5: {'; '.join(reasons)}",
                "fail",
                carrier.path,
                arch=tag,
                hint="on an M5 this build silently runs without the tensor API: rebuild with Xcode 26's SDK "
                "(and, not embedded, ship the ggml-tensor.metallib it builds beside default.metallib)",
            )
            return
        unknown = [c for c in rules.of("sdk", embedded) + rules.of("minos", embedded) if c.applies == "all"]
        if unknown and (carrier.sdk is None or carrier.minos is None):
            self.add(
                name,
                expected,
                f"{have}: the tree's conditions ({_cites(unknown)}) need versions the binary does not record",
                "unverifiable",
                carrier.path,
                arch=tag,
            )
            return
        label = {"family": "GPU family {}", "runtime-os": "macOS {}"}
        run_time = [c for c in rules.conditions if c.what in label] + list(rules.of("device-name", embedded))
        needs = [label[c.what].format(c.value) for c in run_time if c.what in label]
        if rules.of("device-name", embedded):
            needs.append(
                f"a GPU name containing {'/'.join(c.value for c in rules.of('device-name', embedded))}"
            )
        self.add(
            name,
            expected,
            f"{have}: nothing in it rules the tensor API out; at run time the tree also needs "
            f"{', '.join(needs)} ({_cites(run_time)})",
            "pass",
            carrier.path,
            arch=tag,
        )

    def _tensor_blockers(
        self, rules: TensorRules, carrier: BinarySlice, programs: list[BinarySlice], embedded: bool
    ) -> list[str]:
        """Why the tree would never turn the tensor API on for this binary on an M5 ([] if nothing)."""
        reasons: list[str] = []
        names = rules.of("device-name", embedded)
        if names and not any(c.value in M5 for c in names):
            reasons.append(
                f"the tree enables it only for devices named {'/'.join(c.value for c in names)} ({_cites(names)})"
            )
        for c in rules.of("sdk", embedded):
            if c.applies == "all" and _older(carrier.sdk, c.value):
                reasons.append(
                    f"SDK {carrier.sdk} is older than the {c.value} the tree requires ({c.source})"
                )
        for c in rules.of("minos", embedded):
            if _older(carrier.minos, c.value):
                reasons.append(
                    f"deployment target {carrier.minos} is older than the {c.value} the tree requires ({c.source})"
                )
        for lib in rules.of("metallib", embedded):
            dirs = self.resource_dirs(carrier, programs)
            if any((d / lib.value).is_file() for d in dirs):
                continue
            why = f"no {lib.value} in {', '.join(self.rel(d) + '/' for d in dirs)} (loaded at {lib.source})"
            old = [
                c
                for c in rules.of("sdk", embedded)
                if c.applies == "not-embedded" and _older(carrier.sdk, c.value)
            ]
            if old:
                why += f"; with SDK {carrier.sdk} the tree never builds it (needs {old[0].value}, {old[0].source})"
            reasons.append(why)
        return reasons
