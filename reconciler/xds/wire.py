"""Discovery responses written straight from resources serialized once.

A snapshot's resources are packed into ``Any`` when it is built
(:class:`~reconciler.translate.snapshot.Resource`); a response is those bytes framed as
protobuf fields, so sending a resource to a thousand proxies costs a thousand copies of
its bytes, not a thousand serializations. The framing of a whole resource set (the bulk
of every full response) is kept by :class:`Encoder`, keyed by the set's content hash, and
shared by every stream that sends the same set. Pure functions but for that bounded cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from reconciler.translate.snapshot import Resource

__all__ = ["MAX_CACHED_BODIES", "Encoder", "encode_delta_response", "encode_response"]

#: Framed resource sets kept for reuse: a few per type for each proxy shape served at once.
MAX_CACHED_BODIES = 256

# Field numbers of envoy.service.discovery.v3.DiscoveryResponse, DeltaDiscoveryResponse and Resource.
_SOTW_VERSION, _SOTW_RESOURCES, _SOTW_TYPE_URL, _SOTW_NONCE = 1, 2, 4, 5
_DELTA_VERSION, _DELTA_RESOURCES, _DELTA_TYPE_URL, _DELTA_NONCE, _DELTA_REMOVED = 1, 2, 4, 5, 6
_RESOURCE_VERSION, _RESOURCE_ANY, _RESOURCE_NAME = 1, 2, 3


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes and embedded messages."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _sotw_entries(resources: Iterable[Resource]) -> bytes:
    return b"".join(_field(_SOTW_RESOURCES, resource.packed) for resource in resources)


def _delta_entries(resources: Iterable[Resource]) -> bytes:
    return b"".join(
        _field(
            _DELTA_RESOURCES,
            _field(_RESOURCE_VERSION, resource.version.encode())
            + _field(_RESOURCE_ANY, resource.packed)
            + _field(_RESOURCE_NAME, resource.name.encode()),
        )
        for resource in resources
    )


def encode_response(*, version: str, type_url: str, nonce: str, body: bytes) -> bytes:
    """A serialized ``DiscoveryResponse``; ``body`` is :meth:`Encoder.sotw_body` of its resources."""
    # One join, one copy of the (shared, often megabytes) body per response; chained + would copy it three times.
    return b"".join(
        (
            _field(_SOTW_VERSION, version.encode()),
            body,
            _field(_SOTW_TYPE_URL, type_url.encode()),
            _field(_SOTW_NONCE, nonce.encode()),
        )
    )


def encode_delta_response(
    *, system_version: str, type_url: str, nonce: str, body: bytes, removed: Iterable[str] = ()
) -> bytes:
    """A serialized ``DeltaDiscoveryResponse``; ``body`` is :meth:`Encoder.delta_body` of its resources."""
    return b"".join(
        (
            _field(_DELTA_VERSION, system_version.encode()),
            body,
            _field(_DELTA_TYPE_URL, type_url.encode()),
            _field(_DELTA_NONCE, nonce.encode()),
            *(_field(_DELTA_REMOVED, name.encode()) for name in removed),
        )
    )


class Encoder:
    """Frames resources into response bodies, once per distinct set (least recently used dropped first).

    ``key`` is the content hash of exactly the resources given (a :class:`ResourceSet`'s version
    when a stream sends the whole set); ``None`` frames them without caching.
    """

    def __init__(self, *, max_bodies: int = MAX_CACHED_BODIES) -> None:
        self._max = max_bodies
        self._bodies: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def sotw_body(self, type_url: str, resources: Iterable[Resource], *, key: str | None) -> bytes:
        return self._body(("sotw", type_url, key), resources, frame=_sotw_entries)

    def delta_body(self, type_url: str, resources: Iterable[Resource], *, key: str | None) -> bytes:
        return self._body(("delta", type_url, key), resources, frame=_delta_entries)

    def _body(
        self,
        cache_key: tuple[str, str, str | None],
        resources: Iterable[Resource],
        *,
        frame: Callable[[Iterable[Resource]], bytes],
    ) -> bytes:
        kind, type_url, key = cache_key
        if key is None:
            return frame(resources)
        full_key = (kind, type_url, key)
        body = self._bodies.get(full_key)
        if body is None:
            body = self._bodies[full_key] = frame(resources)
            while len(self._bodies) > self._max:
                self._bodies.popitem(last=False)
        else:
            self._bodies.move_to_end(full_key)
        return body
