"""``run_daemon`` on its own event loop in a worker thread, as tools and benchmarks embed it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.engine.daemon import run_daemon
from reconciler.engine.settings import Settings

__all__ = ["daemon_thread"]


@contextmanager
def daemon_thread(settings: Settings) -> Iterator[tuple[int, int]]:
    """Run the daemon on its own loop in a thread; yield (xds_port, http_port); cancel it on exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ports: list[int] = []
    failure: list[BaseException] = []
    task: list[asyncio.Task[None]] = []

    def on_ready(xds_port: int, http_port: int) -> None:
        ports.extend((xds_port, http_port))
        ready.set()

    def main() -> None:
        async def serve() -> None:
            task.append(asyncio.current_task())  # type: ignore[arg-type]
            await run_daemon(settings, ready=on_ready)

        try:
            loop.run_until_complete(serve())
        except asyncio.CancelledError:
            pass
        except BaseException as error:
            failure.append(error)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="daemon", daemon=True)
    thread.start()
    assert ready.wait(timeout=20), "run_daemon never called ready()"
    assert not failure, failure
    try:
        yield ports[0], ports[1]
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(timeout=20)
        assert not thread.is_alive(), "run_daemon did not stop when cancelled"
        assert not failure, failure
