"""Per-proxy snapshots and sync status, shared by the ADS server and the engine.

The engine publishes a :class:`SnapshotSource`; every connected proxy's snapshot is
recomputed from it, all or nothing (if any proxy's snapshot cannot be built, nothing
changes and :meth:`SnapshotCache.publish` raises), and each stream is told to push
what changed. Pushes are debounced: the first publish after a quiet spell is pushed at
once, a burst after it becomes one push of the latest snapshot once the burst pauses
(``push_debounce``) or at most ``push_max_delay`` after it began. A proxy that connects
later is translated in a worker thread, so a large config never stalls the loop that
serves every other stream. The ADS streams report what they sent and what each proxy
ACKed or NACKed; the engine reads that back as :class:`ProxyStatus` records, listens
for :class:`XdsEvent` values, or awaits :meth:`SnapshotCache.wait_for_acks`.

What each node ACKed outlives its stream for a while (bounded, expiring): a proxy that
reconnects still holds that config, and its new stream must not drop clusters the routes
it holds still use (make-before-break across reconnects).

No gRPC here: the server depends on this module only through :class:`XdsCache` and
:class:`ProxyConnection`. Everything runs on the event loop thread; call
:meth:`SnapshotCache.publish` from that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import structlog

from reconciler.errors import TranslationError
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import Resource, ResourceSet, Snapshot

__all__ = [
    "AdoptingSource",
    "EventKind",
    "Held",
    "Nack",
    "ProxyConnection",
    "ProxyStatus",
    "SnapshotCache",
    "SnapshotSource",
    "SyncState",
    "TypeStatus",
    "XdsCache",
    "XdsEvent",
]

_log = structlog.get_logger()


class SnapshotSource(Protocol):
    """Computes the snapshot one proxy should have; raises a ReconcilerError if it cannot."""

    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot: ...


@runtime_checkable
class AdoptingSource(SnapshotSource, Protocol):
    """A source that keeps what it computed (a memo): it takes back the cache's equal copy, so one copy is held."""

    def adopt(self, proxy: ProxyIdentity, snapshot: Snapshot) -> None:
        """Hold ``snapshot`` (same content as ``snapshot_for(proxy)``, made of the cache's shared sets) instead."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """What a proxy ACKed of one type: the version, the resources and the names it subscribed to."""

    version: str
    resources: Mapping[str, Resource]
    names: frozenset[str] = frozenset()


class ProxyConnection(Protocol):
    """One live ADS stream as the cache sees it: its proxy's snapshot and what happened on the wire."""

    @property
    def snapshot(self) -> Snapshot | None: ...

    @property
    def remembered(self) -> Mapping[str, Held]:
        """Per type, what this node's previous stream had ACKed (it still holds it); empty for a new node."""
        ...

    def record_push(self, type_url: str, version: str) -> None: ...

    def record_ack(self, type_url: str, version: str, *, held: Held | None = None) -> None: ...

    def record_nack(self, type_url: str, *, version: str, message: str) -> None: ...

    def record_snapshot_acked(self, version: str) -> None: ...

    def take_resend(self) -> bool:
        """True once after :meth:`SnapshotCache.resend` asked this stream to send its resources again."""
        ...

    def close(self) -> None: ...


class XdsCache(Protocol):
    """All the ADS server needs from a cache."""

    @property
    def generation(self) -> int:
        """The number of the latest publish (what the server's shared facts age by)."""
        ...

    def connect(self, proxy: ProxyIdentity, *, on_change: Callable[[], None]) -> ProxyConnection: ...


class SyncState(StrEnum):
    """Where one resource type of one proxy stands."""

    SYNCED = "synced"  # the latest response was ACKed
    STALE = "stale"  # a response was sent and is not answered yet
    NACKED = "nacked"  # the latest response was rejected; the proxy runs the previous one


