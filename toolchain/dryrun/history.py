"""``dryrun history``: the version where a Metal crash came or went.

The cases (a corpus TOML of ``[[case]]`` tables with a ``[case.replay]`` spec, or a sweep report's
classes by their minimal case) are written for each tree in that tree's own test-file format and
dry-run per profile. Trees are llama-cpp-python sdists between two versions (downloaded once and
unpacked into the cache) or commits of a git repository between two refs (exported once). The
versions are bisected: both ends are dry-run, and an interval is split while a case's state on
some profile differs between its ends, so each change is found with about log2(N) dry runs per
change instead of N. ``--every`` dry-runs every version (a crash that came and went inside an
interval whose ends agree is only seen that way).

A state is ``crash`` (missing-kernel, encoder-abort, over-limit), ``silent`` (encoded, or
supports_op declines: the CPU runs it on a Mac), or why it could not be judged (no dry run for
this tree, the case cannot be written for it).
"""

from __future__ import annotations

import re
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from ..config import Settings
from ..core import jsonin, tomlin
from ..core.git import run_git
from ..core.jsonio import atomic_write_text
from ..core.locking import exclusive
from ..errors import DryRunUnavailableError, SdistError, ToolchainError, UsageError
from ..log import LOG
from ..source.sdist import download, extract_vendor_tree, list_sdists
from .contradict import CANNOT_ENCODE, detail
from .replay import NotReplayable, case_line, spec_problem
from .run import dry_run

CRASH, SILENT = "crash", "silent"
_CASE_ID = re.compile(r"^[A-Za-z0-9][\x20-\x7e]{0,119}$")
_SDIST = re.compile(r"^llama_cpp_python-(?P<v>[^-]+)\.tar\.gz$", re.I)


@dataclass(frozen=True)
class HistoryCase:
    id: str
    spec: dict[str, Any]  # replay.case_line's input: op, dst_type, srcs, params


@dataclass(frozen=True)
class Point:
    version: str  # sdist version or commit
    tree: str
    states: dict[str, dict[str, str]]  # case id -> profile -> crash | silent | not judged: why
    details: dict[str, dict[str, str]]  # case id -> profile -> the verdict and kernel / abort


@dataclass(frozen=True)
class Transition:
    case: str
    profile: str
    first_crash: str  # first version (of those dry-run) where the case crashes, "" if none
    fixed_in: str  # first version after a crash where it is silent again, "" if never
    states: tuple[str, ...]  # the state at each dry-run version, in order


@dataclass(frozen=True)
class History:
    observed_by: str
    source: str  # "pypi-sdist" or the git repository
    versions: tuple[str, ...]  # every version in the range, in order
    checked: tuple[str, ...]  # the versions that were dry-run (bisection skips the rest)
    profiles: tuple[str, ...]
    cases: tuple[HistoryCase, ...]
    points: tuple[Point, ...]
    transitions: tuple[Transition, ...]
    note: str


# --- the cases -----------------------------------------------------------------------------------
MAX_CASES = 2000  # a sweep report has a few dozen classes, the corpus a few dozen cases
MAX_CASES_BYTES = 8 << 20
_HINT = "give a corpus TOML ([[case]] with an id and a [case.replay] spec) or a dryrun-sweep.json"


def load_cases(path: Path) -> tuple[HistoryCase, ...]:
    """A corpus TOML (``[[case]]`` with ``id`` and a ``[case.replay]`` table) or a sweep report.
    Someone else's file: bounded in size and count, every spec checked (``replay.spec_problem``)
    before a tree is fetched, errors name the case."""
    raw: list[tuple[str, Any]] = []
    try:
        if path.suffix == ".json":
            data = jsonin.read(path, max_bytes=MAX_CASES_BYTES)
            classes = data["classes"] if isinstance(data, dict) else None
            if not isinstance(classes, list):
                raise UsageError(f"{path}: not a dryrun-sweep.json report (no list of classes)", _HINT)
            for i, c in enumerate(classes, start=1):
                if not isinstance(c, dict):
                    raise UsageError(f"{path}: class {i} is not an object", _HINT)
                if c.get("verdict") in CANNOT_ENCODE:
                    minimal = c.get("minimal")
                    spec = minimal.get("spec") if isinstance(minimal, dict) else None
                    raw.append((f"class-{i} {c['verdict']} {str(c.get('what', ''))}"[:120], spec))
        else:
            data = tomlin.read(path, MAX_CASES_BYTES)
            cases = data.get("case", [])
            if not isinstance(cases, list):
                raise UsageError(f"{path}: `case` must be an array of tables ([[case]])", _HINT)
            for i, c in enumerate(cases, start=1):
                if isinstance(c, dict) and "replay" in c and c.get("replayable", True) is not False:
                    raw.append((str(c.get("id", f"case-{i}")), c["replay"]))
    except OSError as exc:
        raise UsageError(f"cases file {path}: cannot be read: {exc}", _HINT) from None
    except (jsonin.JSONInputError, tomlin.TOMLInputError) as exc:
        raise UsageError(f"cases file {path}: {exc}", _HINT) from None
    if not raw:
        raise UsageError(f"{path}: no case to replay", "each [[case]] needs an id and a [case.replay] spec")
    if len(raw) > MAX_CASES:
        raise UsageError(f"{path}: {len(raw)} cases, more than {MAX_CASES}", "split the file")
    out: list[HistoryCase] = []
    seen: set[str] = set()
    for case_id, spec in raw:
        shown = case_id.encode("unicode_escape").decode("ascii")[:120]
        if not _CASE_ID.match(case_id):
            raise UsageError(
                f"{path}: case id {shown!r} must start with a letter or digit and be printable",
                "ids name the cases in the report and the test file",
            )
        if case_id in seen:
            raise UsageError(f"{path}: case id {shown!r} appears twice", "give each case its own id")
        seen.add(case_id)
        if problem := spec_problem(spec):
            raise UsageError(f"{path}: case {shown}: {problem}", _HINT)
        out.append(HistoryCase(case_id, dict(spec)))
    return tuple(out)


