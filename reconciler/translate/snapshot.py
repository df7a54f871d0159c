"""Whole, immutable, content-versioned sets of Envoy resources for one proxy.

A :class:`Snapshot` holds every Cluster, ClusterLoadAssignment, Listener and
RouteConfiguration a proxy should have. Versions are content hashes of the
deterministically serialized resources, per resource, per type and overall, so a
restart never reuses a version for different content and unchanged types are not resent.

Each resource is serialized once, when its set is built (in whatever thread translates),
into a :class:`Resource`: the message, its bytes packed as a ``google.protobuf.Any``, its
version and the names it points at. Every stream that sends it sends those bytes; none
packs or walks the message again. Clusters and load assignments arrive encoded already
(:meth:`Resource.of_bytes`, spliced from their template's bytes by
:mod:`reconciler.translate.clusters`), their messages parsed only when asked. A patched route
table keeps its bytes in the pieces it was spliced from (:class:`Pieces`), joined by the response
framing, which copies them anyway, or once, by whoever asks for them whole.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import (
    Callable,
    Hashable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeVar, overload

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import any_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from reconciler.errors import TranslationError
from reconciler.model.text import quote
from reconciler.translate.protos import read_varint, varint

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "MESSAGE_TYPES",
    "PUSH_ORDER",
    "ROUTE",
    "SHORT_NAMES",
    "BuildSet",
    "Encode",
    "Names",
    "Part",
    "Pieces",
    "Resource",
    "ResourceSet",
    "RouteHashes",
    "Snapshot",
    "Spliced",
    "Template",
    "clusters_of_virtual_host",
    "clusters_referenced_by_routes",
    "digest",
    "http_connection_managers",
    "messages",
    "resource_name",
    "resource_version",
    "set_version",
    "virtual_host_spans",
]

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

#: Make-before-break order: what a resource points at is sent before the resource.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

#: The short name of each type (logs, metrics, status), in the column order of ``istioctl proxy-status``.
SHORT_NAMES: Mapping[str, str] = MappingProxyType({CLUSTER: "CDS", LISTENER: "LDS", ENDPOINT: "EDS", ROUTE: "RDS"})

_MESSAGE_TYPES: Mapping[str, type[Message]] = MappingProxyType(
    {
        CLUSTER: cluster_pb2.Cluster,
        ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        LISTENER: listener_pb2.Listener,
        ROUTE: route_pb2.RouteConfiguration,
    }
)
#: The message class of each xDS type (to read a resource back, say from a proxy's config dump).
MESSAGE_TYPES = _MESSAGE_TYPES
_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def resource_name(message: Message) -> str:
    """The xDS name of a resource: ``cluster_name`` for load assignments, else ``name``."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return str(message.cluster_name)
    return str(getattr(message, "name"))  # noqa: B009 - every other xDS resource has `name`


def digest(chunks: Iterable[bytes | memoryview]) -> str:
    """A short SHA-256 of ``chunks``, framed: each chunk's length follows it (one way to read them back)."""
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
        hasher.update(len(chunk).to_bytes(8, "big"))
    return hasher.hexdigest()[:16]


def resource_version(type_url: str, name: str, data: bytes) -> str:
    """The version of the resource ``name`` of ``type_url`` serialized as ``data``: a hash of both.

    ``digest((name, data))``, but a RouteConfiguration's is made of its virtual hosts' hashes
    (:class:`RouteHashes`), so a patch of a few of 11,000 virtual hosts does not hash 10 MB again.
    """
    if type_url != ROUTE:
        return digest((name.encode(), data))
    view = memoryview(data)
    head, spans, tail = virtual_host_spans(data, 0, len(data))
    hashes = RouteHashes.of([hashlib.sha256(view[start:end]).digest() for start, end in spans])
    return hashes.version(name, prefix=view[:head], suffix=view[tail:])


#: Field 2 of a RouteConfiguration (virtual_hosts), length-delimited.
_VIRTUAL_HOSTS_TAG = 0x12