class EventKind(StrEnum):
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    PUSH = "push"
    ACK = "ack"
    NACK = "nack"
    SNAPSHOT_ACKED = "snapshot_acked"


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsEvent:
    """Something a proxy stream did; ``type_url`` is empty for whole-proxy events.

    ``generation`` (NACK only) is the :meth:`SnapshotCache.publish` generation whose snapshot
    the rejected response carried: the latest one with the same content, if that was republished.
    """

    kind: EventKind
    node_id: str
    type_url: str = ""
    version: str = ""
    message: str = ""
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Nack:
    version: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeStatus:
    """One resource type of one proxy; ``last_nack`` is kept after later ACKs, for the record."""

    version_sent: str
    version_acked: str | None = None
    last_nack: Nack | None = None
    state: SyncState = SyncState.STALE


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyStatus:
    """A connected proxy: who it is, what it was sent, what it accepted.

    ``acked_generation`` is the latest :meth:`SnapshotCache.publish` generation whose
    snapshot this proxy has ACKed in full (every resource of every type); 0 if none.
    """

    node_id: str
    labels: Mapping[str, str]
    connected_since: float
    snapshot_version: str | None
    generation: int
    acked_snapshot_version: str | None
    acked_generation: int
    types: Mapping[str, TypeStatus]

    @property
    def nacked(self) -> bool:
        return any(status.state is SyncState.NACKED for status in self.types.values())