# --- the trees -----------------------------------------------------------------------------------
def sdist_versions(settings: Settings, low: str, high: str) -> list[str]:
    """The llama-cpp-python versions from ``low`` to ``high`` (inclusive), from the index, or from the
    sdists already in the cache when the index cannot be read."""
    try:
        lo, hi = Version(low), Version(high)
    except InvalidVersion as exc:
        raise UsageError(f"not a version: {exc}", "give --from 0.3.20 --to 0.3.36") from None
    if lo > hi:
        raise UsageError(f"--from {low} is after --to {high}", "give the older version first")
    try:
        found = {i.version for i in list_sdists(settings.index_url, settings.network_timeout)}
    except SdistError as exc:
        LOG.warn(f"{exc.message}: using the sdists in {settings.sdists_dir}")
        found = {m["v"] for p in settings.sdists_dir.glob("*.tar.gz") if (m := _SDIST.match(p.name))}
    out = []
    for v in found:
        try:
            if lo <= Version(v) <= hi:
                out.append(v)
        except InvalidVersion:
            continue
    return sorted(out, key=Version)


def sdist_tree(settings: Settings, version: str) -> Path:
    dest = settings.cache_dir / "dryrun" / "trees" / f"sdist-{version}"
    with exclusive(settings.cache_dir / "dryrun" / f".tree-sdist-{version}.lock", wait=600):
        done = dest / "tree"
        if (done / "ggml").is_dir():
            return done
        sdist = settings.sdists_dir / f"llama_cpp_python-{version}.tar.gz"
        if not sdist.is_file():
            infos = [
                i for i in list_sdists(settings.index_url, settings.network_timeout) if i.version == version
            ]
            if not infos:
                raise UsageError(f"no sdist llama-cpp-python=={version} on {settings.index_url}", "")
            sdist = download(infos[0], settings)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            tree, _changelog = extract_vendor_tree(sdist, Path(tmp))
            tree.rename(done)
        return done


def git_versions(repo: Path, low: str, high: str) -> list[str]:
    text = run_git(repo, ["rev-list", "--first-parent", "--reverse", f"{low}^..{high}", "--"], timeout=120)
    return [c for c in text.split() if c]


def git_tree(settings: Settings, repo: Path, commit: str) -> Path:
    dest = settings.cache_dir / "dryrun" / "trees" / f"git-{commit}"
    with exclusive(settings.cache_dir / "dryrun" / f".tree-git-{commit}.lock", wait=600):
        if not (dest / "ggml").is_dir():
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "tree.tar"
                with archive.open("wb") as fh:
                    run_git(repo, ["archive", "--format=tar", commit], timeout=600, stdout=fh)
                dest.mkdir(parents=True, exist_ok=True)
                with tarfile.open(archive) as tar:
                    tar.extractall(dest, filter="data")
    return dest


