"""What the user asked for (``SourceSpec``) and the validation of every user-supplied string.

Refs, URLs and requirements reach git and the network: anything that could be read as an option
(leading ``-``), a remote helper (``ext::``, ``fd::``), or that git would refuse as a ref name is
rejected here, before any subprocess runs. GitPython's own unsafe-option guards stay on as a
second line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import UnsafeInputError, UsageError

SourceKind = Literal["git", "pypi-sdist"]
SDIST_PROJECT = "llama-cpp-python"

_HEX = re.compile(r"[0-9a-f]+")
_REMOTE_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]+:(?!//)[^\s]*$")
_ALLOWED_SCHEMES = {"https", "http", "ssh", "git", "file"}
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class SourceSpec:
    """A request: which source, and which ref of it (``HEAD`` / branch / tag / commit / version)."""

    kind: SourceKind
    location: str  # git URL, or requirement such as "llama-cpp-python==0.3.36"
    ref: str = "HEAD"

    def __post_init__(self) -> None:
        if self.kind == "git":
            validate_url(self.location)
            validate_ref(self.ref)
        elif self.kind == "pypi-sdist":
            parse_requirement(self.location)
        else:  # pragma: no cover - Literal guards callers
            raise UsageError(f"unknown source kind {self.kind!r}", "use 'git' or 'pypi-sdist'")


def is_full_commit_id(text: str) -> bool:
    return len(text) in (40, 64) and bool(_HEX.fullmatch(text))


def is_commit_prefix(text: str) -> bool:
    return 4 <= len(text) <= 64 and bool(_HEX.fullmatch(text))


def validate_ref(ref: str) -> str:
    """Accept HEAD, branch/tag names (git check-ref-format rules) and (abbreviated) commit ids."""
    why = _ref_problem(ref)
    if why:
        raise UnsafeInputError(
            f"refusing ref {ref!r}: {why}",
            "pass HEAD, a branch or tag name, or a full or abbreviated commit id",
        )
    return ref


def _ref_problem(ref: str) -> str:
    if not ref:
        return "empty"
    if len(ref) > 255:
        return "longer than 255 characters"
    if ref.startswith("-"):
        return "starts with '-' (would be read as an option)"
    if _CONTROL.search(ref):
        return "contains whitespace or control characters"
    for bad in ("..", "@{", "//", "~", "^", ":", "?", "*", "[", "\\"):
        if bad in ref:
            return f"contains {bad!r}"
    if ref.startswith("/") or ref.endswith("/") or ref.endswith(".") or ref.endswith(".lock"):
        return "is not a valid git ref name"
    if any(part.startswith(".") for part in ref.split("/")):
        return "has a component starting with '.'"
    if ref == "@":
        return "is '@'"
    return ""


def validate_url(url: str) -> str:
    """Accept https/http/ssh/git/file URLs, scp-like ``user@host:path`` and absolute local paths."""
    if not url:
        raise UnsafeInputError(
            "empty git URL", "pass the remote's URL, e.g. https://github.com/ggml-org/llama.cpp"
        )
    if url.startswith("-"):
        raise UnsafeInputError(
            f"refusing URL {url!r}: starts with '-' (would be read as a git option)",
            "pass a plain URL such as https://host/llama.cpp or file:///path/to/repo",
        )
    if _CONTROL.search(url):
        raise UnsafeInputError(
            f"refusing URL {url!r}: contains whitespace or control characters",
            "pass a plain URL such as https://host/llama.cpp or file:///path/to/repo",
        )
    if _REMOTE_HELPER.match(url):
        raise UnsafeInputError(
            f"refusing URL {url!r}: remote helpers such as 'ext::' can run arbitrary commands",
            "use an https, ssh, git or file URL",
        )
    if url.startswith("/"):
        return url
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. an unbalanced '[' in the host
        raise UnsafeInputError(
            f"refusing URL {url!r}: {exc}", "pass a plain URL such as https://host/llama.cpp"
        ) from None
    option_like = _option_like_part(url, parts.scheme)
    if option_like:
        raise UnsafeInputError(
            f"refusing URL {url!r}: its {option_like} starts with '-' (ssh would read it as an option)",
            "pass a URL whose user, host and port are plain names, e.g. ssh://git@host/llama.cpp",
        )
    if parts.scheme:
        if parts.scheme.lower() not in _ALLOWED_SCHEMES:
            if _SCP_LIKE.match(url) and "@" in url.split(":", 1)[0]:
                return url
            raise UnsafeInputError(
                f"refusing URL {url!r}: scheme {parts.scheme!r} is not allowed",
                f"allowed: {', '.join(sorted(_ALLOWED_SCHEMES))}, scp-like user@host:path, absolute paths",
            )
        if parts.scheme.lower() != "file" and not hostname:
            raise UnsafeInputError(
                f"refusing URL {url!r}: no host", "pass a full URL such as https://host/llama.cpp"
            )
        return url
    if _SCP_LIKE.match(url):
        return url
    raise UnsafeInputError(
        f"refusing URL {url!r}: not a URL or absolute path",
        "use https://…, ssh://…, git@host:path, file:///… or an absolute path",
    )


def _option_like_part(url: str, scheme: str) -> str:
    """ "user", "host" or "port" when that part of ``url`` (percent-decoded) starts with '-'."""
    if scheme and url[len(scheme) : len(scheme) + 3] == "://":
        netloc = url[len(scheme) + 3 :].split("/", 1)[0]
    elif _SCP_LIKE.match(url):
        netloc = url.split(":", 1)[0]
    else:
        return ""
    netloc = unquote(netloc)
    user, _, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    for name, part in (("user", user), ("host", host), ("port", port)):
        if part.lstrip().startswith("-"):
            return name
    return ""


def parse_requirement(text: str) -> Requirement:
    """``llama-cpp-python==X.Y.Z`` (or any specifier; ``update`` resolves it to one version)."""
    if text.startswith("-") or _CONTROL.search(text):
        raise UnsafeInputError(f"refusing requirement {text!r}", f"pass e.g. {SDIST_PROJECT}==0.3.36")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise UsageError(
            f"invalid requirement {text!r}: {exc}", f"pass e.g. {SDIST_PROJECT}==0.3.36"
        ) from exc
    if canonicalize_name(req.name) != SDIST_PROJECT:
        raise UsageError(
            f"requirement {text!r} names {req.name!r}",
            f"only {SDIST_PROJECT} sdists are supported (they vendor a full llama.cpp tree)",
        )
    if req.url or req.extras or req.marker:
        raise UnsafeInputError(
            f"refusing requirement {text!r}: URLs, extras and markers are not supported",
            f"pass e.g. {SDIST_PROJECT}==0.3.36",
        )
    return req


def pinned_version(req: Requirement) -> str | None:
    """The version of an exact ``==X.Y.Z`` pin, else None."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None