def virtual_host_spans(data: bytes, start: int, end: int) -> tuple[int, list[tuple[int, int]], int]:
    """Where the virtual hosts of the RouteConfiguration serialized in ``data[start:end]`` lie.

    Where their fields start, each one's message (start, end), where their fields end. Deterministic
    serialization writes fields in number order: the name (field 1), then the virtual hosts (field 2).
    """
    position = start
    if position < end and data[position] == 0x0A:
        length, position = read_varint(data, position + 1)
        position += length
    head = position
    spans = []
    while position < end and data[position] == _VIRTUAL_HOSTS_TAG:
        length, body = read_varint(data, position + 1)
        position = body + length
        spans.append((body, position))
    return head, spans, position


@dataclass(frozen=True, slots=True)
class RouteHashes:
    """What a RouteConfiguration's version hashes: each virtual host's SHA-256, in groups cut by content.

    The version is a hash of the configuration's name, the bytes before and after its virtual hosts, and
    its groups' digests; a group's digest hashes its virtual hosts' hashes (``leaves``). A group ends at a
    virtual host whose hash starts below 4 (1 in 64), so editing a few virtual hosts rehashes those and
    their groups (:meth:`edited`), never the rest.
    """

    leaves: tuple[bytes, ...]
    ends: tuple[int, ...]
    digests: tuple[bytes, ...]

    @classmethod
    def of(cls, leaves: Sequence[bytes]) -> RouteHashes:
        ends, digests = _groups(leaves, 0, len(leaves), _leaf_ends_group)
        return cls(leaves=tuple(leaves), ends=tuple(ends), digests=tuple(digests))

    def group(self, index: int) -> int:
        """The group of the leaf at ``index`` (past the last: the last group)."""
        return min(bisect.bisect_right(self.ends, index), len(self.ends) - 1)

    def edited(self, leaves: Sequence[bytes], grown: Mapping[int, int]) -> RouteHashes:
        """The hashes of ``leaves``: these with the groups of ``grown`` edited (grown by so many leaves)."""
        if not self.ends:
            return RouteHashes.of(leaves)
        ends, digests = _regrouped(self.ends, self.digests, leaves, grown, _leaf_ends_group)
        return RouteHashes(leaves=tuple(leaves), ends=tuple(ends), digests=tuple(digests))

    def version(self, name: str, *, prefix: bytes | memoryview, suffix: bytes | memoryview) -> str:
        return digest((name.encode(), prefix, b"".join(self.digests), suffix))


def _leaf_ends_group(leaf: bytes) -> bool:
    return leaf[0] < _LEAF_END


_LEAF_END = 4


@dataclass(frozen=True, slots=True)
class Part:
    """A sub-message spliced into resources (see :class:`Template`), as the constraint check reads it.

    Parts of one ``shape`` are equal but for the scalar ``values``, each given as (message type,
    field name, the field's value, set).
    """

    message: Message
    shape: Hashable
    values: tuple[tuple[Descriptor, str, object], ...]


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """What the resources spliced from one template's bytes share (see :class:`Spliced`).

    They are equal but for their name, which the ``named`` fields (message type, field name)
    hold, and for their parts: serialized sub-messages (that ``part`` reads) spliced into the
    ``counted`` repeated fields, whose number of items varies. Compared by identity.
    """

    named: tuple[tuple[Descriptor, str], ...]
    counted: tuple[tuple[Descriptor, str], ...] = ()
    part: Callable[[bytes], Part] | None = None


@dataclass(frozen=True, slots=True)
class Spliced:
    """How a resource was made: ``template``'s bytes with its name and ``parts`` written in.

    The Envoy-constraint check reads it: what one resource of a template proved of the template,
    and what one check of a part proved of it, holds for every resource made of them.
    """

    template: Template
    parts: tuple[bytes, ...] = ()


