"""Which fetchable llama.cpp tree a shipped build's Metal library comes from: exact matches only.

The trees we can fetch are the llama.cpp trees the llama-cpp-python sdists vendor (the ones in the
toolchain's sdist cache, ``llama-toolchain source --pypi …`` puts them there). For each one this
reads, without unpacking the whole sdist:

- what the tree's own embed step (``GGML_METAL_EMBED_LIBRARY``) writes into ``__DATA,__ggml_metallib``,
  read from its ``CMakeLists.txt`` and applied as written: the ``sed -e "/PATTERN/r ${FILE}" -e
  "/PATTERN/d"`` commands in order on the ``set(METALLIB_SOURCE …)`` file (one-file trees), or, for
  the trees with one piece per ``kernels/*.metal`` file (0.3.36), per ``METALLIB_KERNEL_SOURCES``
  entry in order: the headers its ``file(STRINGS … REGEX)`` / ``list(APPEND HEADERS_FOR_SRC …)``
  rules add, the file, the step's ``sed -e "/…/d"`` deletions and the inlining; the sha256 of the
  result (for a per-kernel-file tree, of its pieces in link order);
- the sha256 of ``ggml-metal.metal`` as it is (what a build without the embed copies beside it);
- its ggml version (``ggml/CMakeLists.txt``) and the llama.cpp commit its CHANGELOG names.

A build matches a tree only when the library text it ships is byte-identical (sha256) to that
tree's. The ggml version and commit strings in the build's files are reported beside it as
agreeing or not (a different commit with an identical library is said so), never used alone.
Nothing here was observed on a device.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from ..core.binlayout import MalformedBinary, macho_sections, read_whole
from ..core.jsonio import atomic_write_text
from ..core.locking import exclusive
from ..source.sdist import extract_vendor_tree, upstream_commit_from_changelog

SDIST_GLOB = "llama_cpp_python-*.tar.gz"
VENDOR = PurePosixPath("vendor/llama.cpp")
# the files the embed step and the version read (relative to the vendored tree)
_WANTED = re.compile(
    r"^ggml/(?:CMakeLists\.txt|src/(?:CMakeLists\.txt|ggml-common\.h|ggml-metal\.metal|ggml-metal/(?:kernels/)?[^/]+))$|^(?:CMakeLists\.txt|ggml-common\.h|ggml-metal\.metal)$"
)
_MAX_MEMBER = 8 << 20
_SET = re.compile(r'set\(\s*(\w+)\s+"\$\{CMAKE_CURRENT_SOURCE_DIR\}/([^"$]+)"\s*\)')
_SED = re.compile(
    r"""COMMAND\s+sed\s+-e\s+(["'])/(?P<pat>.+?)/r\s+\$\{(?P<var>\w+)\}\1\s+-e\s+(["'])/(?P=pat)/d\4"""
)
_VERSION = re.compile(r"^set\(GGML_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)\)", re.M)
INDEX_VERSION = 4

Reader = Callable[[str], bytes | None]


@dataclass(frozen=True)
class TreeDigest:
    """What one fetchable tree's Metal library is, by content."""

    name: str  # "llama-cpp-python 0.3.31 sdist"
    version: str  # the sdist's version
    sdist: str  # path of the sdist
    ggml_version: str  # ggml/CMakeLists.txt GGML_VERSION_* ("" before it had one)
    commit: str  # the llama.cpp commit the sdist's CHANGELOG names for this version ("" if none)
    layout: str  # "single-file", "kernel-files" (not emulated), "none" (no Metal library source)
    embed_sha256: str  # of the text the embed step writes ("" when not emulated)
    embed_bytes: int
    source_sha256: str  # of ggml-metal.metal as it is ("" without one)
    embed_how: str  # the embed step as read from the tree (file and the sed steps), or why not


@dataclass(frozen=True)
class TreeMatch:
    digest: TreeDigest
    evidence: tuple[str, ...]  # why it is this tree (exact facts), then what agrees or differs
    also: tuple[str, ...] = ()  # other trees with the same library text


@dataclass(frozen=True)
class MatchResult:
    match: TreeMatch | None
    compared: tuple[str, ...]  # names of the trees compared by sha256
    not_compared: tuple[str, ...]  # names (and why) of the trees whose embed step is not emulated
    why: str  # when nothing matched: what was compared, in one line

    def describe(self) -> str:
        if self.match is None:
            return self.why
        m = self.match
        return f"tree {m.digest.name}: " + "; ".join(m.evidence)


# --- the embed step, read from the tree ---------------------------------------------------------
def _sed_r(text: str, pattern: str, insert: str) -> str:
    """``sed -e "/pattern/r FILE" -e "/pattern/d"``: each matching line replaced by FILE's text."""
    rx = re.compile(pattern.replace('\\"', '"').replace("\\#", "#"))
    return "".join(insert if rx.search(line) else line for line in text.splitlines(keepends=True))


def embed_text(read: Reader) -> tuple[str, bytes | None, str]:
    """(layout, the embedded text the tree's build writes or None, how it was read)."""
    for cmake_rel in ("ggml/src/ggml-metal/CMakeLists.txt", "ggml/src/CMakeLists.txt", "CMakeLists.txt"):
        raw = read(cmake_rel)
        if raw is None:
            continue
        cmake = raw.decode("utf-8", "replace")
        if "__ggml_metallib" not in cmake:
            continue
        base = PurePosixPath(cmake_rel).parent
        if re.search(r"foreach\s*\(\s*src\s+\$\{METALLIB_KERNEL_SOURCES\}", cmake):
            return kernel_files_embed(read, cmake_rel, cmake)
        files = {var: str(PurePosixPath(*(base / rel).parts)) for var, rel in _SET.findall(cmake)}
        files = {v: _normalise(p) for v, p in files.items()}
        src_rel = files.get("METALLIB_SOURCE")
        steps = [(m["pat"], m["var"]) for m in _SED.finditer(cmake)]
        if not src_rel or not steps:
            return "none", None, f"{cmake_rel}: no METALLIB_SOURCE / sed embed step found"
        src = read(src_rel)
        if src is None:
            return "none", None, f"{src_rel} absent"
        text = src.decode("utf-8")
        for pat, var in steps:
            ins = read(files.get(var, ""))
            if ins is None:
                return "none", None, f"{cmake_rel}: the embed step inlines ${{{var}}}, not in the tree"
            text = _sed_r(text, pat, ins.decode("utf-8"))
        how = f"{cmake_rel}: {src_rel}" + "".join(f" with /{p}/ -> {files[v]}" for p, v in steps)
        return "single-file", text.encode("utf-8"), how
    return "none", None, "no CMakeLists.txt with the __ggml_metallib embed step"


_SET_LIST = re.compile(r"^\s*set\(\s*(\w+)\s+([^)]*)\)", re.M)
_HAS = re.compile(
    r'file\(STRINGS\s+\$\{SRC\}\s+(\w+)\s+REGEX\s+"#include \\"([^"\\]+(?:\\\\?\.[^"\\]+)*)\\""\)'
)
_APPEND = re.compile(r"if\s*\(\s*(\w+)\s*\)\s*list\(APPEND\s+HEADERS_FOR_SRC\s+\$\{(\w+)\}\s*\)")
_DELETE = re.compile(r'-e\s+"/((?:[^"\\]|\\.)+)/d"')


def kernel_files_embed(read: Reader, cmake_rel: str, cmake: str) -> tuple[str, bytes | None, str]:
    """The embed step of the per-kernel-file trees (0.3.36): for each ``METALLIB_KERNEL_SOURCES``
    file in order, ``cat`` the headers it includes (the ``file(STRINGS … REGEX)`` / ``list(APPEND
    HEADERS_FOR_SRC …)`` rules) and the file, delete the lines of the step's ``sed -e "/…/d"``,
    inline with the ``/…/r ${VAR}`` steps; the pieces in that order (the objects' link order)."""
    base = PurePosixPath(cmake_rel).parent
    values: dict[str, list[str]] = {}
    for name, body in _SET_LIST.findall(cmake):
        out: list[str] = []
        for word in body.split():
            word = word.strip('"')
            if word.startswith("${CMAKE_CURRENT_SOURCE_DIR}/"):
                out.append(_normalise(str(base / word.removeprefix("${CMAKE_CURRENT_SOURCE_DIR}/"))))
            elif word.startswith("${") and word.endswith("}"):
                out += values.get(word[2:-1], [])
            elif word.endswith(".metal"):
                out.append(_normalise(str(base / word)))
        values[name] = out
    sources = values.get("METALLIB_KERNEL_SOURCES", [])
    loop = cmake[cmake.index("foreach") :]
    first = re.search(r"set\(\s*HEADERS_FOR_SRC\s+\$\{(\w+)\}\s*\)", loop)
    has = {flag: rx.replace("\\\\", "").replace("\\", "") for flag, rx in _HAS.findall(loop)}
    appends = _APPEND.findall(loop)
    delete_cmd = next((ln for ln in loop.splitlines() if "sed" in ln and "/d" in ln and "/r " not in ln), "")
    deletes = [d.replace('\\"', '"').replace("\\#", "#") for d in _DELETE.findall(delete_cmd)]
    steps = [(m["pat"], m["var"]) for m in _SED.finditer(loop)]
    if not sources or first is None or not steps or not deletes:
        return "kernel-files", None, f"{cmake_rel}: its per-kernel-file embed step could not be read"
    pieces: list[str] = []
    for src_rel in sources:
        src = read(src_rel)
        if src is None:
            return "kernel-files", None, f"{src_rel} absent"
        text = src.decode("utf-8")
        headers = list(values.get(first.group(1), []))
        for flag, var in appends:
            include = has.get(flag)
            if include and any(f'#include "{include}"' in line for line in text.splitlines()):
                headers += values.get(var, [])
        parts = [read(h) for h in headers]
        if any(p is None for p in parts):
            return "kernel-files", None, f"{cmake_rel}: a header of {src_rel} is absent"
        piece = "".join(p.decode("utf-8") for p in parts if p is not None) + text
        piece = "".join(
            ln for ln in piece.splitlines(keepends=True) if not any(re.search(d, ln) for d in deletes)
        )
        for pat, var in steps:
            target = values.get(var, [])
            ins = read(target[0]) if target else None
            if ins is None:
                return (
                    "kernel-files",
                    None,
                    f"{cmake_rel}: the embed step inlines ${{{var}}}, not in the tree",
                )
            piece = _sed_r(piece, pat, ins.decode("utf-8"))
        pieces.append(piece)
    how = (
        f"{cmake_rel}: {len(sources)} METALLIB_KERNEL_SOURCES pieces in order, each with the headers it "
        f"includes, {len(deletes)} line deletions"
        + "".join(f", /{p}/ -> {values.get(v, ['?'])[0]}" for p, v in steps)
    )
    return "kernel-files", "".join(pieces).encode("utf-8"), how


def _normalise(path: str) -> str:
    parts: list[str] = []
    for p in PurePosixPath(path).parts:
        if p == "..":
            if parts:
                parts.pop()
        elif p != ".":
            parts.append(p)
    return "/".join(parts)


def _ggml_version(read: Reader) -> str:
    raw = read("ggml/CMakeLists.txt")
    if raw is None:
        return ""
    got = dict(_VERSION.findall(raw.decode("utf-8", "replace")))
    return ".".join(got[k] for k in ("MAJOR", "MINOR", "PATCH")) if len(got) == 3 else ""


def digest_reader(read: Reader, name: str, version: str, sdist: str, changelog: str) -> TreeDigest:
    layout, text, how = embed_text(read)
    source = (
        read("ggml/src/ggml-metal/ggml-metal.metal")
        or read("ggml/src/ggml-metal.metal")
        or read("ggml-metal.metal")  # 2023 trees: at the root
    )
    return TreeDigest(
        name,
        version,
        sdist,
        _ggml_version(read),
        upstream_commit_from_changelog(changelog, version) if changelog else "",
        layout,
        hashlib.sha256(text).hexdigest() if text is not None else "",
        len(text) if text is not None else 0,
        hashlib.sha256(source).hexdigest() if source is not None else "",
        how,
    )


def digest_tree(tree: Path, name: str) -> TreeDigest:
    """The digest of an unpacked tree (``--tree``)."""

    def read(rel: str) -> bytes | None:
        p = tree / rel
        return p.read_bytes() if rel and p.is_file() else None

    return digest_reader(read, name, "", str(tree), "")


def digest_sdist(sdist: Path) -> TreeDigest:
    """The digest of a llama-cpp-python sdist, read from the tarball (only the files it needs)."""
    files: dict[str, bytes] = {}
    changelog = ""
    version = sdist.name.removeprefix("llama_cpp_python-").removesuffix(".tar.gz")
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or member.size > _MAX_MEMBER:
                continue
            parts = PurePosixPath(member.name).parts
            if len(parts) == 2 and parts[1] == "CHANGELOG.md":
                handle = tar.extractfile(member)
                changelog = handle.read().decode("utf-8", "replace") if handle else ""
                continue
            if len(parts) < 4 or PurePosixPath(*parts[1:3]) != VENDOR:
                continue
            rel = "/".join(parts[3:])
            if _WANTED.match(rel):
                handle = tar.extractfile(member)
                if handle:
                    files[rel] = handle.read()
    return digest_reader(files.get, f"llama-cpp-python {version} sdist", version, str(sdist), changelog)


def _version_key(d: TreeDigest) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else 0 for x in d.version.split("."))


