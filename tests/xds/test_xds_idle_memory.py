"""What the ADS server keeps for an idle stream does not grow with the size of the requests it read.

A state-of-the-world EDS ACK names every subscribed cluster (~140 KB at 1,000 services), and the last
request a stream read stays its last while the proxy idles: neither gRPC's read buffer for the
connection nor the request itself may stay behind (docs/benchmarks.md, session 10). Measured as the
C heap in use (glibc's ``mallinfo2``, every arena) in this process, with the clients in a child process,
once the streams idled longer than the server keeps a request it may parse again (``requests.KEEP_SECONDS``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import multiprocessing

import pytest
from idle_proxies import hold_idle_streams

from reconciler.translate import ProxyIdentity, Snapshot
from reconciler.xds import ProxyStatus, SnapshotCache, start_server
from reconciler.xds.requests import KEEP_SECONDS

pytestmark = pytest.mark.timeout(120)

STREAMS = 10
#: About 1.2 MB of names in an ACK: far above gRPC's first read size (8 KiB), under its 4 MiB message limit.
NAMES = [f"outbound|8080||service-{i:05d}.namespace.svc.cluster.local" for i in range(20_000)]


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _heap_in_use() -> int:
    """Bytes the C heap has handed out and not taken back (``malloc``'d, mmapped chunks included)."""
    name = ctypes.util.find_library("c")
    mallinfo2 = getattr(ctypes.CDLL(name), "mallinfo2", None) if name else None
    if mallinfo2 is None:
        pytest.skip("needs glibc's mallinfo2 (2.33 or later)")
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


class NothingToServe:
    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
        return Snapshot.build()


def test_an_idle_stream_keeps_no_more_after_megabyte_requests_than_after_small_ones() -> None:
    async def scenario() -> tuple[float, float]:
        cache = SnapshotCache()
        generation = cache.publish(NothingToServe())
        server = await start_server(cache=cache, address="127.0.0.1:0")
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        children = []

        async def idle_heap() -> int:
            """The heap in use once the server idled: its recent requests (kept while streams send the same bytes)
            expire on this loop; what earlier tests in this process left for the collector is freed first."""
            await asyncio.sleep(KEEP_SECONDS + 0.1)
            gc.collect()
            return _heap_in_use()

        async def idle_streams(names: list[str], *, first: int) -> float:
            """KiB of C heap per stream once ``STREAMS`` more proxies ACKed naming ``names`` and idle."""
            before = await idle_heap()
            node_ids = [f"idle-{index}" for index in range(first, first + STREAMS)]
            child = context.Process(target=hold_idle_streams, args=(server.address, node_ids, names, stop), daemon=True)
            child.start()
            children.append(child)

            def synced(statuses: tuple[ProxyStatus, ...]) -> bool:
                return len(statuses) == first + STREAMS and all(s.acked_generation >= generation for s in statuses)

            assert await cache.wait_until(synced, timeout=60.0)
            return (await idle_heap() - before) / STREAMS / 1024

        try:
            small = await idle_streams([], first=0)
            large = await idle_streams(NAMES, first=STREAMS)
        finally:
            stop.set()
            for child in children:
                await asyncio.to_thread(child.join, 10.0)
            await server.stop(grace=0)
        return small, large

    small, large = asyncio.run(scenario())

    # Unbounded, gRPC's read buffer alone keeps ~700 KiB per stream here, the last request ~2 MB.
    assert large - small < 64, f"{small:.0f} KiB per stream after small requests, {large:.0f} after 1.2 MB ones"