class Pieces:
    """Bytes kept as the pieces they are made of, joined only when someone asks for them whole.

    A patched route table is runs of the one before it and the virtual hosts that changed
    (:mod:`reconciler.translate.patch`): joined, it would be 10 MB written into fresh memory per patch,
    which the response framing (:mod:`reconciler.xds.wire`) copies again anyway. So the framing takes
    the pieces and joins them with its own fields, and :meth:`whole` joins them once (then keeps the
    joined bytes alone) for what needs the bytes in one piece. Pieces are bytes or memoryviews of bytes,
    never changed; a slice (:meth:`slice`) views them, it copies nothing.
    """

    __slots__ = ("_kept", "size")

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        kept = tuple(piece for piece in pieces if len(piece))
        # The pieces and where each starts (the last entry: the size), in one attribute: swapped at once by whole().
        self._kept: tuple[tuple[bytes | memoryview, ...], tuple[int, ...]] = (
            kept,
            (0, *itertools.accumulate(map(len, kept))),
        )
        self.size = self._kept[1][-1]

    def pieces(self) -> tuple[bytes | memoryview, ...]:
        return self._kept[0]

    def whole(self) -> bytes:
        """The bytes, joined once (the pieces are dropped then: what they view is freed if nothing else does)."""
        pieces = self._kept[0]
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        joined = b"".join(pieces)
        # The same bytes either way: a thread reading the pieces meanwhile reads what it would have.
        self._kept = ((joined,), (0, len(joined)))
        return joined

    def slice(self, start: int, stop: int) -> list[memoryview]:
        """Views of the bytes from ``start`` to ``stop`` (within the size), one per piece they span."""
        pieces, starts = self._kept
        found = []
        index = bisect.bisect_right(starts, start) - 1
        while start < stop:
            begin = starts[index]
            piece = memoryview(pieces[index])
            end = min(stop, begin + len(piece))
            found.append(piece[start - begin : end - begin])
            start = end
            index += 1
        return found

    def read(self, start: int, stop: int) -> bytes:
        """The bytes from ``start`` to ``stop`` (clipped to the size), copied."""
        stop = min(stop, self.size)
        found = self.slice(start, stop)
        return bytes(found[0]) if len(found) == 1 else b"".join(found)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Pieces):
            return other is self or self.whole() == other.whole()
        if isinstance(other, bytes):
            return self.whole() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.whole())


@dataclass(frozen=True, slots=True)
class Resource:
    """One xDS resource, serialized once.

    ``content`` is the resource as a serialized ``google.protobuf.Any`` (what goes on the wire): one
    bytes object, or :class:`Pieces` (a patched route table) the response framing joins with its own
    fields (:meth:`chunks`); ``packed`` gives the bytes whole either way. ``version`` is a hash of its
    name and content; ``references`` the names of the resources it points at: a route configuration's
    clusters, an EDS cluster's load assignment, a listener's route configurations. ``message`` is the
    resource as a message: the one it was serialized from, or (for a resource spliced together from
    bytes, :meth:`of_bytes`, :mod:`reconciler.translate.patch`, or one :meth:`ResourceSet.shed` its
    message) parsed from ``packed`` each time it is asked: a served route table's message is megabytes
    that nothing on the serving path needs. ``made`` says how a resource :meth:`of_bytes` was spliced
    (for checking it without parsing it).
    """

    name: str
    content: bytes | Pieces
    version: str
    references: frozenset[str]
    parsed: Message | None = field(default=None, compare=False, repr=False)
    made: Spliced | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, type_url: str, message: Message, *, names: Names | None = None) -> Resource:
        """``message`` serialized; ``names`` (say, a translation cache's) gives the frozenset kept as ``references``."""
        references = _references(message)
        return cls.of_bytes(
            type_url,
            resource_name(message),
            message.SerializeToString(deterministic=True),
            references=references if names is None else names(references),
            parsed=message,
        )

    @classmethod
    def of_bytes(
        cls,
        type_url: str,
        name: str,
        data: bytes,
        *,
        references: frozenset[str],
        made: Spliced | None = None,
        parsed: Message | None = None,
        version: str | None = None,
    ) -> Resource:
        """The resource named ``name`` whose deterministic serialization is ``data`` (the same as :meth:`of` gives).

        ``references`` are what :meth:`of` would find in the message; without ``parsed``, the message
        is parsed when asked. ``version``: :func:`resource_version`'s, if the caller made it already (a route
        table built from its virtual hosts has their hashes).
        """
        return cls(
            name=name,
            content=_pack(type_url, data),
            version=version if version is not None else resource_version(type_url, name, data),
            references=references,
            parsed=parsed,
            made=made,
        )

    @property
    def packed(self) -> bytes:
        """The serialized ``Any``, in one piece (:class:`Pieces` are joined, once)."""
        content = self.content
        return content if isinstance(content, bytes) else content.whole()

    def chunks(self) -> Sequence[bytes | memoryview]:
        """The serialized ``Any`` as the pieces it is kept in (what a response frames: joined there, not here)."""
        content = self.content
        return (content,) if isinstance(content, bytes) else content.pieces()

    @property
    def size(self) -> int:
        """How many bytes the serialized ``Any`` has."""
        return len(self.content)

    @property
    def message(self) -> Message:
        """The resource as a message (parsed from ``packed``, not kept, if it holds none)."""
        if self.parsed is not None:
            return self.parsed
        wrapper = any_pb2.Any.FromString(self.packed)
        return _MESSAGE_TYPES[wrapper.type_url].FromString(wrapper.value)


