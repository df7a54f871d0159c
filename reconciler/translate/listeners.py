"""HTTP listeners: one HTTP connection manager fetching its routes over RDS, fault filter before the router.

The fault filter is always present, even when no route injects faults: routes switch it
on per route (``typed_per_filter_config``), so adding or removing a fault is a route
update. Changing a listener's filters would make Envoy drain every open connection.
"""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from reconciler.translate.names import WILDCARD_ADDRESS, listener_name
from reconciler.translate.routes import FAULT_FILTER

__all__ = ["HCM_FILTER", "ROUTER_FILTER", "http_listener"]

HCM_FILTER = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER = "envoy.filters.http.router"


def http_listener(*, port: int, route_name: str, edge: bool) -> listener_pb2.Listener:
    """A listener on ``0.0.0.0:port`` named like Istio (``0.0.0.0_8080``), routes from RDS ``route_name``.

    ``edge`` is for gateways: they face clients directly, so the client address Envoy
    sees is the real one (``use_remote_address``); a sidecar's client is the local app.
    """
    name = listener_name(port)
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=f"outbound_{name}",
        rds=hcm_pb2.Rds(
            route_config_name=route_name,
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
        ),
    )
    if edge:
        manager.use_remote_address.value = True
    fault = manager.http_filters.add(name=FAULT_FILTER)
    fault.typed_config.Pack(fault_pb2.HTTPFault())
    router = manager.http_filters.add(name=ROUTER_FILTER)
    router.typed_config.Pack(router_pb2.Router())
    network_filter = listener_components_pb2.Filter(name=HCM_FILTER)
    network_filter.typed_config.Pack(manager)
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=WILDCARD_ADDRESS, port_value=port)
        ),
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )
