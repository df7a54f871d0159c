"""The state-of-the-world ADS protocol for one stream, without the transport.

:class:`AdsSession` turns DiscoveryRequests and snapshot changes into the
DiscoveryResponses to send, following Envoy's xDS protocol:

* every response carries a fresh nonce; a request naming an older nonce is stale and ignored;
* a request answering the latest nonce is an ACK, or a NACK when ``error_detail`` is set;
  either way nothing is resent unless the content for that type changes;
* Cluster and Listener are wildcard (the full set every time); ClusterLoadAssignment and
  RouteConfiguration are named (the requested names that exist; names that do not exist
  yet are remembered and sent once they appear);
* make-before-break: types go out in :data:`PUSH_ORDER`, and a cluster the proxy's routes
  still use stays in CDS (with its endpoints) until the proxy ACKs routes without it, also
  across a reconnect: a new stream starts from what the node's previous stream had ACKed
  (:attr:`~reconciler.xds.cache.ProxyConnection.remembered`);
* a request repeating the latest nonce after it was answered asks again: a warming cluster or
  listener needs its endpoints or routes, so it is answered (for EDS and RDS even after a NACK).

Responses are bytes: the resources' own serialization (done once, when the snapshot was
built) framed by :mod:`reconciler.xds.wire`, once for every stream that sends the same whole
set (nonce included; a nonce still never repeats on a stream); a push costs the bytes it sends.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import structlog
from envoy.service.discovery.v3 import discovery_pb2

from reconciler.translate.snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SHORT_NAMES,
    Resource,
    Snapshot,
    set_version,
)
from reconciler.xds.cache import Held, ProxyConnection
from reconciler.xds.nack import envoy_cause
from reconciler.xds.requests import RecentRequests
from reconciler.xds.shared import Shared
from reconciler.xds.wire import Framed

__all__ = ["WILDCARD_TYPES", "AdsSession", "DesiredState"]

#: Types whose responses always carry every resource; absence from one means removal.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})

_NO_RESOURCES: Mapping[str, Resource] = MappingProxyType({})

_log = structlog.get_logger()


class _Nonce(enum.Enum):
    """What a request's ``response_nonce`` makes of it."""

    NONE = enum.auto()  # no nonce: a new subscription (or a subscription change, in delta)
    STALE = enum.auto()  # an older response's: its answer is superseded
    ANSWER = enum.auto()  # the latest response's ACK or NACK
    REPEATED = enum.auto()  # the latest response's again, after it was answered: Envoy asks again


@dataclass(frozen=True, slots=True, kw_only=True)
class _Response:
    version: str
    nonce: str
    resources: Mapping[str, Resource]
    serial: int


@dataclass(slots=True)
class _TypeState:
    subscribed: bool = False
    names: frozenset[str] = field(default_factory=frozenset)
    sent: _Response | None = None
    acked: _Response | None = None
    answered: bool = False  # the proxy has ACKed or NACKed ``sent``
    rejected: bool = False  # ...and it was a NACK
    resend: bool = False  # the proxy asked again for what it has: answer even if nothing changed
    # What the node's previous stream had ACKed, until this stream gets an ACK of its own.
    remembered: Held | None = None
    # The serial of the latest response of this type sent on this stream (never reset): the next one's
    # nonce must be above it, so no nonce repeats on the stream (see wire.Encoder).
    serial: int = 0

    def in_flight_or_held(self) -> Mapping[str, Resource]:
        """What the proxy holds or is about to hold: the latest response unless it was rejected."""
        if self.sent is not None and not self.rejected:
            return self.sent.resources
        return self.held()

    def held(self) -> Mapping[str, Resource]:
        """What the proxy is known to hold: what it ACKed here, or (until then) on its previous stream."""
        if self.acked is not None:
            return self.acked.resources
        return _NO_RESOURCES if self.remembered is None else self.remembered.resources

    def held_names(self) -> frozenset[str]:
        """The names the proxy subscribes to, or subscribed to on its previous stream until it asks here."""
        if self.subscribed or self.remembered is None:
            return self.names
        return self.remembered.names

    def settled(self) -> bool:
        return self.sent is None or self.sent is self.acked or self.rejected