def digests(sdists_dir: Path, index_dir: Path) -> list[TreeDigest]:
    """The digest of every sdist in ``sdists_dir`` (cached per file in ``index_dir``), oldest first."""
    out: list[TreeDigest] = []
    index_dir.mkdir(parents=True, exist_ok=True)
    for sdist in sorted(sdists_dir.glob(SDIST_GLOB)) if sdists_dir.is_dir() else []:
        st = sdist.stat()
        cached = index_dir / f"{sdist.name}-{st.st_size}-{st.st_mtime_ns}.json"
        if cached.is_file():
            try:
                data = json.loads(cached.read_text(encoding="utf-8"))
                if data.get("index_version") == INDEX_VERSION:
                    data.pop("index_version")
                    out.append(TreeDigest(**{**data, "sdist": str(sdist)}))
                    continue
            except (ValueError, TypeError):
                pass
        try:
            d = digest_sdist(sdist)
        except (tarfile.TarError, EOFError, OSError, zlib.error, UnicodeDecodeError):
            continue  # an unreadable sdist is not a tree we can fetch
        atomic_write_text(cached, json.dumps({**asdict(d), "index_version": INDEX_VERSION}))
        out.append(d)
    return sorted(out, key=_version_key)


# --- matching a build ---------------------------------------------------------------------------
_SHORT = re.compile(rb"\0([0-9a-f.]{3,40})(?=\0)")


