"""The incremental (delta) ADS protocol for one stream, without the transport.

:class:`DeltaAdsSession` serves the same snapshots as the state-of-the-world session, with
the same make-before-break rules (:class:`~reconciler.xds.session.DesiredState`), but each
response carries only what changed for the proxy: the resources whose version differs from
what it holds (each with its own content-hash version) and the names of those it must drop
(``removed_resources``). Following Envoy's incremental xDS protocol:

* Cluster and Listener are wildcard (every resource of the snapshot); ClusterLoadAssignment
  and RouteConfiguration are what the proxy subscribed to (``resource_names_subscribe``,
  ``resource_names_unsubscribe``); a name it subscribes to again is sent again, changed or
  not, and so are the endpoints of a cluster updated in place (it warms on a new EDS
  subscription of the same name, and Envoy does not ask again);
* a proxy's first request of a type on a new stream may list what it holds
  (``initial_resource_versions``): only what differs from that is sent, and what it holds
  that no longer exists is removed;
* each response has a nonce, and a request naming the latest one ACKs it (or NACKs it,
  with ``error_detail``); an older nonce's answer is stale and ignored; a subscription
  change in the same request is applied either way. After a NACK nothing is resent until
  the content changes, as in state of the world.

``system_version_info`` is the type's version (the snapshot's, or the content hash of what
the proxy is sent with make-before-break extras), so status reads the same in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from envoy.service.discovery.v3 import discovery_pb2

from reconciler.translate.snapshot import CLUSTER, ENDPOINT, Resource
from reconciler.xds.cache import ProxyConnection
from reconciler.xds.session import WILDCARD_TYPES, DesiredState, _TypeState
from reconciler.xds.shared import Shared

__all__ = ["DeltaAdsSession"]

_log = structlog.get_logger()


class DeltaAdsSession(DesiredState):
    """Protocol state of one incremental ADS stream; the caller sends what ``handle_*`` return."""

    def __init__(self, *, node_id: str, connection: ProxyConnection, shared: Shared | None = None) -> None:
        super().__init__(node_id=node_id, connection=connection, shared=shared)
        # What the proxy said it holds when it opened each type on this stream (name -> version).
        self._initial: dict[str, dict[str, str]] = {}
        # Names the proxy (re)subscribed to since the last response of their type: sent even if unchanged.
        self._forced: dict[str, set[str]] = {}

    def handle_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> list[bytes]:
        received = self._receive(request)  # records an ACK or NACK; subscription changes apply regardless
        if received is None:
            return []
        type_url, state, _ = received
        if not state.subscribed:
            state.subscribed = True
            self._initial[type_url] = dict(request.initial_resource_versions)
        if type_url not in WILDCARD_TYPES:
            subscribe = set(request.resource_names_subscribe)
            unsubscribe = set(request.resource_names_unsubscribe)
            if subscribe or unsubscribe:
                state.names = self._shared.names((state.names - unsubscribe) | subscribe)
                self._forced.setdefault(type_url, set()).update(subscribe)
        return self._push_changes()

    def _resend_held(self) -> None:
        # Delta sends only what changed: a resend names every resource the proxy holds.
        for type_url, state in self._types.items():
            if state.subscribed and state.sent is not None and not state.rejected:
                self._forced.setdefault(type_url, set()).update(state.held())

    def _response_for(
        self, type_url: str, *, state: _TypeState, version: str, resources: Mapping[str, Resource], full: bool
    ) -> bytes | None:
        forced = self._forced.pop(type_url, set())
        if state.sent is None:
            if not resources and type_url not in WILDCARD_TYPES:
                return None  # as in state of the world: wait for the subscribed names to exist
            # The first response of a type is sent even when the proxy holds it all: its ACK says so.
            changed, removed = self._diff_from_versions(self._initial.get(type_url, {}), resources, forced=forced)
        else:
            if not forced and version == state.sent.version and resources is state.sent.resources:
                return None  # nothing changed, or the change was NACKed: never resend rejected content
            base = state.in_flight_or_held()
            changed, removed = self._diff(base, resources, forced=forced)
            if type_url not in WILDCARD_TYPES:
                # A name the proxy unsubscribed from is already dropped on its side.
                removed = [name for name in removed if name in state.names]
            if not changed and not removed and version == state.sent.version:
                return None
            # Nothing new for the proxy, but a new version (back to what it holds after a NACK): an
            # empty response lets it say so with an ACK, or status would show the NACK forever.
        if type_url == CLUSTER and state.sent is not None:
            # A cluster updated in place warms on a fresh EDS subscription of the same name, which
            # Envoy does not ask for again in delta mode: send its endpoints right after it.
            held = state.in_flight_or_held()
            self._forced.setdefault(ENDPOINT, set()).update(
                name for cluster in changed if cluster.name in held for name in cluster.references
            )
        whole = full and len(changed) == len(resources)
        framed = self._shared.encoder.delta(
            type_url=type_url,
            system_version=version,
            resources=changed,
            removed=removed,
            key=version if whole else None,
            after=state.serial,
        )
        return self._sent(type_url, state=state, version=version, resources=resources, framed=framed)

    def _diff(
        self, base: Mapping[str, Resource], resources: Mapping[str, Resource], *, forced: set[str]
    ) -> tuple[list[Resource], list[str]]:
        changed_names, removed = self._shared.delta(base, resources)
        changed = [resources[name] for name in changed_names]
        if forced:
            seen = set(changed_names)
            changed.extend(resources[name] for name in sorted(forced) if name in resources and name not in seen)
        return changed, list(removed)

    @staticmethod
    def _diff_from_versions(
        holds: Mapping[str, str], resources: Mapping[str, Resource], *, forced: set[str]
    ) -> tuple[list[Resource], list[str]]:
        if not holds:
            return list(resources.values()), []
        changed = [
            resource for name, resource in resources.items() if holds.get(name) != resource.version or name in forced
        ]
        removed = sorted(name for name in holds if name not in resources)
        return changed, removed