class DesiredState:
    """What a proxy should be sent per type: its snapshot, plus what make-before-break keeps.

    The part of a stream's protocol state shared by the state-of-the-world and the incremental
    session: per type a :class:`_TypeState` of what was sent and what the proxy answered, the
    push loop in make-before-break order, and ACK/NACK bookkeeping. Subclasses say how a
    type's desired resources become a response (:meth:`_response_for`).
    """

    def __init__(self, *, node_id: str, connection: ProxyConnection, shared: Shared | None = None) -> None:
        self._node_id = node_id
        self._connection = connection
        self._shared = shared or Shared()
        remembered = connection.remembered
        self._types = {type_url: _TypeState(remembered=remembered.get(type_url)) for type_url in PUSH_ORDER}

    def handle_snapshot_change(self) -> list[bytes]:
        return self._push_changes()

    def _receive(
        self, request: discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest
    ) -> tuple[str, _TypeState, _Nonce] | None:
        """The request's type, its state and what its nonce is; an ACK or NACK of the latest response is recorded.

        None (and a warning) for a type this server does not serve.
        """
        type_url = str(request.type_url)
        state = self._types.get(type_url)
        if state is None:
            _log.warning("xds.unsupported_type", node_id=self._node_id, type_url=type_url)
            return None
        nonce = str(request.response_nonce)
        if not nonce:
            return type_url, state, _Nonce.NONE
        if state.sent is None or nonce != state.sent.nonce:
            _log.debug("xds.stale_nonce", node_id=self._node_id, type=SHORT_NAMES[type_url], nonce=nonce)
            return type_url, state, _Nonce.STALE
        if state.answered:
            return type_url, state, _Nonce.REPEATED
        error = str(request.error_detail.message) if request.HasField("error_detail") else None
        self._answer(type_url, state=state, error=error)
        return type_url, state, _Nonce.ANSWER

    def clusters_warm(self, routes: Mapping[str, Resource]) -> bool:
        """Whether every cluster ``routes`` use was in a CDS response the proxy answered (so is warm).

        A NACKed response counts too: Envoy keeps the valid clusters of a rejected update, and
        holding routes until CDS is fixed would leave a new proxy with no routes at all (404s).
        """
        clusters = self._types[CLUSTER]
        acked = clusters.acked.resources if clusters.acked is not None else _NO_RESOURCES
        answered = clusters.sent.resources if clusters.sent is not None and clusters.answered else _NO_RESOURCES
        used = self._shared.references(routes, routes)
        return all(name in answered for name in self._shared.missing(used, acked))

    def retained_clusters(self, snapshot: Snapshot) -> Mapping[str, Resource]:
        """Clusters gone from the snapshot that routes the proxy holds (or is being sent) still use."""
        routes = self._types[ROUTE]
        # Only routes Envoy still subscribes to: once its listeners are gone (and drained) it
        # unsubscribes, and their clusters may go; no RDS response would ever say so otherwise.
        subscribed = routes.held_names()
        wanted = snapshot.sets[CLUSTER].items
        held = (routes.in_flight_or_held(), routes.held())
        gone = {
            name
            for resources in held
            for name in self._shared.missing(self._shared.references(resources, subscribed), wanted)
        }
        if not gone:
            return _NO_RESOURCES
        held_clusters = self._types[CLUSTER].in_flight_or_held()
        return {name: held_clusters[name] for name in sorted(gone) if name in held_clusters}

    def desired(
        self, snapshot: Snapshot, *, type_url: str, retained: Mapping[str, Resource]
    ) -> tuple[str, Mapping[str, Resource]]:
        """The version and resources ``type_url`` should have now (named types: the subscribed ones)."""
        resource_set = snapshot.sets[type_url]
        resources = resource_set.items
        extras: Mapping[str, Resource] = _NO_RESOURCES
        if type_url == CLUSTER:
            extras = retained
        elif type_url == ENDPOINT and retained:
            service_names = {name for cluster in retained.values() for name in cluster.references}
            extras = {
                name: assignment
                for name, assignment in self._types[ENDPOINT].in_flight_or_held().items()
                if name in service_names and name not in resources
            }
        version = resource_set.version
        if extras:
            resources = {**resources, **extras}
            # The content differs from the snapshot's, so its version must too.
            version = set_version(resources.values())
        if type_url not in WILDCARD_TYPES:
            names = self._types[type_url].names
            # The same mapping when every resource is subscribed, as is usual: no copy, no new body.
            if not self._shared.covers(names, resources):
                resources = {name: resource for name, resource in resources.items() if name in names}
        return version, resources

    def fully_acked(self, snapshot: Snapshot) -> bool:
        """Whether the proxy ACKed every resource of ``snapshot``, with nothing else pending."""
        for type_url in PUSH_ORDER:
            resource_set = snapshot.sets[type_url]
            wanted = resource_set.items
            state = self._types[type_url]
            if not wanted and (type_url not in WILDCARD_TYPES or not state.subscribed):
                continue
            acked = state.acked
            if acked is None or not state.settled() or acked.version != resource_set.version:
                return False
            if not self._shared.covers(acked.resources, wanted):
                return False
        return True

    def _answer(self, type_url: str, *, state: _TypeState, error: str | None) -> None:
        """Record the proxy's answer to ``state.sent``: an ACK, or a NACK with Envoy's ``error`` message."""
        assert state.sent is not None
        state.answered = True
        version = state.sent.version
        if error is not None:
            state.rejected = True
            message = envoy_cause(error)
            _log.warning(
                "xds.nack", node_id=self._node_id, type=SHORT_NAMES[type_url], version=version, message=message
            )
            self._connection.record_nack(type_url, version=version, message=message)
        else:
            state.acked = state.sent
            state.remembered = None
            _log.info("xds.ack", node_id=self._node_id, type=SHORT_NAMES[type_url], version=version)
            held = Held(version=version, resources=state.sent.resources, names=state.names)
            self._connection.record_ack(type_url, version, held=held)

    def _push_changes(self) -> list[bytes]:
        snapshot = self._connection.snapshot
        if snapshot is None:
            return []
        if self._connection.take_resend():
            self._resend_held()
        retained = self.retained_clusters(snapshot)
        responses = []
        for type_url in PUSH_ORDER:
            state = self._types[type_url]
            if not state.subscribed:
                continue
            version, resources = self.desired(snapshot, type_url=type_url, retained=retained)
            if type_url == ROUTE and not self.clusters_warm(resources):
                # Make-before-break: routes to a cluster Envoy is still warming would answer 503 (NC).
                # Envoy ACKs CDS only once its new clusters are warm; the routes go out then.
                continue
            full = resources is snapshot.sets[type_url].items
            response = self._response_for(type_url, state=state, version=version, resources=resources, full=full)
            if response is not None:
                responses.append(response)
        if self.fully_acked(snapshot):
            self._connection.record_snapshot_acked(snapshot.version)
        return responses

    def _resend_held(self) -> None:
        """Drift's self-heal: every type the proxy holds goes out again, so Envoy replaces what differs."""
        for state in self._types.values():
            state.resend = state.subscribed and state.sent is not None and not state.rejected

    def _response_for(
        self, type_url: str, *, state: _TypeState, version: str, resources: Mapping[str, Resource], full: bool
    ) -> bytes | None:
        """The response that brings the proxy to ``resources`` (``full``: the snapshot's whole set), if one is due."""
        raise NotImplementedError

    def _sent(
        self, type_url: str, *, state: _TypeState, version: str, resources: Mapping[str, Resource], framed: Framed
    ) -> bytes:
        """Record ``framed``, a response carrying ``resources`` at ``version``; its bytes."""
        nonce = framed.nonce
        state.sent = _Response(version=version, nonce=nonce, resources=resources, serial=framed.serial)
        state.serial = framed.serial
        state.answered = False
        state.rejected = False
        state.resend = False
        _log.info(
            "xds.push",
            node_id=self._node_id,
            type=SHORT_NAMES[type_url],
            version=version,
            nonce=nonce,
            resources=len(resources),
        )
        self._connection.record_push(type_url, version)
        return framed.data


