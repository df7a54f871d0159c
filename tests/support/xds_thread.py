"""The daemon's gRPC server (ADS, and any other service) with its SnapshotCache, on a loop in a background thread.

For tests whose own thread drives real Envoys: the cache is loop-bound (``publish`` must run on the loop), so
every method hops onto the loop and blocks the calling thread until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import grpc

from reconciler.xds import SnapshotCache, SnapshotSource, start_server

__all__ = ["XdsThread"]

T = TypeVar("T")

#: Seconds one hop onto the loop may take: generous, a loaded machine included.
HOP_TIMEOUT = 30.0


class XdsThread:
    """A started server on 127.0.0.1 (``port`` 0: a free one); always :meth:`close` it."""

    def __init__(
        self, *, port: int = 0, services: Sequence[Callable[[grpc.aio.Server], None]] = (), name: str = "xds-loop"
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.cache = SnapshotCache()
        try:
            self.server = self.run(start_server(cache=self.cache, address=f"127.0.0.1:{port}", services=services))
        except BaseException:
            self._stop_loop()
            raise

    @property
    def port(self) -> int:
        return self.server.port

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float = HOP_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        async def on_loop() -> T:
            return function(*args)

        return self.run(on_loop())

    def publish(self, source: SnapshotSource) -> int:
        return self.call(self.cache.publish, source)

    def close(self) -> None:
        """Stop the server (every stream ends at once, as when the daemon dies) and the loop."""
        with contextlib.suppress(Exception):
            self.run(self.server.stop(grace=0))
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10.0)
        self._loop.close()
