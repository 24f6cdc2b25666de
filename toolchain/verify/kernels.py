"""The shipped-library check inside ``llama-toolchain verify``.

A build that embeds its Metal library (``__DATA,__ggml_metallib``) carries the kernel *source*;
every kernel base name the dry run's encoders ask for, per GPU-family profile, must be in it.
What "needed" means comes from the work dir the build lies in (``<work>/build/<profile>-<hash>``):

- the last coverage run's ``metal-dryrun:<profile>`` cells (``<work>/reports/coverage.json``:
  the kernels the dry run asked for on the covered models' ops, with the profile's loader
  defines), when it has them;
- otherwise the dry run of the tree's built-in test-backend-ops cases (``<work>/src``), kept in the
  dry-run program's cache dir per profile set.

Each (slice, profile) is one check ``metal-dryrun-kernels:<profile>``, ``observed_by``
``static+dry-run``: the library read from the binary, the needs from the dry run. A build outside
a work dir is matched against the trees we can fetch (:mod:`.tree_match`: the llama-cpp-python sdists
in the toolchain's cache): when the library it ships is byte-identical to one tree's, the dry run of
that tree's built-in cases says what is needed, and every check names the tree and the evidence
(``observed_by`` ``static+dry-run``). When nothing matches, one ``unverifiable`` check says so ("no
fetchable tree matches: …"); the static can / cannot-run table stands alone (nothing is assumed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import default_cache_dir
from ..core.binlayout import macho_sections
from ..core.diskfull import is_disk_full
from ..core.jsonio import atomic_write_text
from ..core.tree import has_metal_sources
from ..dryrun.library import names_in_text
from ..dryrun.run import DEFAULT_PROFILES, dry_run, program
from ..dryrun.shipped import SECTION, SEGMENT, embedded_text
from ..errors import DiskFullError, ReportError, ToolchainError
from ..log import LOG
from ..records import COVERAGE, read_data
from .binaries import binary_problem, sniff
from .records import Check, ObservedBy
from .tree_match import MatchResult, digests, match_library, unpacked

NAME = "metal-dryrun-kernels"
SOURCE_BESIDE = "ggml-metal.metal"
OBSERVED: ObservedBy = "static+dry-run"
EXPECTED = "every kernel the Metal dry run's encoders ask for on this profile is in the embedded library"


@dataclass(frozen=True)
class Needs:
    """Kernel base names needed per profile, the profile's loader defines, and where they came from."""

    kernels: Mapping[str, frozenset[str]]
    defines: Mapping[str, Mapping[str, str]]
    source: str
    # the fetchable tree whose library the build ships byte for byte ("" otherwise): then a kernel
    # the library lacks is that tree's own gap (upstream's), not a mismatch of library and host
    matched_tree: str = ""


def work_dir_of(path: Path) -> Path | None:
    """The toolchain work dir a build lies in (``<work>/build/<name>/…``), if any."""
    for p in (path.resolve(), *path.resolve().parents):
        if p.parent.name == "build" and (
            (p.parent.parent / "reports").is_dir() or (p.parent.parent / "src").is_dir()
        ):
            return p.parent.parent
    return None


def needs_from_coverage(report: Path) -> Needs | None:
    """The kernels the last coverage run's dry-run cells asked for, or None when it has none."""
    try:
        data = read_data(report, COVERAGE)
    except ReportError:
        return None
    kernels: dict[str, set[str]] = {}
    defines: dict[str, dict[str, str]] = {}
    models: set[str] = set()
    for cell in data.get("cells", []):
        for check in cell.get("checks", []) if str(cell.get("observed_by")) == "dry-run" else []:
            details = check.get("details", {})
            if "kernels_needed" not in details:
                continue
            profile = str(details.get("profile", ""))
            kernels.setdefault(profile, set()).update(str(k) for k in details["kernels_needed"])
            defines[profile] = {str(k): str(v) for k, v in details.get("library_defines", {}).items()}
            models.add(str(cell.get("model", "")))
    if not kernels:
        return None
    commit = str(data.get("source", {}).get("commit", ""))[:12]
    return Needs(
        {p: frozenset(k) for p, k in kernels.items()},
        defines,
        f"the dry run of the last coverage run's {len(models)} model(s) ({report}, tree {commit})",
    )


