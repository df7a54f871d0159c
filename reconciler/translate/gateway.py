"""The gateway role: a listener per Gateway server port, routes from the VirtualServices bound to it.

Like Istio: all plain-HTTP servers of the selected Gateways that share a port share one
listener (``0.0.0.0_8080``) and one route configuration (``http.8080``). A VirtualService
bound to a Gateway contributes its routes to a virtual host for each of its hosts that
the server admits (``ns/host`` entries admit only VirtualServices of ``ns``; wildcards on
either side intersect to the more specific host). Servers Istio would terminate TLS on,
or that carry TCP/TLS, are reported as not translated and get no listener.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import wrappers_pb2

from reconciler.model.config import Resource
from reconciler.model.gateway import GatewaySpec, Server
from reconciler.model.hosts import host_matches, resolve_host, split_gateway_host
from reconciler.model.protocols import HTTP_PROTOCOLS
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.translate.constraints import violations
from reconciler.translate.listeners import http_listener
from reconciler.translate.names import gateway_route_name, virtual_host_name
from reconciler.translate.notes import Notes
from reconciler.translate.routes import RouteBuilder, is_catch_all
from reconciler.translate.scope import Scope
from reconciler.translate.sidecar import MAX_DIRECT_RESPONSE_BODY_BYTES, report_l4_routes

__all__ = ["build_gateway", "intersect_hosts"]


@dataclass(frozen=True, slots=True)
class _BoundServer:
    gateway: Resource[GatewaySpec]
    server: Server
    index: int


def intersect_hosts(server_hosts: list[str], vs_hosts: list[str]) -> list[str]:
    """Istio's ``Names.Intersection``: for each overlapping pair, the more specific of the two."""
    result: list[str] = []
    for server_host in server_hosts:
        for vs_host in vs_hosts:
            if host_matches(vs_host, server_host):
                chosen = server_host
            elif host_matches(server_host, vs_host):
                chosen = vs_host
            else:
                continue
            if chosen not in result:
                result.append(chosen)
    return result


def build_gateway(
    *,
    scope: Scope,
    gateways: list[Resource[GatewaySpec]],
    routes: RouteBuilder,
    notes: Notes,
    passing: set[str] | None = None,
) -> tuple[list[listener_pb2.Listener], list[route_pb2.RouteConfiguration]]:
    """Listeners and route configurations for a gateway proxy selected by ``gateways``.

    ``passing`` gets the names of the route configurations known to break none of Envoy's
    constraints: their routes passed as templates (:meth:`RouteBuilder.encoded`), their own fields
    and their virtual hosts' were walked here.
    """
    by_port: dict[int, list[_BoundServer]] = {}
    for gateway in gateways:
        for index, server in enumerate(gateway.spec.servers):
            protocol = server.port.protocol.upper()
            path = f"spec.servers[{index}]"
            # Servers of these protocols are served by an HTTP connection manager without TLS.
            if protocol in HTTP_PROTOCOLS:
                by_port.setdefault(int(server.port.number), []).append(_BoundServer(gateway, server, index))
            elif protocol == "HTTPS":
                notes.about(
                    gateway,
                    path=path,
                    message=(
                        f"HTTPS server on port {server.port.number}: TLS termination is not translated, no listener"
                    ),
                    hint="serve plain HTTP on this gateway for now, or terminate TLS in front of it",
                )
            else:
                notes.about(
                    gateway,
                    path=f"{path}.port.protocol",
                    message=(
                        f"{protocol} server on port {server.port.number} is not translated (only HTTP is); no listener"
                    ),
                )

    bound: dict[str, list[Resource[VirtualServiceSpec]]] = {}
    for gateway in gateways:
        bound[gateway.ref] = scope.gateway_virtual_services(gateway)
        for vs in bound[gateway.ref]:
            report_l4_routes(vs, notes)

    listeners = []
    configs = []
    for port in sorted(by_port):
        vhosts: dict[str, route_components_pb2.VirtualHost] = {}
        templates_pass = True
        for entry in by_port[port]:
            templates_pass = (
                _add_server(entry, port=port, vhosts=vhosts, virtual_services=bound[entry.gateway.ref], routes=routes)
                and templates_pass
            )
        if not vhosts:
            # Istio's answer for a port with nothing bound: a virtual host that 404s everything.
            vhosts["blackhole"] = route_components_pb2.VirtualHost(
                name=virtual_host_name("blackhole", port), domains=["*"]
            )
        for vhost in vhosts.values():
            _catch_all_last(vhost)
        route_name = gateway_route_name(port)
        config = route_pb2.RouteConfiguration(
            name=route_name,
            virtual_hosts=[vhosts[name] for name in sorted(vhosts)],
            # Clients write ports in Host headers (example.com:8080); gateway hosts are names only.
            ignore_port_in_host_matching=True,
            max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY_BYTES),
        )
        configs.append(config)
        if passing is not None and templates_pass and _own_fields_pass(config):
            passing.add(route_name)
        listeners.append(http_listener(port=port, route_name=route_name, edge=True))
    return listeners, configs


