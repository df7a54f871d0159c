"""Which Istio resource produced an Envoy resource, found from the Envoy resource's name.

When Envoy rejects a resource it names it (``0.0.0.0_8080``, ``http.8080``,
``outbound|9080|v2|reviews.default.svc.cluster.local``); the names follow Istio's
scheme (:mod:`reconciler.translate.names`), so they lead back to the Gateway server,
ServiceEntry host or DestinationRule subset to fix, with its file and line. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.protocols import HTTP_PROTOCOLS
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE

__all__ = ["Producer", "producers_of"]


@dataclass(frozen=True, slots=True)
class Producer:
    """An Istio resource and the field of it that an Envoy resource came from."""

    resource: Resource[Any]
    path: str

    @property
    def line(self) -> int:
        return self.resource.source.line_of(self.path)


def producers_of(config: MeshConfig, *, type_url: str, name: str) -> tuple[Producer, ...]:
    """The resources of ``config`` that made the Envoy resource ``name`` of ``type_url`` (empty: not traceable)."""
    if type_url in (CLUSTER, ENDPOINT):
        return _cluster_producers(config, name)
    if type_url in (LISTENER, ROUTE):
        # Gateway listeners are ADDRESS_PORT and their routes http.PORT; sidecar ones are not traced.
        separator = "_" if type_url == LISTENER else "."
        prefix, _, port = name.rpartition(separator)
        if not port.isdigit() or (type_url == ROUTE and prefix != "http"):
            return ()
        return _gateway_servers_on(config, int(port))
    return ()


def _gateway_servers_on(config: MeshConfig, port: int) -> tuple[Producer, ...]:
    return tuple(
        Producer(gateway, f"spec.servers[{index}].port.number")
        for gateway in config.gateways
        for index, server in enumerate(gateway.spec.servers)
        if int(server.port.number) == port and server.port.protocol.upper() in HTTP_PROTOCOLS
    )


def _cluster_producers(config: MeshConfig, name: str) -> tuple[Producer, ...]:
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        return ()
    _, _, subset, host = parts
    found = [
        Producer(entry, f"spec.hosts[{index}]")
        for entry in config.service_entries
        for index, entry_host in enumerate(entry.spec.hosts)
        if entry_host == host
    ]
    if subset:
        found.extend(
            Producer(rule, f"spec.subsets[{index}]")
            for rule in config.destination_rules
            for index, candidate in enumerate(rule.spec.subsets)
            if candidate.name == subset and rule.spec.host == host
        )
    return tuple(found)