def _pack(type_url: str, data: bytes) -> bytes:
    """``Any(type_url=type_url, value=data).SerializeToString()``, written directly (one copy of the data)."""
    prefix = _ANY_PREFIXES.get(type_url)
    if prefix is None or not data:
        return any_pb2.Any(type_url=type_url, value=data).SerializeToString()
    return b"".join((prefix, varint(len(data)), data))


#: A packed ``Any``'s bytes before its value's length, per type: the type URL (field 1), then field 2's tag.
_ANY_PREFIXES: Mapping[str, bytes] = MappingProxyType(
    {url: b"\x0a" + varint(len(url.encode())) + url.encode() + b"\x12" for url in _MESSAGE_TYPES}
)


#: Returns the one frozenset kept equal to the one given (:meth:`~reconciler.translate.memo.TranslationCache.names`).
Names = Callable[[frozenset[str]], frozenset[str]]

#: How a resource set gets each (type URL, message)'s :class:`Resource` (a translation cache keeps them).
Encode = Callable[[str, Message], Resource]


def set_version(resources: Iterable[Resource]) -> str:
    """The content hash of a set of resources, from their names and versions, in name order.

    A :class:`ResourceSet`'s version; a set a stream composes (the snapshot's plus what
    make-before-break keeps) has the same version as any set with the same content.
    """
    parts = [_part(item) for item in sorted(resources, key=lambda item: item.name)]
    return _setdigest(_groups(parts, 0, len(parts))[1])


def _part(item: Resource) -> bytes:
    """What a set's version hashes of one resource (framed as :func:`digest` frames each chunk)."""
    chunk = f"{item.name}\0{item.version}".encode()
    return chunk + len(chunk).to_bytes(8, "big")


def _ends_group(part: bytes) -> bool:
    """Whether the resource of ``part`` ends its group: its version ends in ``00`` to ``03`` (1 in 64 do).

    Groups are cut by content, so inserting, removing or replacing a resource rehashes its group
    (and at most the next), never the rest: a set of 40,000 is patched without hashing 3 MB again.
    """
    # A part ends with the version's last two hex digits, then the 8-byte length.
    return part[-9] == _ZERO and part[-10] < _FOUR


_ZERO, _FOUR = ord("0"), ord("4")


class _Parts(Sequence[bytes]):
    """What a set's version hashes of each resource (:func:`_part`), by position in name order, made when read.

    A patch rehashes only the groups it edits: their parts are made again then, none kept in between.
    """

    __slots__ = ("_items", "_names")

    def __init__(self, names: Sequence[str], items: Mapping[str, Resource]) -> None:
        self._names = names
        self._items = items

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        items = self._items
        if isinstance(index, slice):
            return [_part(items[name]) for name in self._names[index]]
        return _part(items[self._names[index]])

    def __len__(self) -> int:
        return len(self._names)


def _groups(
    parts: Sequence[bytes], start: int, stop: int, ends_group: Callable[[bytes], bool] = _ends_group
) -> tuple[list[int], list[bytes]]:
    """The groups of ``parts[start:stop]`` (the last one ends at ``stop``): where each ends, and its digest."""
    chunk = parts[start:stop]  # read once: a patched set's parts are made as they are read (_Parts)
    ends = [start + offset for offset, part in enumerate(chunk, 1) if ends_group(part)]
    if stop > start and (not ends or ends[-1] != stop):
        ends.append(stop)
    digests = []
    begin = 0
    for end in ends:
        digests.append(hashlib.sha256(b"".join(chunk[begin : end - start])).digest())
        begin = end - start
    return ends, digests


def _setdigest(digests: Iterable[bytes]) -> str:
    """A set's version: a SHA-256 of its groups' digests, in name order."""
    return hashlib.sha256(b"".join(digests)).hexdigest()[:16]


