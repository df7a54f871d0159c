"""State-of-the-world requests parsed once for every stream that sends the same bytes.

Proxies of one shape answer a push with byte-identical requests: a response of a shared set
carries the same nonce on every stream (:mod:`reconciler.xds.wire`), and the ACK repeats the
type, version, nonce and every subscribed name. An EDS ACK names every cluster (~140 KB at
1,000 services); parsing it and turning its names into a set cost most of the server's CPU for
an endpoint push to a thousand streams. :class:`RecentRequests` is the server's deserializer:
bytes equal to a request it parsed a moment ago give back that same (immutable, never
modified) request object, and the subscription derived from it once (the interned frozenset of
:meth:`reconciler.xds.shared.Shared.names`) goes with it.

An entry lives only while streams keep sending its bytes: it is dropped ``keep_seconds`` after it
was last used, and the entries are bounded in number and in bytes, so an idle server holds none
(an idle stream keeps nothing of the large requests it read: ``tests/xds/test_xds_idle_memory.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2

__all__ = ["KEEP_SECONDS", "MAX_BYTES", "MAX_ENTRIES", "MIN_BYTES", "RecentRequests"]

#: Requests shorter than this are parsed every time (cheaper than looking them up).
MIN_BYTES = 1024
#: Distinct large requests kept at once: the ACKs of a push are one or two distinct ones per type and set.
MAX_ENTRIES = 8
#: The most request bytes kept at once (a parsed request costs more again): a dozen EDS ACKs at 1,000 services.
MAX_BYTES = 2 << 20
#: How long an entry outlives its last use (by the parser or a session): the ACKs of one push arrive within a second.
KEEP_SECONDS = 1.0
#: The trailing bytes a request is looked up by (type URL and nonce end an ACK); a hit is only used when equal.
_TAIL = 96


@dataclass(slots=True, eq=False)
class _Entry:
    key: tuple[int, bytes]
    data: bytes
    request: discovery_pb2.DiscoveryRequest
    used: float
    names: frozenset[str] | None = None


class RecentRequests:
    """The server's ``DiscoveryRequest`` deserializer, reusing what it parsed from equal bytes a moment ago.

    ``intern`` turns resource names into the frozenset every stream with exactly those names shares.
    Runs on the event loop thread (gRPC's asyncio server deserializes there), whose timer drops
    unused entries; without a running loop it only parses.
    """

    def __init__(
        self,
        *,
        intern: Callable[[Iterable[str]], frozenset[str]],
        keep_seconds: float = KEEP_SECONDS,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._intern = intern
        self._keep = keep_seconds
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        # (length, trailing bytes) → entry, least recently used first; and the same entries by request identity
        # (valid while the entry holds its request).
        self._entries: OrderedDict[tuple[int, bytes], _Entry] = OrderedDict()
        self._by_request: dict[int, _Entry] = {}
        self._bytes = 0
        self._expiry: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, data: bytes) -> discovery_pb2.DiscoveryRequest:
        """The request ``data`` encodes: the very object parsed before if equal bytes came recently."""
        if len(data) < MIN_BYTES:
            return discovery_pb2.DiscoveryRequest.FromString(data)
        key = (len(data), data[-_TAIL:])
        entry = self._entries.get(key)
        if entry is not None and entry.data == data:
            entry.used = time.monotonic()
            self._entries.move_to_end(key)
            return entry.request
        request = discovery_pb2.DiscoveryRequest.FromString(data)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return request
        if len(data) <= self._max_bytes:
            if entry is not None:
                self._drop(key)
            self._add(_Entry(key=key, data=data, request=request, used=time.monotonic()), loop=loop)
        return request

    def resource_names(self, request: discovery_pb2.DiscoveryRequest) -> frozenset[str]:
        """``request``'s resource names, interned; derived once for a request this parser handed out recently."""
        entry = self._by_request.get(id(request))
        if entry is None or entry.request is not request:
            return self._intern(request.resource_names)
        # A stream handles a request a while after it was read: the entry lives on from its last use by either.
        entry.used = time.monotonic()
        self._entries.move_to_end(entry.key)
        if entry.names is None:
            entry.names = self._intern(request.resource_names)
        return entry.names

    def _add(self, entry: _Entry, *, loop: asyncio.AbstractEventLoop) -> None:
        self._entries[entry.key] = entry
        self._by_request[id(entry.request)] = entry
        self._bytes += len(entry.data)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))
        if self._expiry is None:
            self._expiry = loop.call_later(self._keep, self._expire)

    def _drop(self, key: tuple[int, bytes]) -> None:
        entry = self._entries.pop(key)
        del self._by_request[id(entry.request)]
        self._bytes -= len(entry.data)

    def _expire(self) -> None:
        """Drop the entries unused for ``keep_seconds``; check again when the next one would be."""
        self._expiry = None
        now = time.monotonic()
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if oldest.used > now - self._keep:
                self._expiry = asyncio.get_running_loop().call_later(oldest.used + self._keep - now, self._expire)
                return
            self._drop(key)
