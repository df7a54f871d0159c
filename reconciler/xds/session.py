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
  still use stays in CDS (with its endpoints) until the proxy ACKs routes without it.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import structlog
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message

from reconciler.translate.snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SHORT_NAMES,
    ResourceSet,
    Snapshot,
    clusters_referenced_by_routes,
)
from reconciler.xds.cache import ProxyConnection
from reconciler.xds.nack import envoy_cause

__all__ = ["AdsSession"]

#: Types whose responses always carry every resource; absence from one means removal.
_WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})

_NO_RESOURCES: Mapping[str, Message] = MappingProxyType({})

_log = structlog.get_logger()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Response:
    version: str
    nonce: str
    resources: Mapping[str, Message]


@dataclass(slots=True)
class _TypeState:
    subscribed: bool = False
    names: frozenset[str] = field(default_factory=frozenset)
    sent: _Response | None = None
    acked: _Response | None = None
    answered: bool = False  # the proxy has ACKed or NACKed ``sent``
    rejected: bool = False  # ...and it was a NACK
    resend: bool = False  # the proxy asked again for what it has: answer even if nothing changed

    def in_flight_or_held(self) -> Mapping[str, Message]:
        """What the proxy holds or is about to hold: the latest response unless it was rejected."""
        if self.sent is not None and not self.rejected:
            return self.sent.resources
        return _NO_RESOURCES if self.acked is None else self.acked.resources

    def settled(self) -> bool:
        return self.sent is None or self.sent is self.acked or self.rejected


