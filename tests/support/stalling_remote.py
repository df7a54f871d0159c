"""A git remote that can hang: a TCP front on loopback that forwards to a real server, or stalls.

:class:`StallingRemote` listens on ``127.0.0.1:port``. Forwarding (the default), every connection
is piped to ``target_port`` (``git daemon`` or an HTTP git server), byte for byte. After
:meth:`StallingRemote.stall`, new connections are accepted and then never answered: the way a
remote behind a wedged load balancer looks to git (the TCP handshake succeeds, nothing follows).
:meth:`StallingRemote.answer` closes the stalled connections and forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["StallingRemote"]

_CHUNK = 65536


class StallingRemote:
    """Use as ``with StallingRemote(target_port) as front:``; point git at ``front.port``."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stalling = threading.Event()
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._open: list[socket.socket] = []
        #: Connections accepted while stalling: one per attempt git made.
        self.stalled = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> StallingRemote:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        # shutdown() wakes the accept() blocked in the thread; close() alone does not (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            for connection in (*self._held, *self._open):
                connection.close()

    def stall(self) -> None:
        """Accept new connections and never answer them."""
        self._stalling.set()

    def answer(self) -> None:
        """Forward again; the connections held so far are closed."""
        self._stalling.clear()
        with self._lock:
            held, self._held = self._held, []
            for connection in held:
                connection.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._stalling.is_set():
                    self._held.append(client)
                    self.stalled += 1
                    continue
            try:
                server = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        # Pass the end on (git's protocol relies on it), then let the other pipe finish.
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
