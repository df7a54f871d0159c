"""Discovery responses written straight from resources serialized once.

A snapshot's resources are packed into ``Any`` when it is built
(:class:`~reconciler.translate.snapshot.Resource`); a response is those bytes framed as
protobuf fields, so sending a resource to a thousand proxies costs no serialization: one
join copies every resource's bytes (whole, or the pieces a patched route table is kept in,
:class:`~reconciler.translate.snapshot.Pieces`) between the response's own fields. A
response carrying a whole resource set (the bulk of every push) is framed once by
:class:`Encoder`, nonce included, and the same bytes object goes to every stream that sends
that set: a push to a thousand proxies costs one copy of it, not a thousand. A response only
one stream has sent would be a second copy of its resources' bytes (a sidecar shape's own route
table: hundreds of kilobytes), so it is not kept: the encoder notes that it was sent, and the
second stream that sends it frames it again and keeps that copy for the rest. Pure functions but
for those bounded caches.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from reconciler.translate.protos import varint
from reconciler.translate.snapshot import Resource

__all__ = ["MAX_CACHED_RESPONSES", "MAX_UNSHARED_RESPONSES", "Encoder", "Framed"]

#: Framed responses kept for reuse once two streams sent them: a few per type for each proxy shape served at once.
MAX_CACHED_RESPONSES = 256
#: Responses one stream sent so far that are remembered (by key and serial, not bytes): the second stream of a shape
#: to send one frames it again and keeps it for the others. Forgotten sooner, a response is framed once more.
MAX_UNSHARED_RESPONSES = 1024

# Field numbers of envoy.service.discovery.v3.DiscoveryResponse, DeltaDiscoveryResponse and Resource.
_SOTW_VERSION, _SOTW_RESOURCES, _SOTW_TYPE_URL, _SOTW_NONCE = 1, 2, 4, 5
_DELTA_VERSION, _DELTA_RESOURCES, _DELTA_TYPE_URL, _DELTA_NONCE, _DELTA_REMOVED = 1, 2, 4, 5, 6
_RESOURCE_VERSION, _RESOURCE_ANY, _RESOURCE_NAME = 1, 2, 3


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes and embedded messages."""
    return varint(number << 3 | 2) + varint(len(data)) + data


#: What a response's body is framed from: bytes and views of resources' bytes, joined once (:meth:`Encoder._framed`).
_Chunks = list[bytes | memoryview]


def _sotw_entries(resources: Iterable[Resource]) -> _Chunks:
    chunks: _Chunks = []
    tag = varint(_SOTW_RESOURCES << 3 | 2)
    for resource in resources:
        chunks.append(tag + varint(resource.size))
        chunks.extend(resource.chunks())
    return chunks


def _delta_entries(resources: Iterable[Resource]) -> _Chunks:
    chunks: _Chunks = []
    for resource in resources:
        version = _field(_RESOURCE_VERSION, resource.version.encode())
        wrapped = varint(_RESOURCE_ANY << 3 | 2) + varint(resource.size)
        name = _field(_RESOURCE_NAME, resource.name.encode())
        length = len(version) + len(wrapped) + resource.size + len(name)
        chunks.append(varint(_DELTA_RESOURCES << 3 | 2) + varint(length) + version + wrapped)
        chunks.extend(resource.chunks())
        chunks.append(name)
    return chunks


@dataclass(frozen=True, slots=True)
class Framed:
    """A whole discovery response: its nonce, the serial the nonce was made from, and its bytes."""

    serial: int
    nonce: str
    data: bytes