def short_strings(files: Iterable[Path]) -> dict[str, str]:
    """Short NUL-terminated strings of hex digits and dots (versions, commit ids) in ``files``,
    each with the first file that holds it: read once per build."""
    out: dict[str, str] = {}
    for f in files:
        try:
            data = read_whole(f)
        except (OSError, MalformedBinary):  # too large for a build's file: binary_problem says so
            continue
        for m in _SHORT.finditer(data):
            out.setdefault(m.group(1).decode(), f.name)
    return out


def match_library(
    library: bytes, kind: str, where: str, trees: Sequence[TreeDigest], build_files: Sequence[Path]
) -> MatchResult:
    """Match one shipped library (``kind`` "embedded" or "beside") against ``trees``."""
    sha = hashlib.sha256(library).hexdigest()
    key = "embed_sha256" if kind == "embedded" else "source_sha256"
    subject = (
        f"the embedded Metal library of {where}"
        if kind == "embedded"
        else f"the Metal source {where} beside the binary"
    )
    compared = tuple(t.name for t in trees if getattr(t, key))
    not_compared = tuple(
        f"{t.name} ({t.embed_how})" for t in trees if not getattr(t, key) and t.layout == "kernel-files"
    )
    hits = [t for t in trees if getattr(t, key) == sha]
    strings = short_strings(build_files)
    if not hits:
        span = (
            f"{compared[0]} … {compared[-1]}" if len(compared) > 1 else (compared[0] if compared else "none")
        )
        why = (
            f"no fetchable tree matches: {subject} (sha256 {sha[:16]}…, {len(library)} "
            f"bytes) equals none of the {len(compared)} trees compared ({span})"
        )
        if not_compared:
            why += f"; not compared: {', '.join(not_compared)}"
        same_v = [t for t in trees if t.ggml_version and t.ggml_version in strings]
        same_vc = [t for t in same_v if t.commit and t.commit[:9] in strings]
        if same_vc:
            why += (
                f"; ggml version {same_vc[0].ggml_version} and llama.cpp {same_vc[0].commit[:9]} are "
                f"{same_vc[0].name}'s (its CHANGELOG) yet the library text differs: a patched library, not matched"
            )
        elif same_v:
            why += (
                f"; the build's ggml version {same_v[0].ggml_version} ({strings[same_v[0].ggml_version]}) is also "
                f"that of {', '.join(t.version for t in same_v)}, whose libraries differ"
            )
        if not trees:
            why = f"no fetchable tree matches: no llama-cpp-python sdists to compare with ({subject})"
        return MatchResult(None, compared, not_compared, why)

    def score(t: TreeDigest) -> tuple[bool, bool, tuple[int, ...]]:
        return (
            t.ggml_version in strings,
            bool(t.commit) and t.commit[:9] in strings,
            tuple(-x for x in _version_key(t)),
        )

    best = max(hits, key=score)
    what = "what its embed step writes" if kind == "embedded" else "its ggml-metal.metal"
    evidence = [
        f"{subject} is byte-identical to {what} (sha256 {sha[:16]}…, "
        f"{len(library)} bytes; {best.embed_how if kind == 'embedded' else 'the file as it is'})"
    ]
    found_v = strings.get(best.ggml_version, "")
    if best.ggml_version:
        evidence.append(
            f"ggml version {best.ggml_version}: "
            + (f"the same string is in {found_v}" if found_v else "not found among the build's strings")
        )
    if best.commit:
        found_c = strings.get(best.commit[:9], "")
        evidence.append(
            f"the sdist's CHANGELOG names llama.cpp {best.commit[:9]}: "
            + (
                f"the same string is in {found_c}"
                if found_c
                else "not among the build's strings (a different commit with the same Metal library)"
            )
        )
    also = tuple(t.name for t in hits if t is not best)
    return MatchResult(TreeMatch(best, tuple(evidence), also), compared, not_compared, "")