class _Messages(Mapping[str, Message]):
    """The messages of a set's resources, by name, read from the resources when asked (see :attr:`Resource.message`)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Resource]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> Message:
        return self._items[name].message

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def keys(self) -> KeysView[str]:
        # The items' own view: set operations on it (``references <= keys``) run in C, not name by name.
        return self._items.keys()


_T = TypeVar("_T")


class _Sorted(Mapping[str, Resource]):
    """Resources by name, iterated in the order of ``names`` (sorted), whatever order ``by_name`` holds them in.

    What a patched set keeps: adding a name to a set of 40,000 copies its dict (at C speed) and inserts
    the name into the sorted list, where a dict kept in name order would be built again, entry by entry.
    """

    __slots__ = ("_by_name", "_names")

    def __init__(self, by_name: dict[str, Resource], names: Sequence[str]) -> None:
        self._by_name = by_name
        self._names = names

    def __getitem__(self, name: str) -> Resource:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def keys(self) -> KeysView[str]:
        return _SortedKeys(self)

    def values(self) -> ValuesView[Resource]:
        return _SortedValues(self)

    def items(self) -> ItemsView[str, Resource]:
        return _SortedItems(self)

    def names_view(self) -> KeysView[str]:
        """The names as the dict's own view (in no particular order): set operations on it run in C."""
        return self._by_name.keys()

    def copy(self) -> dict[str, Resource]:
        """The resources by name (in no particular order): a dict to edit."""
        return self._by_name.copy()

    def ordered(self) -> Iterator[Resource]:
        """The resources in name order (at C speed)."""
        return map(self._by_name.__getitem__, self._names)


class _SortedKeys(KeysView[str]):
    """Names in name order; comparisons and set operations run in C, on the dict's own view (as ``_Messages.keys``)."""

    __slots__ = ()
    _mapping: _Sorted

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping)

    def __le__(self, other: AbstractSet[object]) -> bool:
        return self._mapping.names_view() <= other

    def __lt__(self, other: AbstractSet[object]) -> bool:
        return self._mapping.names_view() < other

    def __ge__(self, other: AbstractSet[object]) -> bool:
        return self._mapping.names_view() >= other

    def __gt__(self, other: AbstractSet[object]) -> bool:
        return self._mapping.names_view() > other

    def __eq__(self, other: object) -> bool:
        return self._mapping.names_view() == other

    __hash__ = None  # type: ignore[assignment]

    def __and__(self, other: Iterable[object]) -> set[str]:
        return self._mapping.names_view() & other

    def __sub__(self, other: Iterable[object]) -> set[str]:
        return self._mapping.names_view() - other

    def __or__(self, other: Iterable[_T]) -> set[str | _T]:
        return self._mapping.names_view() | other

    __ror__ = __or__


class _SortedValues(ValuesView[Resource]):
    __slots__ = ()
    _mapping: _Sorted

    def __iter__(self) -> Iterator[Resource]:
        return self._mapping.ordered()


class _SortedItems(ItemsView[str, Resource]):
    __slots__ = ()
    _mapping: _Sorted

    def __iter__(self) -> Iterator[tuple[str, Resource]]:
        mapping = self._mapping
        return zip(mapping, mapping.ordered(), strict=True)


def messages(items: Mapping[str, Resource]) -> Mapping[str, Message]:
    """The messages of ``items`` by name, each read when asked (:attr:`Resource.message`); follows ``items``."""
    return _Messages(items)