def needs_from_builtin(
    tree: Path,
    cache_dir: Path,
    work: Path,
    why: str = "no coverage run with dry-run columns in this work dir",
) -> Needs:
    """The kernels the dry run asks for on all of the tree's built-in cases (cached per program)."""
    prog = program(tree, cache_dir)
    cached = prog.executable.parent.parent / f"needed-builtin-{'-'.join(DEFAULT_PROFILES)}.json"
    if not cached.is_file():
        run = dry_run(tree, cache_dir, work, batches=[("built-in", None)])
        kernels: dict[str, set[str]] = {}
        for batch in run.runs:
            for r in batch.results:
                kernels.setdefault(r.profile, set()).update(r.kernels_needed)
        defines = {p.profile: {d.name: d.value for d in p.library_defines if d.active} for p in run.profiles}
        record = {
            "commit": run.commit,
            "kernels": {p: sorted(k) for p, k in kernels.items()},
            "defines": defines,
        }
        atomic_write_text(cached, json.dumps(record, indent=1) + "\n")  # a full disk leaves no half of it
    record = json.loads(cached.read_text(encoding="utf-8"))
    return Needs(
        {p: frozenset(k) for p, k in record["kernels"].items()},
        record["defines"],
        f"the dry run of the tree's built-in test-backend-ops cases ({tree}, commit {record['commit'][:12]}; "
        f"{why})",
    )


def needs_from_match(
    path: Path,
    libs: Sequence[tuple[Path, str, str]],
    files: Sequence[Path],
    sdists_dir: Path,
    cache_dir: Path,
) -> tuple[Needs | str, MatchResult]:
    """The dry run of the fetchable tree whose library the build ships byte for byte, or why none."""
    trees = digests(sdists_dir, cache_dir / "tree-match" / "index")
    f, arch, _text = libs[0]
    raw = dict(macho_sections(f.read_bytes(), SEGMENT, SECTION))[arch]  # the bytes, not the decoded text
    result = match_library(raw, "embedded", f"{f.name} ({arch})", trees, files)
    if result.match is None:
        return (
            f"{path} is not a build of a toolchain work dir (<work>/build/<name>), and {result.why} "
            f"(sdists in {sdists_dir}): the static table of the shipped library stands alone",
            result,
        )
    digest = result.match.digest
    try:
        tree = unpacked(digest, cache_dir / "tree-match" / "trees")
        LOG.info(f"{f.name}: its Metal library is {digest.name}'s; dry run of that tree's built-in cases")
        needs = needs_from_builtin(
            tree,
            cache_dir,
            cache_dir / "tree-match" / "work" / digest.version,
            why="its library matched byte for byte",
        )
    except DiskFullError:
        raise  # the disk's problem, never "unverifiable" for the build
    except ToolchainError as exc:
        return (
            f"the library matches {digest.name} but the dry run cannot be made for it: {exc.message}",
            result,
        )
    except OSError as exc:
        if is_disk_full(exc):
            raise
        return f"the library matches {digest.name} but its tree cannot be unpacked: {exc}", result
    also = f" (the same library text: {', '.join(result.match.also)})" if result.match.also else ""
    return (
        Needs(
            needs.kernels,
            needs.defines,
            f"dry-run with the tree {digest.name}{also}, matched by: {'; '.join(result.match.evidence)}; "
            + needs.source,
            digest.name,
        ),
        result,
    )


