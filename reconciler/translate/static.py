"""A snapshot as one static Envoy bootstrap: for ``envoy --mode validate`` and xDS-free local runs.

The snapshot's resources are used as they are, except for the two indirections a static
config cannot have: EDS clusters become ``STATIC`` clusters carrying their
ClusterLoadAssignment inline, and listeners fetching routes over RDS get the
RouteConfiguration inline. What Envoy accepts here it accepts over ADS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from reconciler.errors import TranslationError
from reconciler.model.text import quote
from reconciler.translate.bootstrap import envoy_runtime
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot, http_connection_managers

__all__ = ["static_bootstrap"]


def static_bootstrap(
    snapshot: Snapshot,
    *,
    node_id: str = "reconciler",
    node_cluster: str = "reconciler",
    admin_port: int | None = None,
) -> dict[str, Any]:
    """The snapshot as a static Envoy bootstrap (a JSON-ready dict, Envoy's field names).

    ``admin_port`` adds an admin listener on 127.0.0.1 (``0``: the kernel picks a port),
    which running Envoy needs and ``--mode validate`` does not.
    """
    assignments = snapshot.resources(ENDPOINT)
    routes = snapshot.resources(ROUTE)
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = node_id
    bootstrap.node.cluster = node_cluster
    if admin_port is not None:
        bootstrap.admin.address.CopyFrom(
            address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=admin_port))
        )
    bootstrap.layered_runtime.layers.add(name="reconciler").static_layer.update(envoy_runtime())
    for name, message in snapshot.resources(CLUSTER).items():
        cluster = bootstrap.static_resources.clusters.add()
        cluster.CopyFrom(message)
        if cluster.type == cluster_pb2.Cluster.EDS:
            assignment = assignments.get(name)
            if not isinstance(assignment, endpoint_pb2.ClusterLoadAssignment):
                raise TranslationError(f"EDS cluster {quote(name)} has no ClusterLoadAssignment")
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.STATIC
            cluster.load_assignment.CopyFrom(assignment)
            cluster.load_assignment.cluster_name = name
    for message in snapshot.resources(LISTENER).values():
        listener = bootstrap.static_resources.listeners.add()
        listener.CopyFrom(message)
        _inline_routes(listener, routes)
    return MessageToDict(bootstrap, preserving_proto_field_name=True)


def _inline_routes(listener: listener_pb2.Listener, routes: Mapping[str, Message]) -> None:
    for network_filter, manager in http_connection_managers(listener):
        if not manager.HasField("rds"):
            continue
        config = routes.get(manager.rds.route_config_name)
        if not isinstance(config, route_pb2.RouteConfiguration):
            raise TranslationError(
                f"listener {quote(listener.name)} uses RouteConfiguration {quote(manager.rds.route_config_name)}, "
                "which does not exist"
            )
        manager.route_config.CopyFrom(config)
        network_filter.typed_config.Pack(manager)