class AdsSession:
    """Protocol state of one ADS stream; the caller sends what the ``handle_*`` methods return."""

    def __init__(self, *, node_id: str, connection: ProxyConnection) -> None:
        self._node_id = node_id
        self._connection = connection
        # Random per stream so a nonce from an earlier stream can never pass as current.
        self._nonces = (f"{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        self._types = {type_url: _TypeState() for type_url in PUSH_ORDER}

    def handle_request(self, request: discovery_pb2.DiscoveryRequest) -> list[discovery_pb2.DiscoveryResponse]:
        type_url = str(request.type_url)
        state = self._types.get(type_url)
        if state is None:
            _log.warning("xds.unsupported_type", node_id=self._node_id, type_url=type_url)
            return []
        nonce = str(request.response_nonce)
        if nonce:
            if state.sent is None or nonce != state.sent.nonce:
                _log.debug("xds.stale_nonce", node_id=self._node_id, type=SHORT_NAMES[type_url], nonce=nonce)
                return []
            if not state.answered:
                self._answer(type_url, state=state, request=request)
            elif not state.rejected:
                # The latest response was answered already, so this is Envoy asking again: a cluster
                # (or listener) updated in place is warming and needs its endpoints (routes) resent,
                # changed or not (xDS protocol, "Resource warming").
                state.resend = True
        else:
            # A request without a nonce opens (or reopens) the subscription and must be answered.
            state.sent = None
        state.subscribed = True
        if type_url not in _WILDCARD_TYPES:
            state.names = frozenset(request.resource_names)
        return self._push_changes()

    def handle_snapshot_change(self) -> list[discovery_pb2.DiscoveryResponse]:
        return self._push_changes()

    def _answer(self, type_url: str, *, state: _TypeState, request: discovery_pb2.DiscoveryRequest) -> None:
        assert state.sent is not None
        state.answered = True
        version = state.sent.version
        if request.HasField("error_detail"):
            state.rejected = True
            message = envoy_cause(str(request.error_detail.message))
            _log.warning(
                "xds.nack", node_id=self._node_id, type=SHORT_NAMES[type_url], version=version, message=message
            )
            self._connection.record_nack(type_url, version=version, message=message)
        else:
            state.acked = state.sent
            _log.info("xds.ack", node_id=self._node_id, type=SHORT_NAMES[type_url], version=version)
            self._connection.record_ack(type_url, version)

    def _push_changes(self) -> list[discovery_pb2.DiscoveryResponse]:
        snapshot = self._connection.snapshot
        if snapshot is None:
            return []
        if self._connection.take_resend():
            # Drift's self-heal: every type the proxy holds goes out again, so Envoy replaces what differs.
            for state in self._types.values():
                state.resend = state.subscribed and state.sent is not None and not state.rejected
        retained = self._retained_clusters(snapshot)
        responses = []
        for type_url in PUSH_ORDER:
            state = self._types[type_url]
            if not state.subscribed:
                continue
            version, resources = self._desired(snapshot, type_url=type_url, retained=retained)
            if type_url == ROUTE and not self._clusters_warm(resources):
                # Make-before-break: routes to a cluster Envoy is still warming would answer 503 (NC).
                # Envoy ACKs CDS only once its new clusters are warm; the routes go out then.
                continue
            if (state.resend and resources) or self._should_send(
                type_url, state=state, version=version, resources=resources
            ):
                responses.append(self._respond(type_url, state=state, version=version, resources=resources))
        if self._fully_acked(snapshot):
            self._connection.record_snapshot_acked(snapshot.version)
        return responses

    def _clusters_warm(self, routes: Mapping[str, Message]) -> bool:
        """Whether every cluster ``routes`` use was in a CDS response the proxy answered (so is warm).

        A NACKed response counts too: Envoy keeps the valid clusters of a rejected update, and
        holding routes until CDS is fixed would leave a new proxy with no routes at all (404s).
        """
        clusters = self._types[CLUSTER]
        warm = set(clusters.acked.resources) if clusters.acked is not None else set()
        if clusters.sent is not None and clusters.answered:
            warm.update(clusters.sent.resources)
        return clusters_referenced_by_routes(routes.values()) <= warm

    def _retained_clusters(self, snapshot: Snapshot) -> Mapping[str, Message]:
        """Clusters gone from the snapshot that routes the proxy holds (or is being sent) still use."""
        routes = self._types[ROUTE]
        held = [*routes.in_flight_or_held().items(), *(routes.acked.resources.items() if routes.acked else ())]
        # Only routes Envoy still subscribes to: once its listeners are gone (and drained) it
        # unsubscribes, and their clusters may go; no RDS response would ever say so otherwise.
        in_use = clusters_referenced_by_routes(route for name, route in held if name in routes.names)
        held_clusters = self._types[CLUSTER].in_flight_or_held()
        wanted = snapshot.resources(CLUSTER)
        return {name: cluster for name, cluster in held_clusters.items() if name in in_use and name not in wanted}

    def _desired(
        self, snapshot: Snapshot, *, type_url: str, retained: Mapping[str, Message]
    ) -> tuple[str, Mapping[str, Message]]:
        resources = dict(snapshot.resources(type_url))
        extras: Mapping[str, Message] = _NO_RESOURCES
        if type_url == CLUSTER:
            extras = retained
        elif type_url == ENDPOINT:
            service_names = {_eds_service_name(cluster) for cluster in retained.values()}
            extras = {
                name: assignment
                for name, assignment in self._types[ENDPOINT].in_flight_or_held().items()
                if name in service_names and name not in resources
            }
        version = snapshot.version_of(type_url)
        if extras:
            resources.update(extras)
            # The content differs from the snapshot's, so its version must too.
            version = ResourceSet.build(type_url, resources.values()).version
        if type_url not in _WILDCARD_TYPES:
            names = self._types[type_url].names
            resources = {name: resource for name, resource in resources.items() if name in names}
        return version, resources

    @staticmethod
    def _should_send(type_url: str, *, state: _TypeState, version: str, resources: Mapping[str, Message]) -> bool:
        if type_url in _WILDCARD_TYPES:
            return state.sent is None or version != state.sent.version
        # Named types: an empty response would tell the proxy nothing, so wait for the names to exist.
        if not resources:
            return False
        if state.sent is None:
            return True
        return version != state.sent.version or not resources.keys() <= state.sent.resources.keys()

    def _respond(
        self, type_url: str, *, state: _TypeState, version: str, resources: Mapping[str, Message]
    ) -> discovery_pb2.DiscoveryResponse:
        nonce = next(self._nonces)
        state.sent = _Response(version=version, nonce=nonce, resources=MappingProxyType(dict(resources)))
        state.answered = False
        state.rejected = False
        state.resend = False
        response = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
        for resource in resources.values():
            response.resources.add().Pack(resource)
        _log.info(
            "xds.push",
            node_id=self._node_id,
            type=SHORT_NAMES[type_url],
            version=version,
            nonce=nonce,
            resources=len(resources),
        )
        self._connection.record_push(type_url, version)
        return response

    def _fully_acked(self, snapshot: Snapshot) -> bool:
        """Whether the proxy ACKed every resource of ``snapshot``, with nothing else pending."""
        for type_url in PUSH_ORDER:
            wanted = snapshot.resources(type_url)
            state = self._types[type_url]
            if not wanted and (type_url not in _WILDCARD_TYPES or not state.subscribed):
                continue
            acked = state.acked
            if (
                acked is None
                or not state.settled()
                or acked.version != snapshot.version_of(type_url)
                or not wanted.keys() <= acked.resources.keys()
            ):
                return False
        return True


def _eds_service_name(cluster: Message) -> str:
    assert isinstance(cluster, cluster_pb2.Cluster)
    return str(cluster.eds_cluster_config.service_name or cluster.name)
