"""Tiny real HTTP/1.1 upstreams that answer with their version, for tests, the demo and benchmarks.

An :class:`UpstreamServer` named ``v1`` answers every request (any method, any path) with
status 200, body ``v1`` and header ``x-version: v1``, over keep-alive connections like a
real service behind Envoy. At runtime it can be told to fail (a status for a fraction of
requests) or to be slow (a fixed delay), and it records what it saw so a test can check,
for example, that mirrored traffic arrived (Envoy appends ``-shadow`` to a mirror's Host).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Self, cast

from reconciler.errors import UsageError
from reconciler.harness.lifecycle import Lifecycle

__all__ = ["VERSION_HEADER", "RecordedRequest", "UpstreamServer"]

#: Response header naming the upstream that answered; the traffic generator counts by it.
VERSION_HEADER = "x-version"
_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the upstream received it. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int
    received_at: float = field(compare=False)


class UpstreamServer(Lifecycle):
    """A threaded HTTP/1.1 server on ``host:port`` (port 0: any free port) answering as ``version``.

    Failure injection is deterministic rather than random so tests can assert exact
    numbers: with ``fail(fraction=0.25)`` exactly every fourth request fails.
    """

    def __init__(self, version: str, *, host: str = "127.0.0.1", port: int = 0, max_recorded: int = 1000) -> None:
        if not version or any(ch in version for ch in "\r\n"):
            raise UsageError(f"upstream version must be a non-empty single-line name, got {version!r}")
        self.version = version
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._fail_status = 0
        self._fail_fraction = 0.0
        self._fail_credit = 0.0
        self._delay = 0.0
        self._count = 0
        self._recorded: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread."""
        if self._server is not None:
            raise UsageError(f"upstream {self.version} is already running")
        try:
            server = _Server((self._host, self._requested_port), _Handler, upstream=self)
        except OSError as error:
            raise UsageError(
                f"upstream {self.version} cannot listen on {self._host}:{self._requested_port}: {error}"
            ) from error
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            # A short poll keeps stop() quick; the loop is otherwise idle in select().
            kwargs={"poll_interval": 0.05},
            name=f"upstream-{self.version}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and drop open keep-alive connections, like a process that died. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port actually bound (known once started)."""
        if self._server is None:
            raise UsageError(f"upstream {self.version} is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` for direct requests that bypass Envoy."""
        return f"http://{self.host}:{self.port}"

    # -- behaviour -----------------------------------------------------------------------

    def fail(self, *, status: int = 503, fraction: float = 1.0) -> None:
        """Answer ``status`` for ``fraction`` (0..1) of the following requests, spread evenly."""
        if not 100 <= status <= 599:
            raise UsageError(f"status must be an HTTP status 100..599, got {status}")
        if not 0.0 <= fraction <= 1.0:
            raise UsageError(f"fraction must be between 0 and 1, got {fraction}")
        with self._lock:
            self._fail_status = status
            self._fail_fraction = fraction
            self._fail_credit = 0.0

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each following request (0 turns it off)."""
        if seconds < 0:
            raise UsageError(f"delay must not be negative, got {seconds}")
        with self._lock:
            self._delay = seconds

    def heal(self) -> None:
        """Stop failing and delaying: answer 200 at once again."""
        with self._lock:
            self._fail_status = 0
            self._fail_fraction = 0.0
            self._fail_credit = 0.0
            self._delay = 0.0

    # -- what it saw -----------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Requests received since start (or the last :meth:`reset_records`)."""
        with self._lock:
            return self._count

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests (up to ``max_recorded``), oldest first."""
        with self._lock:
            return list(self._recorded)

    @property
    def last_headers(self) -> Mapping[str, str] | None:
        """Headers of the latest request (lower-case names), or None before the first."""
        with self._lock:
            return self._recorded[-1].headers if self._recorded else None

    def reset_records(self) -> None:
        """Forget counted and recorded requests (behaviour settings stay)."""
        with self._lock:
            self._count = 0
            self._recorded.clear()

    # -- used by the handler ---------------------------------------------------------------

    def _decide(self) -> tuple[int, float]:
        """Count a request and choose its status and delay."""
        with self._lock:
            self._count += 1
            status = 200
            if self._fail_fraction > 0.0:
                # Error diffusion: accumulate the fraction, fail whenever a whole request is owed.
                self._fail_credit += self._fail_fraction
                if self._fail_credit >= 1.0 - 1e-9:
                    self._fail_credit -= 1.0
                    status = self._fail_status
            return status, self._delay

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._recorded.append(request)

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Envoy may open many upstream connections at once during a burst.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, upstream: UpstreamServer
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.upstream = upstream
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Ignore peers that drop connections (Envoy closing pooled ones, a stop()); report the rest."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so connections stay open between requests, as they do behind Envoy.
    protocol_version = "HTTP/1.1"
    server_version = "reconciler-upstream"
    # Headers and body go out in two writes; with Nagle on, the second waits for the peer's
    # delayed ACK (~40 ms) and every keep-alive request would look 40 ms slow.
    disable_nagle_algorithm = True

    @property
    def _upstream(self) -> UpstreamServer:
        return cast(_Server, self.server).upstream

    def setup(self) -> None:
        super().setup()
        self._upstream._track(self.connection, open_=True)

    def finish(self) -> None:
        self._upstream._track(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Silent: tests send thousands of requests."""

    def _answer(self) -> None:
        upstream = self._upstream
        body = self._read_body()
        status, delay = upstream._decide()
        headers = MappingProxyType({name.lower(): value for name, value in self.headers.items()})
        upstream._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers=headers,
                body=body,
                status=status,
                received_at=time.time(),
            )
        )
        if delay > 0:
            time.sleep(delay)
        text = upstream.version if status < 400 else f"{upstream.version} failed with {status}"
        payload = text.encode("utf-8")
        self.send_response(status)
        self.send_header(VERSION_HEADER, upstream.version)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked()
        remaining = int(self.headers.get("content-length") or 0)
        kept = b""
        while remaining > 0:
            # Read everything so the keep-alive connection stays in sync; keep only a bounded prefix.
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
            if len(kept) < _MAX_BODY:
                kept += chunk[: _MAX_BODY - len(kept)]
        return kept

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self.rfile.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailer section ends with an empty line.
                while self.rfile.readline(1024) not in {b"\r\n", b"\n", b""}:
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    do_GET = _answer
    do_POST = _answer
    do_PUT = _answer
    do_PATCH = _answer
    do_DELETE = _answer
    do_HEAD = _answer
    do_OPTIONS = _answer
