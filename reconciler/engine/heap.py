"""Freed heap handed back to the OS once a burst of xDS work is over (glibc's ``malloc_trim``).

A push frames responses of hundreds of kilobytes per proxy shape, a translation builds and drops
megabytes of messages, and gRPC reads each proxy's ACKs into buffers of its own; all of it is
freed when done, but glibc keeps freed pages mapped for reuse, so the daemon's RSS stays at its
peak after every burst (and a fleet of idle proxies looks several megabytes bigger than it is).
:class:`HeapTrimmer` watches the xDS cache's events and, once a burst has been quiet for a
moment, asks the C library to return whole free pages (``malloc_trim(0)``, a fraction of a
millisecond on a 200 MB heap, in a worker thread). Where the C library has no ``malloc_trim``
(musl, macOS) it does nothing.

The price: the first change after a trim writes into pages the OS hands back on first touch. A
one-host patch at 10,000 services writes ~7 MB (resource-set and name-set copies; its route table
is kept in pieces, not joined) and pays ~1,700 page faults, ~3 ms
(``bench/translate_bench.py --change --trim``).

:class:`StartupHeap` keeps the garbage collector out of the daemon's start: until the first pass is
done, automatic collection is paused, and then everything is collected once and frozen.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from types import TracebackType

import structlog

from reconciler.xds.cache import XdsEvent

__all__ = ["HeapTrimmer", "StartupHeap", "libc_trim"]

_log = structlog.get_logger()


def libc_trim() -> Callable[[], None] | None:
    """``malloc_trim(0)`` of the process's C library, if it has one."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)

    return run


class HeapTrimmer:
    """Trims the heap once xDS events (connects, pushes, ACKs) have been quiet for ``quiet`` seconds."""

    def __init__(
        self,
        *,
        quiet: float,
        trim: Callable[[], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._quiet = quiet
        self._trim = trim
        self._clock = clock
        self._last_event: float | None = None
        #: How many times the heap was trimmed (tests, logs).
        self.trims = 0

    def note(self, event: XdsEvent) -> None:
        """A cache listener (:meth:`~reconciler.xds.cache.SnapshotCache.add_listener`): the burst goes on."""
        del event  # any event: each one allocated and freed something
        self._last_event = self._clock()

    async def run(self) -> None:
        """Trim after every burst, until cancelled; returns at once when there is nothing to trim with."""
        trim = self._trim
        if trim is None or self._quiet <= 0:
            return
        while True:
            last = self._last_event
            if last is None:
                await asyncio.sleep(self._quiet)
                continue
            wait = last + self._quiet - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._last_event = None
            started = self._clock()
            await asyncio.to_thread(trim)
            self.trims += 1
            _log.debug("daemon.heap_trimmed", ms=round((self._clock() - started) * 1000, 2))


class StartupHeap:
    """Automatic garbage collection paused from :meth:`pause` until :meth:`freeze` (or the ``with`` block ends).

    The first pass (or the restore of the stored revision) builds the heap the daemon keeps: the
    config, its translation cache and snapshots, about 550,000 objects for a sidecar of 10,000
    services, nearly none of them garbage. Young collections along the way would walk each of them
    only to keep it (about 6 % of a cold 10,000-service translation's CPU), and the full collection
    before the freeze walks them all again anyway. Paused, they are walked once, by that collection.

    Memory: refcounting still frees all acyclic garbage while paused, and translation makes no cycles;
    cyclic garbage made meanwhile (the event loop's, loading's) waits for the collection before the
    freeze, at most one pass later (bounded like the pass: the source's timeout, then the abort).
    Every later pass collects as before (young collections within ``GC_THRESHOLDS``), and
    frozen objects still go with their last reference, so memory across revisions is what it was.
    """

    def __init__(self) -> None:
        self._resume = False

    def __enter__(self) -> StartupHeap:
        return self

    def pause(self) -> None:
        """Stop automatic collection (an embedder that turned it off keeps it off after)."""
        self._resume = self._resume or gc.isenabled()
        gc.disable()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._end_pause()

    def freeze(self) -> None:
        """Collect everything once, keep what is alive out of later full collections, and collect automatically again.

        CPython's full collection walks every tracked object: 0.15-0.3 s with 1,000 services, every few
        seconds while commits arrive, a pause of every ADS stream and pass. Unchanged files keep their
        decoded resources across commits (the decode cache), so most of the config stays in the frozen
        part. Collected first, so only garbage-free objects are frozen; acyclic ones are still freed.
        """
        gc.collect()
        gc.freeze()
        self._end_pause()

    def _end_pause(self) -> None:
        if self._resume:
            self._resume = False
            gc.enable()
