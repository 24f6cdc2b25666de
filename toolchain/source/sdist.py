"""``pypi-sdist`` sources: llama-cpp-python sdists vendor a whole llama.cpp tree.

The sdist is found on the package index (PEP 691 JSON, or the PEP 503 HTML page), downloaded once
into the cache and checked against the sha256 the index reports (and, later, the one in the
lock). Its ``vendor/llama.cpp`` is imported into a mirror as one commit with a fixed author, date
and message, so the same sdist always gives the same commit id on every machine. Nothing of the
sdist is executed: its build backend never runs.
"""

from __future__ import annotations

import errno
import http.client
import json
import re
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..config import Settings
from ..core.git import run_git
from ..core.hashing import sha256_file
from ..errors import MirrorCorruptError, OfflineMissingError, SdistError, ToolchainError
from ..log import LOG
from .git_source import now_utc
from .http import TooLargeError, read_bounded
from .lock import ResolvedSource, SdistInfo
from .mirror import Mirror, mirror_path
from .spec import SDIST_PROJECT, SourceSpec, parse_requirement, pinned_version

IMPORT_IDENTITY = {
    "GIT_AUTHOR_NAME": "llama-toolchain import",
    "GIT_AUTHOR_EMAIL": "import@llama-toolchain.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "llama-toolchain import",
    "GIT_COMMITTER_EMAIL": "import@llama-toolchain.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}
# Settings that could make the same files hash differently on another machine.
DETERMINISTIC_CONFIG = ["-c", "core.autocrlf=false", "-c", "core.filemode=true", "-c", "core.symlinks=true"]
VENDOR_DIR = PurePosixPath("vendor/llama.cpp")
_FILENAME = re.compile(r"^llama_cpp_python-(?P<version>[^-]+)\.tar\.gz$", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Bounds on what a stranger's index and sdist may make us read (each far above the real thing:
# the index page of llama-cpp-python is ~100 KB, an sdist ~80 MB, its CHANGELOG ~100 KB).
MAX_INDEX_BYTES = 8 << 20
MAX_SDIST_BYTES = 1 << 30
MAX_CHANGELOG_BYTES = 4 << 20
_CHANGELOG_COMMIT = re.compile(r"(?:ggml-org|ggerganov)/llama\.cpp@([0-9a-f]{7,40})", re.IGNORECASE)


def sdist_mirror(settings: Settings) -> Mirror:
    return Mirror(mirror_path(settings.mirrors_dir, f"pypi:{SDIST_PROJECT}"))


def sdist_ref(version: str) -> str:
    return f"refs/sdists/{SDIST_PROJECT}/{version}"


# --- index ---------------------------------------------------------------------------------------
class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href:
            self.links.append((data.strip(), self._href))
            self._href = None


def list_sdists(index_url: str, timeout: float) -> list[SdistInfo]:
    """Every llama-cpp-python sdist on the index, with the sha256 the index reports."""
    url = f"{index_url.rstrip('/')}/{canonicalize_name(SDIST_PROJECT)}/"
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.5",
            "User-Agent": "llama-toolchain",
        },
    )
    try:
        body, content_type = read_bounded(request, timeout=timeout, limit=MAX_INDEX_BYTES)
    except TooLargeError as exc:
        raise SdistError(
            f"the package index page {url} is {exc.size} bytes or more: more than the "
            f"{MAX_INDEX_BYTES} bytes an index page of {SDIST_PROJECT} can be; it was not read",
            "the index (or a proxy in between) is broken or hostile: check [tool.llama-toolchain] index-url",
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise SdistError(
            f"could not read the package index {url}: {exc}",
            "check your network or set [tool.llama-toolchain] index-url; `--offline` works with a cached sdist",
        ) from exc
    if "json" in content_type:
        return _sdists_from_json(url, body)
    found: list[SdistInfo] = []
    parser = _LinkParser()
    parser.feed(body.decode("utf-8", "replace"))
    for name, href in parser.links:
        match = _FILENAME.match(name)
        frag = re.search(r"#sha256=([0-9a-f]{64})", href)
        if match and frag:
            found.append(
                SdistInfo(name, frag[1], urllib.parse.urljoin(url, href.split("#")[0]), match["version"])
            )
    return found


def _sdists_from_json(url: str, body: bytes) -> list[SdistInfo]:
    """PEP 691: ``{"files": [{"filename", "url", "hashes": {"sha256"}, "yanked"}, …]}``; anything
    else from the index is refused, naming what was wrong."""

    def bad(what: str) -> SdistError:
        return SdistError(
            f"the package index {url} answered with {what}",
            "the index (or a proxy in between) is broken: check [tool.llama-toolchain] index-url, "
            "or try again later",
        )

    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise bad(f"invalid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
        raise bad("JSON that is not a PEP 691 project page (no list of files)")
    found: list[SdistInfo] = []
    for entry in data.get("files", []):
        if not isinstance(entry, dict):
            raise bad(f"a file entry that is not an object: {str(entry)[:80]!r}")
        filename, link, hashes = entry.get("filename"), entry.get("url"), entry.get("hashes", {})
        if not isinstance(filename, str) or not isinstance(hashes, dict):
            raise bad(f"a file entry without a filename or hashes: {str(entry)[:80]!r}")
        match = _FILENAME.match(filename)
        sha = hashes.get("sha256")
        if not match or entry.get("yanked"):
            continue
        if not isinstance(link, str) or not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise bad(f"an entry for {filename!r} without a url or a sha256 hex digest")
        found.append(SdistInfo(filename, sha, urllib.parse.urljoin(url, link), match["version"]))
    return found


def find_sdist(requirement: str, settings: Settings) -> SdistInfo:
    req = parse_requirement(requirement)
    candidates = []
    for info in list_sdists(settings.index_url, settings.network_timeout):
        try:
            version = Version(info.version)
        except InvalidVersion:
            continue
        if req.specifier.contains(version, prereleases=bool(pinned_version(req))):
            candidates.append((version, info))
    if not candidates:
        raise SdistError(
            f"no sdist of {SDIST_PROJECT} on {settings.index_url} matches {requirement!r}",
            f"list versions with `pip index versions {SDIST_PROJECT}`",
        )
    return max(candidates, key=lambda c: c[0])[1]


# --- download ------------------------------------------------------------------------------------
def download(info: SdistInfo, settings: Settings) -> Path:
    """The sdist in the cache, downloaded if needed; its sha256 always checked."""
    if "/" in info.filename or info.filename.startswith("."):
        raise SdistError(f"refusing sdist file name {info.filename!r}")
    target = settings.sdists_dir / info.filename
    if target.is_file():
        if sha256_file(target) == info.sha256:
            return target
        LOG.warn(f"cached {target} does not match sha256 {info.sha256[:12]}…; downloading it again")
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    LOG.info(f"downloading {info.filename}")
    try:
        with part.open("wb") as fh, LOG.progress(f"download {info.filename}", None) as bar:
            read_bounded(
                info.url,
                timeout=settings.network_timeout,
                limit=MAX_SDIST_BYTES,
                sink=fh,
                on_progress=lambda done, _total: bar.update(done),
            )
    except TooLargeError as exc:
        part.unlink(missing_ok=True)
        raise SdistError(
            f"{info.url} is {exc.size} bytes or more: more than the {MAX_SDIST_BYTES} bytes an sdist "
            f"of {SDIST_PROJECT} can be; the download was stopped",
            f"the index serves a bad file: pick another version with `--pypi {SDIST_PROJECT}==X.Y.Z`, "
            "or check [tool.llama-toolchain] index-url",
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        part.unlink(missing_ok=True)
        raise SdistError(f"download of {info.url} failed: {exc}", "check your network and run again") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    got = sha256_file(part)
    if got != info.sha256:
        part.unlink(missing_ok=True)
        raise SdistError(
            f"{info.filename}: the downloaded file's sha256 {got} does not match the {info.sha256} "
            "the index reports (and the lock records); the file was deleted",
            "do not build from it. Downloading it again gives the same bytes unless the server or a "
            "proxy changed them: if the index now serves another file for this version, re-pin with "
            f"`llama-toolchain update --pypi {SDIST_PROJECT}=={info.version}` after checking why; "
            f"otherwise pick another version (`--pypi {SDIST_PROJECT}==X.Y.Z`) or another index-url",
        )
    part.replace(target)
    return target


# --- unpack and import ---------------------------------------------------------------------------
def extract_vendor_tree(sdist: Path, dest: Path, sha256: str = "") -> tuple[Path, str]:
    """Unpack ``<root>/vendor/llama.cpp`` (only) into ``dest``; return it and the CHANGELOG text
    (its first ``MAX_CHANGELOG_BYTES``: the newest sections, which are the ones read)."""
    changelog = ""
    same_file = (
        f"its sha256 {sha256} is the one the index reports, so the file on the index is itself bad "
        "and downloading it again gives the same bytes: "
        if sha256
        else ""
    )
    hint = same_file + f"pick another version with `--pypi {SDIST_PROJECT}==X.Y.Z`"
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = []
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if len(parts) == 2 and parts[1] == "CHANGELOG.md" and member.isfile():
                    handle = tar.extractfile(member)
                    if handle:
                        changelog = handle.read(MAX_CHANGELOG_BYTES).decode("utf-8", "replace")
                    if member.size > MAX_CHANGELOG_BYTES:
                        LOG.warn(
                            f"{sdist.name}: CHANGELOG.md is {member.size} bytes; "
                            f"only its first {MAX_CHANGELOG_BYTES} were read"
                        )
                if len(parts) > 3 and PurePosixPath(*parts[1:3]) == VENDOR_DIR:
                    members.append(member)
            if not members:
                raise SdistError(f"{sdist.name} has no {VENDOR_DIR} tree", hint)
            # filter="data" refuses absolute paths, '..', links leaving the tree and special files.
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise
        raise SdistError(f"{sdist} is not a readable sdist: {exc}", hint) from exc
    roots = {PurePosixPath(m.name).parts[0] for m in members}
    tree = dest.joinpath(next(iter(roots)), *VENDOR_DIR.parts)
    # The vendored tree carries a `.git` file pointing into llama-cpp-python's repository.
    git_pointer = tree / ".git"
    if git_pointer.is_file():
        git_pointer.unlink()
    return tree, changelog


def upstream_commit_from_changelog(changelog: str, version: str) -> str:
    """The first ``ggml-org/llama.cpp@<id>`` in the CHANGELOG section of ``version``."""
    section = re.search(rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## \[|\Z)", changelog, re.M | re.S)
    if not section:
        return ""
    match = _CHANGELOG_COMMIT.search(section[1])
    return match[1].lower() if match else ""


def import_tree(mirror: Mirror, tree: Path, message: str, ref: str) -> str:
    """Commit ``tree`` into ``mirror`` with a fixed identity and date; deterministic id."""

    with tempfile.TemporaryDirectory(prefix="index-", dir=mirror.path.parent) as tmp:
        env = {
            "GIT_DIR": str(mirror.path),
            "GIT_WORK_TREE": str(tree),
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
            **IMPORT_IDENTITY,
        }
        worker = tree  # run from inside the tree
        run_git(worker, [*DETERMINISTIC_CONFIG, "add", "--all", "--force", "--", "."], env=env)
        tree_id = run_git(worker, ["write-tree"], env=env).strip()
        commit = run_git(worker, ["commit-tree", tree_id, "-m", message], env=env).strip()
    mirror.run(["update-ref", ref, commit])
    return commit


def resolve_sdist(
    spec: SourceSpec, settings: Settings, *, offline: bool = False, known: SdistInfo | None = None
) -> ResolvedSource:
    """Find (or reuse the locked) sdist, import it, and return the resolved source."""
    req = parse_requirement(spec.location)
    info = known
    if info is None:
        if offline:
            info = _cached_match(spec.location, settings)
        else:
            info = find_sdist(spec.location, settings)
    mirror = sdist_mirror(settings)
    with mirror.locked():  # type: ignore[attr-defined]
        mirror.ensure()
        ref = sdist_ref(info.version)
        commit = _existing(mirror, ref)
        if commit is None:
            if offline and not (settings.sdists_dir / info.filename).is_file():
                raise OfflineMissingError(
                    f"{info.filename} is not in the cache ({settings.sdists_dir}) and --offline forbids downloading it",
                    "run once without --offline",
                )
            path = download(info, settings)
            work = settings.cache_dir / "tmp"
            work.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="sdist-", dir=work) as tmp:
                LOG.info(f"unpacking {VENDOR_DIR} from {info.filename}")
                tree, changelog = extract_vendor_tree(path, Path(tmp), info.sha256)
                upstream = upstream_commit_from_changelog(changelog, info.version)
                info = SdistInfo(info.filename, info.sha256, info.url, info.version, upstream)
                message = (
                    f"{SDIST_PROJECT} {info.version}: {VENDOR_DIR}\n\n"
                    f"sdist: {info.filename}\nsha256: {info.sha256}\n"
                    f"upstream: ggml-org/llama.cpp@{upstream or 'unknown'}\n"
                )
                LOG.info("importing the tree into the mirror")
                commit = import_tree(mirror, tree, message, ref)
        elif not info.upstream_commit:
            body = mirror.run(["log", "-1", "--format=%B", commit])
            found = re.search(r"^upstream: ggml-org/llama\.cpp@([0-9a-f]+)", body, re.M)
            info = SdistInfo(info.filename, info.sha256, info.url, info.version, found[1] if found else "")
        mirror.pin(commit)
    version = pinned_version(req) or info.version
    return ResolvedSource(
        kind="pypi-sdist",
        location=f"{SDIST_PROJECT}=={info.version}" if not pinned_version(req) else spec.location,
        ref=version,
        commit=commit,
        resolved_at=now_utc(),
        sdist=info,
    )


def _existing(mirror: Mirror, ref: str) -> str | None:
    try:
        commit = mirror.run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]).strip()
    except ToolchainError:
        return None
    try:
        mirror.check_objects(commit)
    except MirrorCorruptError:
        mirror.run(["update-ref", "-d", ref])
        LOG.warn(f"imported tree {commit[:12]} is damaged in {mirror.path}; importing it again")
        return None
    return commit or None


def _cached_match(requirement: str, settings: Settings) -> SdistInfo:
    """Offline and no lock entry: accept an exact pin whose sdist is already cached."""
    version = pinned_version(parse_requirement(requirement))
    if version:
        name = f"llama_cpp_python-{version}.tar.gz"
        path = settings.sdists_dir / name
        if path.is_file():
            return SdistInfo(name, sha256_file(path), path.as_uri(), version)
    raise OfflineMissingError(
        f"{requirement!r} cannot be resolved offline (no cached sdist for it in {settings.sdists_dir})",
        "run once without --offline",
    )