@dataclass(frozen=True, slots=True)
class ResourceSet:
    """All resources of one type, keyed by name, with their content-hash version.

    ``resources`` holds the messages, ``items`` the same resources serialized (:class:`Resource`); both
    iterate in name order (what xDS responses list), a patched set's through ``names`` (:class:`_Sorted`).
    """

    type_url: str
    version: str
    resources: Mapping[str, Message]
    items: Mapping[str, Resource]
    #: The names in order, and the groups of what ``version`` hashes of each (:func:`_part`, :func:`_ends_group`):
    #: where each ends (past its last name) and its digest. A patched set rehashes the groups it changes, no others
    #: (their parts made again from the resources: none are kept).
    #: (Lists a patched set made are never changed after: a tuple of 40,000 would cost another pass over them.)
    names: Sequence[str] = field(default=(), compare=False, repr=False)
    ends: tuple[int, ...] = field(default=(), compare=False, repr=False)
    digests: tuple[bytes, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def build(
        cls, type_url: str, messages: Iterable[Message | Resource], *, encode: Encode = Resource.of
    ) -> ResourceSet:
        """The set of ``messages``; ``encode`` serializes each one (a cache may return one made before).

        A :class:`Resource` given is taken as it is (already encoded, its message parsed only when asked).
        """
        expected = _MESSAGE_TYPES.get(type_url)
        if expected is None:
            raise TranslationError(f"unknown xDS type {type_url}")
        prefix = _ANY_PREFIXES[type_url]
        by_name: dict[str, Message | Resource] = {}
        encoded = False
        for message in messages:
            if isinstance(message, Resource):
                content = message.content
                if not (
                    content.startswith(prefix) if isinstance(content, bytes) else content.read(0, len(prefix)) == prefix
                ):
                    raise TranslationError(f"resource {quote(message.name)} is not a {expected.__name__}")
                name, encoded = message.name, True
            elif not isinstance(message, expected):
                raise TranslationError(f"{type(message).__name__} is not a {expected.__name__}")
            else:
                name = resource_name(message)
            if name in by_name:
                raise TranslationError(f"duplicate {expected.__name__} named {quote(name)}")
            by_name[name] = message
        ordered = dict(sorted(by_name.items()))
        items = {
            name: message if isinstance(message, Resource) else encode(type_url, message)
            for name, message in ordered.items()
        }
        parts = tuple(_part(item) for item in items.values())
        ends, digests = _groups(parts, 0, len(parts))
        return cls(
            type_url=type_url,
            version=_setdigest(digests),
            # Messages given are kept as they are; encoded resources' are parsed when asked.
            resources=_Messages(items) if encoded else MappingProxyType(ordered),  # type: ignore[arg-type]
            items=MappingProxyType(items),
            names=tuple(items),
            ends=tuple(ends),
            digests=tuple(digests),
        )

    def shed(self) -> ResourceSet:
        """This set (same content and version) without its messages: each is read from its bytes when asked."""
        items = {name: item if item.parsed is None else replace(item, parsed=None) for name, item in self.items.items()}
        return replace(self, resources=_Messages(items), items=MappingProxyType(items))

    def patched(self, changed: Mapping[str, Resource], *, removed: Iterable[str] = ()) -> ResourceSet:
        """This set with the ``changed`` resources in place of (or beside) those of their names, ``removed`` gone.

        Equal to building the set of the resulting messages; only the changed resources' parts are made again.
        """
        fresh = {name: item for name, item in changed.items() if self.items.get(name) is not item}
        gone = [name for name in removed if name in self.items and name not in changed]
        if not fresh and not gone:
            return self
        if len(self.names) != len(self.items) or not self.ends or len(fresh) + len(gone) > _EDITED:
            items = dict(self.items)
            items.update(fresh)
            for name in gone:
                del items[name]
            items = dict(sorted(items.items()))
            parts = tuple(_part(item) for item in items.values())
            ends, digests = _groups(parts, 0, len(parts))
            return self._made(items, names=tuple(items), ends=ends, digests=digests)
        # A few names in or out: the sorted names are edited in place, not made again, and only the groups
        # holding an edit are hashed again. Per group (by its index here): names in minus out.
        listed = list(self.names)
        grown: dict[int, int] = {}
        last = len(self.ends) - 1
        for name in gone:
            at = bisect.bisect_left(self.names, name)
            group = bisect.bisect_right(self.ends, at)
            grown[group] = grown.get(group, 0) - 1
            del listed[bisect.bisect_left(listed, name)]
        for name in fresh:
            kept = name in self.items
            at = bisect.bisect_left(self.names, name)
            group = min(bisect.bisect_right(self.ends, at), last)
            grown[group] = grown.get(group, 0) + (not kept)
            if not kept:
                listed.insert(bisect.bisect_left(listed, name), name)
        # The dict is copied (at C speed) and edited; the names list gives the order (see _Sorted).
        items = self.items.copy() if isinstance(self.items, (MappingProxyType, _Sorted)) else dict(self.items)
        items.update(fresh)
        for name in gone:
            del items[name]
        ends, digests = _regrouped(self.ends, self.digests, _Parts(listed, items), grown, _ends_group)
        return self._made(items, names=listed, ends=ends, digests=digests)

    def _made(
        self,
        items: dict[str, Resource],
        *,
        names: Sequence[str],
        ends: Sequence[int],
        digests: Sequence[bytes],
    ) -> ResourceSet:
        ordered = _Sorted(items, names)
        return ResourceSet(
            type_url=self.type_url,
            version=_setdigest(digests),
            resources=_Messages(ordered),
            items=ordered,
            names=names,
            ends=tuple(ends),
            digests=tuple(digests),
        )


def _regrouped(
    ends: Sequence[int],
    digests: Sequence[bytes],
    parts: Sequence[bytes],
    grown: Mapping[int, int],
    ends_group: Callable[[bytes], bool],
) -> tuple[list[int], list[bytes]]:
    """The groups (ends, digests) of ``parts``: those ``ends`` and ``digests`` cut, with the groups of ``grown`` edited.

    ``grown``: per edited group (by index), how many parts it gained (fewer than none: lost). The runs of
    edited groups are cut again (each run goes on while it does not end a group); the rest are kept, moved.
    """
    found_ends: list[int] = []
    found_digests: list[bytes] = []
    shift, group, count = 0, 0, len(ends)
    edited = sorted(grown)
    while group < count:
        if group not in grown:
            # The run of groups up to the next edited one, kept as it is (moved by ``shift``), sliced at C speed.
            stop = next(iter(edited[bisect.bisect_left(edited, group) :]), count)
            found_ends.extend(map(shift.__add__, ends[group:stop]))
            found_digests.extend(digests[group:stop])
            group = stop
            continue
        start = found_ends[-1] if found_ends else 0
        while True:
            shift += grown.get(group, 0)
            stop = ends[group] + shift
            group += 1
            if group == count or (group not in grown and stop > start and ends_group(parts[stop - 1])):
                break
        cut_ends, cut_digests = _groups(parts, start, stop, ends_group)
        found_ends.extend(cut_ends)
        found_digests.extend(cut_digests)
    return found_ends, found_digests


#: More changed resources than this and a patched set is sorted and hashed anew, not edited in place.
_EDITED = 64

#: How a snapshot gets the :class:`ResourceSet` of a type's messages (a translation cache may return one built before).
BuildSet = Callable[[str, Iterable[Message | Resource]], ResourceSet]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One proxy's complete desired Envoy configuration; immutable and versioned."""

    sets: Mapping[str, ResourceSet]
    version: str

    @classmethod
    def build(
        cls,
        *,
        clusters: Iterable[cluster_pb2.Cluster | Resource] = (),
        endpoints: Iterable[endpoint_pb2.ClusterLoadAssignment | Resource] = (),
        listeners: Iterable[listener_pb2.Listener] = (),
        routes: Iterable[route_pb2.RouteConfiguration] = (),
        shared_set: BuildSet = ResourceSet.build,
        names: Names | None = None,
    ) -> Snapshot:
        """``shared_set`` builds the sets of clusters and load assignments (what a translation cache keeps).

        ``names`` interns what listeners and route configurations point at: every proxy shape's route
        configuration names the same clusters. Clusters and load assignments may be given encoded
        (:meth:`Resource.of_bytes`).
        """

        def encode(type_url: str, message: Message) -> Resource:
            return Resource.of(type_url, message, names=names)

        sets = {
            CLUSTER: shared_set(CLUSTER, clusters),
            ENDPOINT: shared_set(ENDPOINT, endpoints),
            LISTENER: ResourceSet.build(LISTENER, listeners, encode=encode),
            ROUTE: ResourceSet.build(ROUTE, routes, encode=encode),
        }
        return cls(sets=MappingProxyType(sets), version=_snapshot_version(sets))

    def patched(self, sets: Mapping[str, ResourceSet], *, requires: Mapping[str, Iterable[str]]) -> Snapshot | None:
        """This (consistent) snapshot with ``sets`` in place of its sets of their types; None if inconsistent.

        ``requires`` names, per type, what the new and changed resources of ``sets`` point at (none
        may be removed): only those names are looked up, as the rest was consistent already.
        """
        merged = {url: sets.get(url, self.sets[url]) for url in PUSH_ORDER}
        for type_url, names in requires.items():
            known = merged[type_url].items
            if not all(name in known for name in names):
                return None
        return Snapshot(sets=MappingProxyType(merged), version=_snapshot_version(merged))

    def shed(self, type_urls: Iterable[str]) -> Snapshot:
        """This snapshot (same content and version) with its sets of ``type_urls`` shed (:meth:`ResourceSet.shed`)."""
        sets = dict(self.sets)
        for type_url in type_urls:
            sets[type_url] = sets[type_url].shed()
        return Snapshot(sets=MappingProxyType(sets), version=self.version)

    def resources(self, type_url: str) -> Mapping[str, Message]:
        return self.sets[type_url].resources

    def version_of(self, type_url: str) -> str:
        return self.sets[type_url].version

    def digests(self, type_url: str) -> Mapping[str, str]:
        """Per resource name of ``type_url``, the hash of its name and deterministic bytes (its version)."""
        return {name: item.version for name, item in self.sets[type_url].items.items()}

    def problems(self) -> tuple[str, ...]:
        """Every broken reference inside the snapshot; empty when consistent."""
        found: list[str] = []
        clusters = self.resources(CLUSTER)
        assignments = self.resources(ENDPOINT)
        routes = self.resources(ROUTE)
        # Each route configuration's references were collected when it was serialized.
        referenced = frozenset().union(*(item.references for item in self.sets[ROUTE].items.values()))
        for name in sorted(referenced):
            if name not in clusters:
                found.append(f"a route names cluster {quote(name)}, which does not exist")
        for name, cluster in self.sets[CLUSTER].items.items():
            if cluster.references and not cluster.references <= assignments.keys():
                found.append(f"EDS cluster {quote(name)} has no ClusterLoadAssignment")
        for name, listener in self.sets[LISTENER].items.items():
            for route_name in sorted(listener.references):
                if route_name not in routes:
                    found.append(
                        f"listener {quote(name)} uses RouteConfiguration {quote(route_name)}, which does not exist"
                    )
        return tuple(found)

    def check(self) -> Snapshot:
        """Return self when consistent; raise :class:`TranslationError` listing every problem."""
        problems = self.problems()
        if problems:
            raise TranslationError("inconsistent snapshot: " + "; ".join(problems))
        return self


def _snapshot_version(sets: Mapping[str, ResourceSet]) -> str:
    return digest(f"{url}={sets[url].version}".encode() for url in PUSH_ORDER)


def clusters_referenced_by_routes(route_configs: Iterable[Message]) -> frozenset[str]:
    """Names of all clusters the given RouteConfigurations send or mirror traffic to."""
    names: set[str] = set()
    for config in route_configs:
        assert isinstance(config, route_pb2.RouteConfiguration)
        for vhost in config.virtual_hosts:
            _add_clusters(vhost, names)
    return frozenset(names)


def clusters_of_virtual_host(vhost: route_components_pb2.VirtualHost) -> frozenset[str]:
    """Names of the clusters one virtual host's routes send or mirror traffic to."""
    names: set[str] = set()
    _add_clusters(vhost, names)
    return frozenset(names)


def _add_clusters(vhost: route_components_pb2.VirtualHost, names: set[str]) -> None:
    for route in vhost.routes:
        if not route.HasField("route"):
            continue
        action = route.route
        if action.cluster:
            names.add(action.cluster)
        names.update(weighted.name for weighted in action.weighted_clusters.clusters)
        names.update(mirror.cluster for mirror in action.request_mirror_policies if mirror.cluster)


def http_connection_managers(
    listener: listener_pb2.Listener,
) -> Iterator[tuple[listener_components_pb2.Filter, http_connection_manager_pb2.HttpConnectionManager]]:
    """Each HTTP connection manager filter of ``listener``, with its unpacked config (a copy)."""
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url != _HCM_TYPE:
                continue
            manager = http_connection_manager_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            yield network_filter, manager


def _references(message: Message) -> frozenset[str]:
    """The names ``message`` points at (see :class:`Resource`); empty for load assignments."""
    if isinstance(message, route_pb2.RouteConfiguration):
        return clusters_referenced_by_routes((message,))
    if isinstance(message, cluster_pb2.Cluster):
        if message.type != cluster_pb2.Cluster.EDS:
            return frozenset()
        return frozenset((message.eds_cluster_config.service_name or message.name,))
    if isinstance(message, listener_pb2.Listener):
        return frozenset(
            manager.rds.route_config_name for _, manager in http_connection_managers(message) if manager.HasField("rds")
        )
    return frozenset()