def _needs(path: Path) -> Needs | str:
    """What the library must hold, or why that cannot be known here."""
    work = work_dir_of(path)
    if work is None:
        return f"{path} is not a build of a toolchain work dir (<work>/build/<name>): no tree nor coverage run to ask"
    found = needs_from_coverage(work / "reports" / COVERAGE.name)
    if found is not None:
        return found
    tree = work / "src"
    if not has_metal_sources(tree):
        return f"no coverage run with dry-run columns in {work / 'reports'} and no Metal backend sources in {tree}"
    try:
        return needs_from_builtin(tree, default_cache_dir(), work / "dryrun")
    except DiskFullError:
        raise  # the disk's problem, never "unverifiable" for the build
    except ToolchainError as exc:
        return f"the dry run cannot be made for {tree}: {exc.message}"


def _hint(needs: Needs, missing: Sequence[str]) -> str:
    if not missing:
        return ""
    if needs.matched_tree:
        return (
            f"upstream's gap, not this build's: {needs.matched_tree}'s own encoders ask for kernels its own library "
            "never had (predicted by the dry run, not seen on a device); a model whose graph reaches them fails on a "
            "Mac with `Function … was not found in the library`: update to a llama.cpp whose library has them or "
            "whose supports_op declines those cases"
        )
    return (
        "the embedded library and the host code come from different trees: rebuild both from one checkout "
        "(a Mac fails with `Function … was not found in the library`)"
    )


def _match_beside(
    path: Path, readable: Sequence[Path], sdists_dir: Path | None, cache_dir: Path | None
) -> MatchResult | None:
    """A Metal source beside the binaries (compiled at run time) against the trees' ggml-metal.metal
    as it is: the match is reported (``tree_match``); no check is made of it."""
    if sdists_dir is None or work_dir_of(path) is not None:
        return None
    beside = sorted({f.parent / SOURCE_BESIDE for f in readable if (f.parent / SOURCE_BESIDE).is_file()})
    if not beside:
        return None
    trees = digests(sdists_dir, (cache_dir or default_cache_dir()) / "tree-match" / "index")
    return match_library(beside[0].read_bytes(), "beside", beside[0].name, trees, readable)


def shipped_library_checks(
    path: Path, files: Sequence[Path], sdists_dir: Path | None = None, cache_dir: Path | None = None
) -> tuple[list[Check], MatchResult | None]:
    """One check per (slice, profile) of every Mach-O in ``files`` that embeds its Metal library,
    and the tree match when a build outside a work dir was matched against ``sdists_dir``."""

    readable = [
        f for f in files if sniff(f) in ("macho", "fat") and not binary_problem(f)
    ]  # else: `readable`
    libs = [(f, arch, text) for f in readable for arch, text in embedded_text(f)]
    if not libs:
        return [], _match_beside(path, readable, sdists_dir, cache_dir)
    needs = _needs(path)
    matched: MatchResult | None = None
    if isinstance(needs, str) and work_dir_of(path) is None and sdists_dir is not None:
        needs, matched = needs_from_match(path, libs, files, sdists_dir, cache_dir or default_cache_dir())
    if isinstance(needs, str):
        return [
            Check(
                NAME,
                EXPECTED,
                needs,
                str(libs[0][0]),
                "unverifiable",
                OBSERVED,
                hint="verify the build in its work dir after `llama-toolchain coverage` (or with its checkout)",
            )
        ], matched
    checks: list[Check] = []
    for f, arch, text in libs:
        multi = sum(1 for g, _a, _t in libs if g == f) > 1
        for profile in sorted(needs.kernels):
            want = needs.kernels[profile]
            missing = sorted(want - names_in_text(text, needs.defines.get(profile, {})))
            found = (
                f"{SEGMENT},{SECTION} lacks {len(missing)} of {len(want)} kernels needed on {profile}: "
                + ", ".join(missing[:12])
                + (" …" if len(missing) > 12 else "")
                if missing
                else f"{SEGMENT},{SECTION} holds all {len(want)} kernels needed on {profile}"
            )
            checks.append(
                Check(
                    f"{NAME}:{profile}",
                    EXPECTED,
                    f"{found} (needs: {needs.source})",
                    str(f),
                    "fail" if missing else "pass",
                    OBSERVED,
                    arch=arch if multi else "",
                    hint=_hint(needs, missing),
                    evidence=tuple(missing),
                )
            )
    return checks, matched