class AdsSession(DesiredState):
    """Protocol state of one state-of-the-world ADS stream; the caller sends what ``handle_*`` return.

    ``requests``: the server's parser, which knows the subscription of a request it parsed for another stream.
    """

    def __init__(
        self,
        *,
        node_id: str,
        connection: ProxyConnection,
        shared: Shared | None = None,
        requests: RecentRequests | None = None,
    ) -> None:
        super().__init__(node_id=node_id, connection=connection, shared=shared)
        self._requests = requests or RecentRequests(intern=self._shared.names)

    def handle_request(self, request: discovery_pb2.DiscoveryRequest) -> list[bytes]:
        received = self._receive(request)
        if received is None:
            return []
        type_url, state, nonce = received
        if nonce is _Nonce.STALE:
            return []
        if nonce is _Nonce.REPEATED:
            if not state.rejected or type_url not in WILDCARD_TYPES:
                # The latest response was answered already, so this is Envoy asking again: a cluster
                # (or listener) updated in place is warming and needs its endpoints (routes) resent,
                # changed or not (xDS protocol, "Resource warming"). After an EDS or RDS NACK too: each
                # subscription takes its own resources from the response, so the warming cluster gets its
                # endpoints even if another's are refused, instead of waiting out Envoy's initial fetch
                # timeout (15 s). A rejected CDS or LDS response would only be rejected again.
                state.resend = True
        elif nonce is _Nonce.NONE:
            # A request without a nonce opens (or reopens) the subscription and must be answered.
            state.sent = None
        state.subscribed = True
        if type_url not in WILDCARD_TYPES:
            state.names = self._requests.resource_names(request)
        return self._push_changes()

    def _should_send(
        self, type_url: str, *, state: _TypeState, version: str, resources: Mapping[str, Resource]
    ) -> bool:
        if type_url in WILDCARD_TYPES:
            return state.sent is None or version != state.sent.version
        # Named types: an empty response would tell the proxy nothing, so wait for the names to exist.
        if not resources:
            return False
        if state.sent is None:
            return True
        if version != state.sent.version:
            return True
        return not self._shared.covers(state.sent.resources, resources)

    def _response_for(
        self, type_url: str, *, state: _TypeState, version: str, resources: Mapping[str, Resource], full: bool
    ) -> bytes | None:
        if not (state.resend and resources) and not self._should_send(
            type_url, state=state, version=version, resources=resources
        ):
            return None
        # A snapshot's whole set is framed once for every stream; a subset or extras only for this one.
        framed = self._shared.encoder.sotw(
            type_url=type_url,
            version=version,
            resources=resources.values(),
            key=version if full else None,
            after=state.serial,
        )
        return self._sent(type_url, state=state, version=version, resources=resources, framed=framed)