# --- one point -----------------------------------------------------------------------------------
def check_point(
    version: str,
    tree: Path,
    cases: Sequence[HistoryCase],
    settings: Settings,
    profiles: Sequence[str] | None,
) -> Point:
    states: dict[str, dict[str, str]] = {}
    details: dict[str, dict[str, str]] = {}
    lines: list[tuple[HistoryCase, str]] = []
    for c in cases:
        try:
            lines.append((c, case_line(tree, c.spec, c.id.split()[0])))
        except NotReplayable as exc:
            states[c.id] = {"*": f"not judged: {exc}"}
    work = settings.work_dir / "dryrun" / "history"
    if lines:
        path = work / "cases.txt"
        atomic_write_text(path, "\n".join(line for _c, line in lines) + "\n")
        try:
            run = dry_run(tree, settings.cache_dir, work, batches=[("history", path)], profiles=profiles)
        except DryRunUnavailableError as exc:
            for c, _line in lines:
                states[c.id] = {"*": f"not judged: no dry run for this tree ({exc.message[:200]})"}
        else:
            for p in (p for b in run.runs for p in b.results):
                by_index = {f.index: f for f in (*p.findings, *p.unsupported)}
                for i, (c, _line) in enumerate(lines, start=1):
                    f = by_index.get(i)
                    verdict = f.verdict if f else "pass"
                    states.setdefault(c.id, {})[p.profile] = CRASH if verdict in CANNOT_ENCODE else SILENT
                    what = (detail(f) if verdict in CANNOT_ENCODE else f.rejected_node) if f else ""
                    details.setdefault(c.id, {})[p.profile] = f"{verdict}: {what}".rstrip(": ")
    return Point(version, str(tree), states, details)


def _state(point: Point, case: str, profile: str) -> str:
    got = point.states.get(case, {})
    return got.get(profile) or got.get("*", "not judged")


def _differs(a: Point, b: Point, cases: Sequence[HistoryCase], profiles: Sequence[str]) -> bool:
    return any(_state(a, c.id, p) != _state(b, c.id, p) for c in cases for p in profiles)


def history(
    versions: Sequence[str],
    tree_of: Callable[[str], Path],
    cases: Sequence[HistoryCase],
    settings: Settings,
    profiles: Sequence[str],
    *,
    every: bool = False,
    source: str = "pypi-sdist",
) -> History:
    if not versions:
        raise UsageError("no version in the range", "check --from/--to")
    points: dict[int, Point] = {}

    def at(i: int) -> Point:
        if i not in points:
            LOG.info(f"history: dry run of {versions[i]} ({len(points) + 1} trees so far)")
            try:
                tree = tree_of(versions[i])
            except ToolchainError as exc:
                points[i] = Point(
                    versions[i], "", {c.id: {"*": f"not judged: {exc.message}"} for c in cases}, {}
                )
                return points[i]
            points[i] = check_point(versions[i], tree, cases, settings, profiles)
        return points[i]

    if every:
        for i in range(len(versions)):
            at(i)
    else:
        stack = [(0, len(versions) - 1)]
        while stack:
            lo, hi = stack.pop()
            if hi - lo <= 1 or not _differs(at(lo), at(hi), cases, profiles):
                at(lo), at(hi)
                continue
            mid = (lo + hi) // 2
            at(mid)
            stack += [(mid, hi), (lo, mid)]
    order = sorted(points)
    transitions: list[Transition] = []
    for c in cases:
        for p in profiles:
            states = tuple(_state(points[i], c.id, p) for i in order)
            first = next((versions[i] for i, s in zip(order, states, strict=True) if s == CRASH), "")
            fixed = ""
            if first:
                start = order.index(versions.index(first))
                fixed = next(
                    (versions[order[j]] for j in range(start, len(order)) if states[j] == SILENT),
                    "",
                )
            transitions.append(Transition(c.id, p, first, fixed, states))
    return History(
        "dry-run",
        source,
        tuple(versions),
        tuple(versions[i] for i in order),
        tuple(profiles),
        tuple(cases),
        tuple(points[i] for i in order),
        tuple(transitions),
        "bisected: versions between two checked ones whose states agree were not dry-run"
        if not every
        else "every version dry-run",
    )


def table_lines(h: History) -> list[str]:
    out = [
        f"dry-run history over {len(h.versions)} versions ({h.versions[0]} … {h.versions[-1]}), "
        f"{len(h.checked)} dry-run: {', '.join(h.checked)}"
    ]
    by_case: dict[str, list[Transition]] = {}
    for t in h.transitions:
        by_case.setdefault(t.case, []).append(t)
    for case, ts in by_case.items():
        parts = []
        for t in ts:
            if t.first_crash:
                parts.append(
                    f"{t.profile}: crashes from {t.first_crash}"
                    + (f", fixed in {t.fixed_in}" if t.fixed_in else ", not fixed in range")
                )
            else:
                judged = [s for s in t.states if s in (CRASH, SILENT)]
                parts.append(
                    f"{t.profile}: " + ("no crash" if judged else (t.states[0] if t.states else "not judged"))
                )
        out.append(f"  {case}: " + "; ".join(parts))
    return out


def sdist_source(settings: Settings) -> Callable[[str], Path]:
    return lambda v: sdist_tree(settings, v)


def git_source(settings: Settings, repo: Path) -> Callable[[str], Path]:
    return lambda c: git_tree(settings, repo, c)