def unpacked(digest: TreeDigest, trees_dir: Path) -> Path:
    """The matched sdist's vendored tree, unpacked once under ``trees_dir`` (one process at a time)."""
    with exclusive(trees_dir / f".{digest.version}.lock", wait=1800, what="the matched trees"):
        return _unpack(digest, trees_dir)


def _unpack(digest: TreeDigest, trees_dir: Path) -> Path:
    dest = trees_dir / f"llama-cpp-python-{digest.version}"
    marker = dest / ".toolchain-tree"
    if marker.is_file():
        return dest / marker.read_text(encoding="utf-8")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    tree, _ = extract_vendor_tree(Path(digest.sdist), partial)
    rel = tree.relative_to(partial)
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    marker.write_text(str(rel), encoding="utf-8")
    return dest / rel


def match_build(
    files: Sequence[Path], sdists_dir: Path, cache_dir: Path
) -> tuple[Path | None, MatchResult | None]:
    """The tree whose Metal library the first Mach-O of ``files`` that embeds one ships byte for
    byte (unpacked under ``cache_dir``), and the match; (None, None) when no file embeds a library."""
    for f in files:
        try:
            sections = macho_sections(read_whole(f), "__DATA", "__ggml_metallib")
        except (OSError, MalformedBinary):
            continue
        if not sections:
            continue
        arch, raw = sections[0]
        trees = digests(sdists_dir, cache_dir / "tree-match" / "index")
        result = match_library(raw, "embedded", f"{f.name} ({arch})", trees, files)
        if result.match is None:
            return None, result
        return unpacked(result.match.digest, cache_dir / "tree-match" / "trees"), result
    return None, None
