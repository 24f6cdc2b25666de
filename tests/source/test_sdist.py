"""PyPI sdist sources: index lookup, verified download, deterministic import — against a local index."""

import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolchain import source
from toolchain.config import Settings
from toolchain.errors import OfflineMissingError, SdistError
from toolchain.source.sdist import find_sdist, upstream_commit_from_changelog
from toolchain.source.spec import SourceSpec


class Index:
    """A PEP 691 JSON index on 127.0.0.1 serving the cached sdists (or whatever a test puts there)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, bytes] = {}
        self.shas: dict[str, str] = {}
        self.json_pages = True
        handler = self._handler()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/simple"

    def add(self, path: Path, sha: str | None = None) -> None:
        self.files[path.name] = path.read_bytes()
        self.shas[path.name] = sha or hashlib.sha256(self.files[path.name]).hexdigest()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                base = f"http://127.0.0.1:{index.server.server_port}"
                if self.path == "/simple/llama-cpp-python/":
                    if index.json_pages:
                        files = [
                            {"filename": n, "url": f"{base}/files/{n}", "hashes": {"sha256": index.shas[n]}}
                            for n in index.files
                        ]
                        body = json.dumps({"files": files}).encode()
                        ctype = "application/vnd.pypi.simple.v1+json"
                    else:
                        links = "".join(
                            f'<a href="/files/{n}#sha256={index.shas[n]}">{n}</a>\n' for n in index.files
                        )
                        body = f"<html><body>{links}</body></html>".encode()
                        ctype = "text/html"
                elif self.path.startswith("/files/") and self.path[7:] in index.files:
                    body, ctype = index.files[self.path[7:]], "application/gzip"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def index(sdist_paths: dict[str, Path], tmp_path: Path) -> Iterator[Index]:
    idx = Index(tmp_path)
    for path in sdist_paths.values():
        idx.add(path)
    yield idx
    idx.server.shutdown()


def no_cached_sdists(settings: Settings) -> Settings:
    shutil.rmtree(settings.sdists_dir)
    return settings


def test_index_lookup_json_and_html(settings: Settings, index: Index) -> None:
    s = settings.with_overrides(index_url=index.url)
    assert find_sdist("llama-cpp-python==0.3.20", s).version == "0.3.20"
    assert find_sdist("llama-cpp-python>=0.3", s).version == "0.3.36"
    index.json_pages = False
    assert find_sdist("llama-cpp-python<0.3.30", s).version == "0.3.20"
    with pytest.raises(SdistError) as info:
        find_sdist("llama-cpp-python==9.9.9", s)
    assert info.value.exit_code == 16


def test_same_sdist_gives_the_same_commit_on_any_machine(
    settings: Settings, index: Index, tmp_path: Path
) -> None:
    first = source.resolve(
        SourceSpec("pypi-sdist", "llama-cpp-python==0.3.36", "0.3.36"),
        no_cached_sdists(settings).with_overrides(index_url=index.url),
    )
    other = settings.with_overrides(cache_dir=tmp_path / "other-cache", index_url=index.url)
    second = source.resolve(SourceSpec("pypi-sdist", "llama-cpp-python==0.3.36", "0.3.36"), other)
    assert first.commit == second.commit
    assert first.sdist is not None and first.sdist.upstream_commit == "0c1e57098"
    assert (
        first.sdist.sha256
        == hashlib.sha256((settings.sdists_dir / first.sdist.filename).read_bytes()).hexdigest()
    )
    checkout = source.fetch(first, settings.with_overrides(index_url=index.url))
    assert (checkout.path / "convert_hf_to_gguf.py").is_file()
    assert not (checkout.path / ".git").is_dir()  # a worktree pointer, not the sdist's dangling .git


def test_wrong_sha256_from_the_index_is_refused(
    settings: Settings, index: Index, sdist_paths: dict[str, Path]
) -> None:
    index.add(sdist_paths["0.3.20"], sha="0" * 64)
    s = no_cached_sdists(settings).with_overrides(index_url=index.url)
    with pytest.raises(SdistError) as info:
        source.resolve(SourceSpec("pypi-sdist", "llama-cpp-python==0.3.20", "0.3.20"), s)
    assert "does not match" in info.value.message
    assert not list(s.sdists_dir.glob("*")), "a bad download must not stay in the cache"


def test_offline_without_the_sdist_says_so(settings: Settings) -> None:
    s = no_cached_sdists(settings)
    with pytest.raises(OfflineMissingError):
        source.resolve(SourceSpec("pypi-sdist", "llama-cpp-python==0.3.36", "0.3.36"), s, offline=True)


def test_changelog_parsing() -> None:
    text = "## [Unreleased]\n\n## [0.3.36]\n\n- feat: Update llama.cpp to ggml-org/llama.cpp@0C1E57098\n\n## [0.3.35]\n- x ggerganov/llama.cpp@4df29be4f\n"
    assert upstream_commit_from_changelog(text, "0.3.36") == "0c1e57098"
    assert upstream_commit_from_changelog(text, "0.3.35") == "4df29be4f"
    assert upstream_commit_from_changelog(text, "0.3.1") == ""
