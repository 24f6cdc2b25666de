"""HTTP(S) reads from the package index with a total deadline and a size bound.

``urlopen(timeout=…)`` bounds each socket read, not the request: a server that drips one byte a
second keeps a download alive for ever. Here a watchdog shuts the request's socket down when
``network-timeout`` has passed since the request started (connect, headers and body alike), and
a body longer than the caller's bound is refused instead of read. ``file://`` URLs (a cached
sdist) go through the same code.
"""

from __future__ import annotations

import functools
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, BinaryIO

from ..errors import RemoteUnreachableError


class _Watchdog:
    """Shuts down every socket of one request once its deadline has passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self.fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _HTTPConnection(http.client.HTTPConnection):
    """A connection whose socket (once connected) the request's watchdog can shut down."""

    def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog

    def connect(self) -> None:
        super().connect()
        self._watchdog.add(self.sock)


class _HTTPSConnection(_HTTPConnection, http.client.HTTPSConnection):
    """The same over TLS: ``connect`` runs HTTPSConnection's (which wraps the socket) first."""


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, watchdog=self._watchdog), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self._watchdog = watchdog

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            functools.partial(_HTTPSConnection, watchdog=self._watchdog),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


class TooLargeError(Exception):
    """The body is longer than the caller's bound (raised before more of it is read)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes or more, more than the {limit} accepted")
        self.size = size
        self.limit = limit


def read_bounded(
    request: urllib.request.Request | str,
    *,
    timeout: float,
    limit: int,
    sink: BinaryIO | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> tuple[bytes, str]:
    """The body of ``request`` (or, with ``sink``, the body written to it and b"") and its
    Content-Type. Raises ``RemoteUnreachableError`` when the whole request takes longer than
    ``timeout`` seconds, ``TooLargeError`` beyond ``limit`` bytes, and urllib's/OSError's own
    errors otherwise."""
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    watchdog = _Watchdog(timeout)
    opener = urllib.request.build_opener(_HTTPHandler(watchdog), _HTTPSHandler(watchdog))
    start = time.monotonic()
    watchdog.start()
    chunks: list[bytes] = []
    try:
        with opener.open(request, timeout=timeout) as response:
            content_type = str(response.headers.get("Content-Type", ""))
            declared = response.headers.get("Content-Length")
            total = int(declared) if declared and declared.isdigit() else None
            if total is not None and total > limit:
                raise TooLargeError(total, limit)
            done = 0
            while block := response.read1(1 << 16) if hasattr(response, "read1") else response.read(1 << 16):
                done += len(block)
                if done > limit:
                    raise TooLargeError(done, limit)
                if sink is not None:
                    sink.write(block)
                else:
                    chunks.append(block)
                if on_progress:
                    on_progress(done, total)
                if watchdog.fired:
                    break
            if total is not None and done < total and not watchdog.fired:
                raise http.client.IncompleteRead(b"", total - done)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if watchdog.fired:
            raise _stalled(url, timeout, start) from None
        if isinstance(exc, ValueError):  # e.g. an unknown URL type
            raise urllib.error.URLError(str(exc)) from exc
        raise
    finally:
        watchdog.cancel()
    if watchdog.fired:
        raise _stalled(url, timeout, start)
    return b"".join(chunks), content_type


def _stalled(url: str, timeout: float, start: float) -> RemoteUnreachableError:
    return RemoteUnreachableError(
        f"{url} did not answer completely within {timeout:g} s (network-timeout; stopped after "
        f"{time.monotonic() - start:.0f} s)",
        "the server is stalled or far too slow: try again later or another index-url; raise "
        "[tool.llama-toolchain] network-timeout for a slow link",
    )