def _add_server(
    entry: _BoundServer,
    *,
    port: int,
    vhosts: dict[str, route_components_pb2.VirtualHost],
    virtual_services: list[Resource[VirtualServiceSpec]],
    routes: RouteBuilder,
) -> bool:
    """Add the virtual hosts of one server; True when all the routes added passed as templates."""
    passes = True
    server = entry.server
    https_redirect = server.tls is not None and server.tls.https_redirect
    admitted = [split_gateway_host(written, entry.gateway.namespace) for written in server.hosts]
    for vs in virtual_services:
        server_hosts = [host for namespace, host in admitted if namespace in ("*", vs.namespace)]
        vs_hosts = [resolve_host(host, vs.namespace) for host in vs.spec.hosts]
        hostnames = intersect_hosts(server_hosts, vs_hosts)
        if not hostnames:
            continue
        vs_routes = routes.routes(vs, listener_port=port)
        if not vs_routes:
            continue
        passes = passes and routes.encoded(vs, listener_port=port).passes
        for hostname in hostnames:
            vhost = vhosts.get(hostname)
            if vhost is None:
                vhost = route_components_pb2.VirtualHost(
                    name=virtual_host_name(hostname, port), domains=[hostname], include_request_attempt_count=True
                )
                vhosts[hostname] = vhost
            vhost.routes.extend(vs_routes)
            if https_redirect:
                vhost.require_tls = route_components_pb2.VirtualHost.ALL
    if https_redirect:
        # Every admitted host redirects to HTTPS, also those no VirtualService routes.
        for _, hostname in admitted:
            vhost = vhosts.get(hostname)
            if vhost is None:
                vhost = route_components_pb2.VirtualHost(
                    name=virtual_host_name(hostname, port), domains=[hostname], include_request_attempt_count=True
                )
                vhosts[hostname] = vhost
            vhost.require_tls = route_components_pb2.VirtualHost.ALL
    return passes


def _own_fields_pass(config: route_pb2.RouteConfiguration) -> bool:
    """Whether the fields of ``config`` and of its virtual hosts, all but the routes, break no constraint."""
    if violations(config, without="virtual_hosts"):
        return False
    return not any(violations(vhost, without="routes") for vhost in config.virtual_hosts)


def _catch_all_last(vhost: route_components_pb2.VirtualHost) -> None:
    """Istio's ``SortVHostRoutes``: when several VirtualServices share a host, match-all routes go last."""
    flags = [is_catch_all(route) for route in vhost.routes]
    order = [i for i, flag in enumerate(flags) if not flag] + [i for i, flag in enumerate(flags) if flag]
    if order == list(range(len(flags))):
        return
    copies = []
    for index in order:
        copy = route_components_pb2.Route()
        copy.CopyFrom(vhost.routes[index])
        copies.append(copy)
    del vhost.routes[:]
    vhost.routes.extend(copies)