class SnapshotCache:
    """The producer side (``publish``), the server side (``connect``) and the status side.

    Without arguments every publish is pushed at once and nothing outlives a stream; the
    daemon passes :class:`~reconciler.engine.settings.XdsSettings`' debounce and memory.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        push_debounce: float = 0.0,
        push_max_delay: float = 0.0,
        remember_nodes: int = 0,
        remember_seconds: float = 0.0,
    ) -> None:
        self._clock = clock
        self._debounce = push_debounce
        self._max_delay = push_max_delay
        # Loop time of the latest push to streams, of the first publish waiting, and the timer of the next push.
        self._last_push = float("-inf")
        self._pending_since: float | None = None
        self._push_timer: asyncio.TimerHandle | None = None
        self._unpushed: dict[_Connection, None] = {}
        # The resource sets of the snapshots connected proxies have, by type and version (see _share).
        self._sets: dict[tuple[str, str], ResourceSet] = {}
        self._remember_nodes = remember_nodes
        self._remember_seconds = remember_seconds
        # node id -> (expiry on the clock, what its last stream ACKed per type); oldest first.
        self._remembered: OrderedDict[str, tuple[float, dict[str, Held]]] = OrderedDict()
        self._source: SnapshotSource | None = None
        self._generation = 0
        # Insertion order: when one node has two streams (a reconnect racing the old
        # stream's teardown), the newest one is what status reports.
        self._connections: list[_Connection] = []
        self._listeners: list[Callable[[XdsEvent], None]] = []
        self._waiters: set[asyncio.Event] = set()
        # Snapshots being built for new connections; referenced so the loop cannot drop them.
        self._fills: set[asyncio.Task[None]] = set()

    @property
    def generation(self) -> int:
        """The number of the latest successful :meth:`publish` (0 before the first)."""
        return self._generation

    def publish(self, source: SnapshotSource) -> int:
        """Make ``source`` current for every connected proxy, all or nothing; return the new generation.

        Every snapshot is built before anything changes. If one cannot be, this raises
        :class:`TranslationError` and every proxy keeps what it has: no partial apply.
        """
        computed = [(connection, _build(source, connection.proxy)) for connection in self._connections]
        self._source = source
        self._generation += 1
        for connection, snapshot in computed:
            if connection.update(self._share(source, connection.proxy, snapshot), generation=self._generation):
                self._unpushed[connection] = None
        # Only the sets some proxy has now are worth sharing with the next publish.
        self._sets = {
            (type_url, resource_set.version): resource_set
            for connection in self._connections
            if connection.current is not None
            for type_url, resource_set in connection.current.sets.items()
        }
        self._schedule_push()
        self._changed()
        return self._generation

    def _share(self, source: SnapshotSource, proxy: ProxyIdentity, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` made of the very set objects proxies have already, where the content is the same.

        A new revision is translated afresh, but most of its sets are unchanged: reusing the
        objects lets every stream see at a glance (by identity) that nothing changed there,
        keeps facts and framed bodies about them valid, and frees the duplicates. A source that
        memoises its snapshots takes the shared one back, or it would keep the duplicates alive.
        """
        sets = dict(snapshot.sets)
        for type_url, resource_set in snapshot.sets.items():
            known = self._sets.setdefault((type_url, resource_set.version), resource_set)
            sets[type_url] = known
        if all(sets[type_url] is snapshot.sets[type_url] for type_url in sets):
            return snapshot
        shared = Snapshot(sets=MappingProxyType(sets), version=snapshot.version)
        if isinstance(source, AdoptingSource):
            source.adopt(proxy, shared)
        return shared

    def _schedule_push(self) -> None:
        """Tell the streams whose snapshot changed now, or once the burst this publish is part of pauses."""
        if not self._unpushed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self._debounce <= 0:
            self._push()
            return
        now = loop.time()
        if self._push_timer is None and now - self._last_push >= self._debounce:
            self._push()  # the first change after a quiet spell goes out at once
            return
        if self._pending_since is None:
            self._pending_since = now
        if self._push_timer is not None:
            self._push_timer.cancel()
        at = min(now + self._debounce, self._pending_since + self._max_delay)
        self._push_timer = loop.call_at(at, self._push)

    def _push(self) -> None:
        if self._push_timer is not None:
            self._push_timer.cancel()
            self._push_timer = None
        self._pending_since = None
        with contextlib.suppress(RuntimeError):
            self._last_push = asyncio.get_running_loop().time()
        unpushed, self._unpushed = self._unpushed, {}
        for connection in unpushed:
            if not connection.closed:
                connection.on_change()

    def connect(self, proxy: ProxyIdentity, *, on_change: Callable[[], None]) -> ProxyConnection:
        """Register a proxy's stream. Its snapshot is built off the loop; ``on_change`` fires when ready."""
        connection = _Connection(
            cache=self, proxy=proxy, on_change=on_change, since=self._clock(), held=self._recall(proxy.node_id)
        )
        if any(other.proxy.node_id == proxy.node_id for other in self._connections):
            # Harmless once when a reconnect races the old stream's close; lasting, it hides proxies from status.
            _log.warning(
                "xds.node_id_in_use",
                node_id=proxy.node_id,
                hint="node ids must be unique per proxy; status shows only the newest stream of each id",
            )
        self._connections.append(connection)
        self._emit(XdsEvent(kind=EventKind.CONNECT, node_id=proxy.node_id))
        if self._source is not None:
            try:
                task = asyncio.get_running_loop().create_task(self._fill(connection, self._source))
            except RuntimeError:
                # No loop (tools and tests driving the cache directly): build it here.
                self._settle(connection, self._source, self._try_build(self._source, proxy))
            else:
                self._fills.add(task)
                task.add_done_callback(self._fills.discard)
        return connection

    async def _fill(self, connection: _Connection, source: SnapshotSource) -> None:
        snapshot = await asyncio.to_thread(self._try_build, source, connection.proxy)
        self._settle(connection, source, snapshot)

    def _settle(self, connection: _Connection, source: SnapshotSource, snapshot: Snapshot | None) -> None:
        # A publish while the snapshot was being built has already given the connection a newer one.
        if snapshot is not None and source is self._source and not connection.closed and connection.current is None:
            if connection.update(self._share(source, connection.proxy, snapshot), generation=self._generation):
                connection.on_change()
            self._changed()

    @staticmethod
    def _try_build(source: SnapshotSource, proxy: ProxyIdentity) -> Snapshot | None:
        try:
            return _build(source, proxy)
        except TranslationError as error:
            # The proxy gets nothing until a publishable revision comes; the engine's status says why.
            _log.error("xds.snapshot_failed", node_id=proxy.node_id, error=str(error))
            return None

    def _newest_by_node(self) -> dict[str, _Connection]:
        """The newest stream of each node id: the one status reports (an older one is a dying duplicate)."""
        return {connection.proxy.node_id: connection for connection in self._connections}

    def statuses(self) -> tuple[ProxyStatus, ...]:
        """Every connected proxy, by node id."""
        latest = self._newest_by_node()
        return tuple(latest[node_id].status() for node_id in sorted(latest))

    def all_acked(self, generation: int) -> bool:
        """At least one proxy is connected and every one ACKed ``generation`` (or later) in full.

        The same proxies as :meth:`statuses`, so "synced" never disagrees with the status table.
        Scans plain fields, no status records: the engine asks on every ACK of a rollout.
        """
        latest = self._newest_by_node()
        return bool(latest) and all(c.acked_generation >= generation for c in latest.values())

    def proxies(self) -> tuple[ProxyIdentity, ...]:
        """The identity of every connected proxy, so a producer can translate for each before publishing."""
        latest = self._newest_by_node()
        return tuple(latest[node_id].proxy for node_id in sorted(latest))

    def status(self, node_id: str) -> ProxyStatus | None:
        return next((status for status in self.statuses() if status.node_id == node_id), None)

    def served(self, node_id: str) -> tuple[ProxyIdentity, Snapshot | None] | None:
        """The identity of a connected proxy (as its node metadata said) and the snapshot it is served now."""
        connection = self._newest_by_node().get(node_id)
        return None if connection is None else (connection.proxy, connection.current)

    def resend(self, node_id: str) -> bool:
        """Ask the proxy's stream to send every type it holds again, unchanged (drift's self-heal).

        Envoy applies what differs from what it runs and ACKs as usual. False when the proxy is not connected.
        """
        connection = self._newest_by_node().get(node_id)
        if connection is None:
            return False
        connection.resend_requested = True
        connection.on_change()
        return True

    def add_listener(self, listener: Callable[[XdsEvent], None]) -> Callable[[], None]:
        """Call ``listener`` on every event, on the loop thread; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def wait_until(self, predicate: Callable[[Sequence[ProxyStatus]], bool], *, timeout: float) -> bool:
        """Wait until ``predicate(statuses())`` holds; False if it still does not after ``timeout`` s."""
        return await self._wait(lambda: predicate(self.statuses()), timeout=timeout)

    async def _wait(self, check: Callable[[], bool], *, timeout: float) -> bool:
        wake = asyncio.Event()
        self._waiters.add(wake)
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    await wake.wait()
                    wake.clear()
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(wake)
        return True

    async def wait_for_acks(self, generation: int, *, timeout: float) -> bool:
        """Wait until every connected proxy ACKed ``generation`` (or a later one) in full.

        True at once when no proxy is connected. Pair with ``ProxyStatus.nacked`` in
        :meth:`wait_until` to stop early on a rejection.
        """
        # Plain fields, no status records: checked on every event of every stream until it holds.
        return await self._wait(
            lambda: all(c.acked_generation >= generation for c in self._newest_by_node().values()), timeout=timeout
        )

    def _recall(self, node_id: str) -> dict[str, Held]:
        """What ``node_id`` ACKed on its live or latest stream, if that is not forgotten yet."""
        live = [connection for connection in self._connections if connection.proxy.node_id == node_id]
        if live:
            return dict(live[-1].held)
        entry = self._remembered.pop(node_id, None)
        if entry is None or entry[0] < self._clock():
            return {}
        return dict(entry[1])

    def _disconnect(self, connection: _Connection) -> None:
        self._connections.remove(connection)
        self._unpushed.pop(connection, None)
        node_id = connection.proxy.node_id
        if (
            connection.held
            and self._remember_nodes > 0
            and not any(other.proxy.node_id == node_id for other in self._connections)
        ):
            self._remembered.pop(node_id, None)
            self._remembered[node_id] = (self._clock() + self._remember_seconds, connection.held)
            now = self._clock()
            while self._remembered and (
                len(self._remembered) > self._remember_nodes or next(iter(self._remembered.values()))[0] < now
            ):
                self._remembered.popitem(last=False)
        self._emit(XdsEvent(kind=EventKind.DISCONNECT, node_id=node_id))

    def _emit(self, event: XdsEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # A broken observer must not tear down a proxy's stream.
                _log.exception("xds.listener_failed", node_id=event.node_id, kind=event.kind.value)
        self._changed()

    def _changed(self) -> None:
        for wake in self._waiters:
            wake.set()


def _build(source: SnapshotSource, proxy: ProxyIdentity) -> Snapshot:
    """``source.snapshot_for(proxy)``, with any failure (even a bug) as a TranslationError."""
    try:
        return source.snapshot_for(proxy)
    except TranslationError:
        raise
    except Exception as error:
        raise TranslationError(f"cannot build the snapshot for proxy {proxy.node_id!r}: {error!r}") from error


@dataclass(eq=False, slots=True, kw_only=True)
class _Connection:
    cache: SnapshotCache
    proxy: ProxyIdentity
    on_change: Callable[[], None]
    since: float
    current: Snapshot | None = None
    generation: int = 0
    acked_version: str | None = None
    acked_generation: int = 0
    types: dict[str, TypeStatus] = field(default_factory=dict)
    # Per type: the generation and snapshot version the latest response was cut from, to attribute a NACK.
    pushed_from: dict[str, tuple[int, str]] = field(default_factory=dict)
    closed: bool = False
    resend_requested: bool = False
    # Per type: what the proxy holds, as ACKed on this stream or (until then) on the node's previous one.
    held: dict[str, Held] = field(default_factory=dict)
    remembered: Mapping[str, Held] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.remembered = MappingProxyType(dict(self.held))

    @property
    def snapshot(self) -> Snapshot | None:
        return self.current

    def update(self, snapshot: Snapshot, *, generation: int) -> bool:
        """Make ``snapshot`` current; True when its content changed (the stream has something to push)."""
        self.generation = generation
        if self.current is not None and snapshot.version == self.current.version:
            # Same content under a newer generation: a proxy already in sync is in sync with it too.
            if self.acked_version == snapshot.version:
                self.acked_generation = generation
            return False
        self.current = snapshot
        return True

    def record_push(self, type_url: str, version: str) -> None:
        if self.current is not None:
            self.pushed_from[type_url] = (self.generation, self.current.version)
        previous = self.types.get(type_url)
        self.types[type_url] = (
            TypeStatus(version_sent=version)
            if previous is None
            else replace(previous, version_sent=version, state=SyncState.STALE)
        )
        self.cache._emit(XdsEvent(kind=EventKind.PUSH, node_id=self.proxy.node_id, type_url=type_url, version=version))

    def record_ack(self, type_url: str, version: str, *, held: Held | None = None) -> None:
        if held is not None:
            self.held[type_url] = held
        self.types[type_url] = replace(self.types[type_url], version_acked=version, state=SyncState.SYNCED)
        self.cache._emit(XdsEvent(kind=EventKind.ACK, node_id=self.proxy.node_id, type_url=type_url, version=version))

    def record_nack(self, type_url: str, *, version: str, message: str) -> None:
        self.types[type_url] = replace(
            self.types[type_url], last_nack=Nack(version=version, message=message), state=SyncState.NACKED
        )
        generation, snapshot_version = self.pushed_from.get(type_url, (0, ""))
        if self.current is not None and snapshot_version == self.current.version:
            # Republished unchanged under a newer generation (nothing was resent): the rejection is of that one too.
            generation = self.generation
        self.cache._emit(
            XdsEvent(
                kind=EventKind.NACK,
                node_id=self.proxy.node_id,
                type_url=type_url,
                version=version,
                message=message,
                generation=generation,
            )
        )

    def record_snapshot_acked(self, version: str) -> None:
        generation = self.generation if self.current is not None and version == self.current.version else 0
        if version == self.acked_version and generation <= self.acked_generation:
            return
        self.acked_version = version
        self.acked_generation = max(self.acked_generation, generation)
        self.cache._emit(XdsEvent(kind=EventKind.SNAPSHOT_ACKED, node_id=self.proxy.node_id, version=version))

    def take_resend(self) -> bool:
        requested, self.resend_requested = self.resend_requested, False
        return requested

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cache._disconnect(self)

    def status(self) -> ProxyStatus:
        return ProxyStatus(
            node_id=self.proxy.node_id,
            labels=self.proxy.labels,
            connected_since=self.since,
            snapshot_version=None if self.current is None else self.current.version,
            generation=self.generation,
            acked_snapshot_version=self.acked_version,
            acked_generation=self.acked_generation,
            types=MappingProxyType(dict(self.types)),
        )