class Encoder:
    """Frames whole responses, once per distinct response for every stream (least recently used dropped first).

    ``key`` is the content hash of exactly the resources given (a :class:`ResourceSet`'s version
    when a stream sends the whole set); ``None`` frames a response of this stream's own.
    A response is a few hundred kilobytes to megabytes: framed per stream, a push to a thousand
    proxies would allocate (and fault in) a copy for each while they queue in gRPC. A response
    no second stream has asked for is not kept, only remembered (the last ``max_unshared`` such):
    a sidecar shape of its own keeps no copy of its route table here, and a set that streams share
    is framed twice per push (by the first stream and the second), then shared.

    The nonce is part of the bytes, so streams that share a response share its nonce. A nonce
    must never repeat on a stream (a late answer to an earlier response would pass for an
    answer to the latest), so nonces are ``<token>-<serial>`` with a serial that only grows,
    and a shared response is handed out only to a stream whose previous response of that type
    has a lower serial (``after``); otherwise it is framed again under a new serial.
    """

    def __init__(
        self, *, max_responses: int = MAX_CACHED_RESPONSES, max_unshared: int = MAX_UNSHARED_RESPONSES
    ) -> None:
        # Random per encoder (per server): a nonce of another server process never passes as one of ours.
        self._token = secrets.token_hex(4)
        self._serials = itertools.count(1)
        # cache key -> (response, where its body starts and ends in the bytes): sent by two streams or more.
        self._shared: _Responses = _Responses(max_responses)
        # Responses one stream was sent so far: not their bytes, the serial they went out under (newest last).
        self._unshared: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._max_unshared = max_unshared

    def sotw(
        self, *, type_url: str, version: str, resources: Iterable[Resource], key: str | None, after: int
    ) -> Framed:
        """A ``DiscoveryResponse`` carrying ``resources`` at ``version``, with a nonce above serial ``after``."""
        return self._framed(
            None if key is None else ("sotw", type_url, version, key),
            after=after,
            head=_field(_SOTW_VERSION, version.encode()),
            tail=_field(_SOTW_TYPE_URL, type_url.encode()),
            nonce_field=_SOTW_NONCE,
            entries=lambda: _sotw_entries(resources),
        )

    def delta(
        self,
        *,
        type_url: str,
        system_version: str,
        resources: Iterable[Resource],
        removed: Sequence[str] = (),
        key: str | None,
        after: int,
    ) -> Framed:
        """A ``DeltaDiscoveryResponse`` carrying ``resources`` and dropping ``removed``, nonce above ``after``."""
        return self._framed(
            None if key is None or removed else ("delta", type_url, system_version, key),
            after=after,
            head=_field(_DELTA_VERSION, system_version.encode()),
            # Field order is free in protobuf: the removed names go before the nonce, which comes last.
            tail=b"".join(
                (
                    _field(_DELTA_TYPE_URL, type_url.encode()),
                    *(_field(_DELTA_REMOVED, name.encode()) for name in removed),
                )
            ),
            nonce_field=_DELTA_NONCE,
            entries=lambda: _delta_entries(resources),
        )

    def _framed(
        self,
        cache_key: tuple[str, ...] | None,
        *,
        after: int,
        head: bytes,
        tail: bytes,
        nonce_field: int,
        entries: Callable[[], _Chunks],
    ) -> Framed:
        found = self._shared.get(cache_key) if cache_key is not None else None
        if found is not None:
            framed, start, end = found
            if framed.serial > after:
                return framed
            # This stream had it already: the same body under a new nonce.
            body: _Chunks = [memoryview(framed.data)[start:end]]
        else:
            body = entries()
        serial = next(self._serials)
        nonce = f"{self._token}-{serial}"
        # One join: one copy of the resources' bytes (whether kept whole or in pieces), whatever surrounds them.
        framed = Framed(
            serial=serial, nonce=nonce, data=b"".join((head, *body, tail, _field(nonce_field, nonce.encode())))
        )
        if cache_key is None:
            return framed
        size = sum(map(len, body))
        sent = self._unshared.pop(cache_key, None)
        # Shared from the second stream on; a stream asking again for what it had (sent after its last) is not a second.
        if found is not None or (sent is not None and sent > after):
            self._shared.put(cache_key, (framed, len(head), len(head) + size))
        else:
            self._unshared[cache_key] = serial
            while len(self._unshared) > self._max_unshared:
                self._unshared.popitem(last=False)
        return framed


class _Responses:
    """Framed responses by cache key, the least recently used dropped beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[tuple[str, ...], tuple[Framed, int, int]] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> tuple[Framed, int, int] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[str, ...], entry: tuple[Framed, int, int]) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
