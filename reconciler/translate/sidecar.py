"""The sidecar (mesh) role: one outbound HTTP listener with a virtual host per service and port.

Istio gives a sidecar one outbound listener per service port; reconciler's sidecar has a
single HTTP listener (the proxy's ``outbound_port``) whose route configuration holds
every service, which is how Istio builds its HTTP-proxy route table: a virtual host per
service port, answering to ``host:port`` in every spelling (``reviews:9080``,
``reviews.default:9080``, the FQDN, ...), and to the bare spellings on the service's
default port (80 if it has one, else its first HTTP port).

VirtualServices without ``gateways`` (or listing ``mesh``) route their hosts; services
without one get Istio's default route to their default cluster. Hosts outside the
registry are served on port 80, like Istio's hosts outside the registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import wrappers_pb2

from reconciler.model.config import Resource
from reconciler.model.hosts import host_matches, resolve_host
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.translate.constraints import violations
from reconciler.translate.listeners import http_listener
from reconciler.translate.memo import EncodedRoutes, EnsureCall
from reconciler.translate.names import (
    DEFAULT_HTTP_PORT,
    cluster_name,
    host_domains,
    sidecar_route_name,
    virtual_host_name,
)
from reconciler.translate.notes import NoteCall, Notes
from reconciler.translate.protos import varint
from reconciler.translate.registry import Service, ServicePort
from reconciler.translate.routes import RouteBuilder
from reconciler.translate.scope import Scope
from reconciler.translate.snapshot import ROUTE, Names, ResourceSet, RouteHashes
from reconciler.translate.snapshot import Resource as XdsResource

__all__ = [
    "MAX_DIRECT_RESPONSE_BODY_BYTES",
    "PlannedHost",
    "RouteTable",
    "SidecarStep",
    "VirtualHosts",
    "build_sidecar",
    "no_http_port",
    "report_l4_routes",
    "sidecar_routes",
    "virtual_host",
]

#: Istio raises Envoy's 4 KiB limit on direct-response bodies to 1 MiB (what its validation allows).
MAX_DIRECT_RESPONSE_BODY_BYTES = 1024 * 1024


def report_l4_routes(vs: Resource[VirtualServiceSpec], notes: Notes) -> None:
    """A finding for each TCP and TLS route: only HTTP routing is translated."""
    for index, _ in enumerate(vs.spec.tcp):
        notes.about(vs, path=f"spec.tcp[{index}]", message="TCP routes are not translated: this traffic is not routed")
    for index, _ in enumerate(vs.spec.tls):
        notes.about(vs, path=f"spec.tls[{index}]", message="TLS routes are not translated: this traffic is not routed")


class PlannedHost(NamedTuple):
    """A virtual host :class:`VirtualHosts` will hold: serialized in place in the route configuration."""

    name: str
    domains: tuple[str, ...]
    routes: EncodedRoutes


#: A virtual host's ``include_request_attempt_count: true``, its last field set (field 14, a varint).
_ATTEMPT_COUNT = route_components_pb2.VirtualHost(include_request_attempt_count=True).SerializeToString()
#: Field 2 of a RouteConfiguration (virtual_hosts), length-delimited.
_VIRTUAL_HOSTS_TAG = b"\x12"
#: The name that stands for every virtual host's in the check of their domains.
_PLACEHOLDER_NAME = "-"


@dataclass(frozen=True, slots=True)
class RouteTable:
    """A sidecar's route configuration, serialized as it was built: as a message it is 10 MB at 10,000 services.

    ``passes``: it breaks none of Envoy's constraints (False: not known; the check walks it as usual).
    """

    resource: XdsResource
    passes: bool
    #: Each virtual host, serialized, in order.
    vhosts: tuple[bytes, ...]
    #: Their hashes, what the version is made of (and what the Envoy check's pass cache and the patch path key by).
    hashes: RouteHashes

    def message(self) -> route_pb2.RouteConfiguration:
        """The route configuration as a message (parsed from its bytes)."""
        message = self.resource.message
        assert isinstance(message, route_pb2.RouteConfiguration)
        return message

    def digests(self) -> list[str]:
        """Each virtual host's digest, as the Envoy check's pass cache knows virtual hosts."""
        return [leaf.hex() for leaf in self.hashes.leaves]

    def resource_set(self) -> ResourceSet:
        """The set of this one route configuration (its message is parsed from its bytes when asked)."""
        resource = self.resource
        shell = route_pb2.RouteConfiguration(name=resource.name)
        return ResourceSet.build(ROUTE, (shell,), encode=lambda _, __: resource).shed()


class VirtualHosts:
    """Virtual hosts of one route configuration; a domain already taken is not offered twice.

    Envoy rejects a route configuration that lists a domain twice; the first virtual host
    to claim a domain keeps it, as in Istio (VirtualService hosts come before plain services).
    """

    def __init__(self) -> None:
        self.by_name: dict[str, PlannedHost] = {}
        self._domains: set[str] = set()

    def add(self, *, name: str, domains: Sequence[str], routes: EncodedRoutes) -> PlannedHost | None:
        """Add a virtual host with the domains nobody has yet and return it; none left (or name taken): None."""
        if name in self.by_name:
            return None
        fresh = []
        for domain in domains:
            if domain not in self._domains:
                self._domains.add(domain)
                fresh.append(domain)
        if not fresh:
            return None
        planned = self.by_name[name] = PlannedHost(name=name, domains=tuple(fresh), routes=routes)
        return planned

    def table(self, *, name: str, names: Names | None = None) -> RouteTable:
        """The route configuration ``name`` of these virtual hosts, by name (Envoy's matching does not depend on
        their order; the diff does), serialized from its parts as its message would serialize.

        A message's fields serialize in field-number order and a repeated field as its elements
        one after another: the configuration's name, its virtual hosts, then its other fields;
        a virtual host's name (1) and domains (2), its routes (3, serialized once per VirtualService
        and port), then ``include_request_attempt_count`` (14). ``names`` interns the set of clusters it uses.
        """
        config = route_pb2.RouteConfiguration(
            name=name,
            max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY_BYTES),
        )
        own = config.SerializeToString(deterministic=True)
        head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
        pieces = [head]
        vhosts = []
        references: set[str] = set()
        passes = True
        for key in sorted(self.by_name):
            host = self.by_name[key]
            fields = route_components_pb2.VirtualHost(name=host.name, domains=host.domains).SerializeToString()
            vhost = b"".join((fields, host.routes.data, _ATTEMPT_COUNT))
            vhosts.append(vhost)
            pieces.extend((_VIRTUAL_HOSTS_TAG, varint(len(vhost)), vhost))
            references.update(host.routes.references)
            passes = passes and host.routes.passes
        tail = own[len(head) :]
        pieces.append(tail)
        # Each virtual host hashed once: the version is made of these (as resource_version would make it).
        hashes = RouteHashes.of([hashlib.sha256(vhost).digest() for vhost in vhosts])
        found = frozenset(references)
        resource = XdsResource.of_bytes(
            ROUTE,
            name,
            b"".join(pieces),
            references=found if names is None else names(found),
            version=hashes.version(name, prefix=head, suffix=tail),
        )
        return RouteTable(
            resource=resource,
            passes=passes and self._own_fields_pass(config),
            vhosts=tuple(vhosts),
            hashes=hashes,
        )

    def _own_fields_pass(self, config: route_pb2.RouteConfiguration) -> bool:
        """Whether the route configuration's and its virtual hosts' own fields (all but routes) break nothing.

        A virtual host's own fields are a name (not empty) and domains (at least one, each a valid
        header value): all domains are walked in one message, and the names need only not be
        empty (``tests/translate`` pins those constraints).
        """
        if violations(config, without="virtual_hosts"):
            return False
        if not all(host.name and host.domains for host in self.by_name.values()):
            return False
        domains = [domain for host in self.by_name.values() for domain in host.domains]
        every = route_components_pb2.VirtualHost(name=_PLACEHOLDER_NAME, domains=domains or ["-"])
        return not violations(every, without="routes")


def virtual_host(
    *, name: str, domains: Sequence[str], routes: Sequence[route_components_pb2.Route]
) -> route_components_pb2.VirtualHost:
    """A sidecar's virtual host ``name`` answering to ``domains``."""
    return route_components_pb2.VirtualHost(
        name=name, domains=domains, routes=routes, include_request_attempt_count=True
    )


@dataclass(frozen=True, slots=True)
class SidecarStep:
    """One thing :func:`build_sidecar` did with a VirtualService, which a patch does again when it changes.

    ``vs``: the VirtualService's index in the config it was recorded from (a patch keeps it as others go and
    come). ``kind`` ``routes``: asked for its routes on ``listener_port`` for the virtual host ``vhost``
    (None: the name or every domain was taken, so nothing was added); ``l4``: reported its TCP and
    TLS routes; ``no-http``: reported that ``host`` has no HTTP port. ``events``: what that
    reported and which clusters it asked for, in order (:class:`~reconciler.translate.memo.EnsureCall`).
    """

    kind: str
    vs: int
    listener_port: int = 0
    vhost: str | None = None
    domains: tuple[str, ...] = ()
    host: str = ""
    events: tuple[NoteCall | EnsureCall, ...] = ()


class _Steps:
    """Records :class:`SidecarStep` s into a list (a cache's patch path reads them)."""

    def __init__(self, into: list[SidecarStep], *, scope: Scope, routes: RouteBuilder, notes: Notes) -> None:
        self._into = into
        self._index = {id(vs): index for index, vs in enumerate(scope.config.virtual_services)}
        self._routes = routes
        self._notes = notes

    def routes(self, vs: Resource[VirtualServiceSpec], *, port: int, vhost: PlannedHost | None) -> None:
        entry = self._routes.last_entry()
        assert entry is not None, "steps are recorded only through a cache"
        self._into.append(
            SidecarStep(
                kind="routes",
                vs=self._index[id(vs)],
                listener_port=port,
                vhost=vhost.name if vhost is not None else None,
                domains=vhost.domains if vhost is not None else (),
                events=entry.events,
            )
        )

    def notes(self, kind: str, vs: Resource[VirtualServiceSpec], report: Callable[[], None], *, host: str = "") -> None:
        events: list[NoteCall] = []
        self._notes.record(events)
        try:
            report()
        finally:
            self._notes.record(None)
        self._into.append(SidecarStep(kind=kind, vs=self._index[id(vs)], host=host, events=tuple(events)))


def _domains(host: str, port: int, *, bare: bool, namespace: str) -> list[str]:
    if host == "*":
        return ["*"]
    domains = []
    for form in host_domains(host, proxy_namespace=namespace):
        if bare:
            domains.append(form)
        domains.append(f"{form}:{port}")
    return domains


def no_http_port(vs: Resource[VirtualServiceSpec], host: str, notes: Notes) -> None:
    """The finding for a VirtualService host whose service has no HTTP port."""
    notes.about(
        vs,
        path="spec.http",
        message=f"{host} has no HTTP port: its HTTP rules are not used (TCP routing is not translated)",
    )


def build_sidecar(
    *,
    scope: Scope,
    routes: RouteBuilder,
    notes: Notes,
    port: int,
    steps: list[SidecarStep] | None = None,
) -> tuple[listener_pb2.Listener, route_pb2.RouteConfiguration]:
    """The outbound listener on ``port`` and its route configuration.

    Routes name clusters through ``routes`` (its ClusterSet builds any that are missing). With
    ``steps`` (``routes`` must have a cache), what was done with each VirtualService is appended to it.
    """
    listener, table = sidecar_routes(scope=scope, routes=routes, notes=notes, port=port, steps=steps)
    return listener, table.message()


def sidecar_routes(
    *,
    scope: Scope,
    routes: RouteBuilder,
    notes: Notes,
    port: int,
    steps: list[SidecarStep] | None = None,
    names: Names | None = None,
) -> tuple[listener_pb2.Listener, RouteTable]:
    """:func:`build_sidecar` with the route configuration as it is built, serialized (:class:`RouteTable`)."""
    namespace = scope.namespace
    record = _Steps(steps, scope=scope, routes=routes, notes=notes) if steps is not None else None
    exact: dict[str, Resource[VirtualServiceSpec]] = {}
    wildcards: dict[str, tuple[int, Resource[VirtualServiceSpec]]] = {}
    for vs in scope.mesh_virtual_services():
        if record is None:
            report_l4_routes(vs, notes)
        elif vs.spec.tcp or vs.spec.tls:
            record.notes("l4", vs, partial(report_l4_routes, vs, notes))
        if not vs.spec.http:
            # Without HTTP rules a VirtualService does not take over its hosts' HTTP traffic.
            continue
        for written in vs.spec.hosts:
            host = resolve_host(written, vs.namespace)
            if "*" in host:
                wildcards.setdefault(host, (len(wildcards), vs))
            else:
                exact.setdefault(host, vs)
    # Most specific wildcard first: a longer suffix wins, then the earlier VirtualService.
    wildcard_order = sorted(wildcards.items(), key=lambda item: (-len(item[0]), item[1][0]))

    vhosts = VirtualHosts()
    for host, vs in exact.items():
        service = scope.service(host)
        if service is None:
            added = vhosts.add(
                name=virtual_host_name(host, DEFAULT_HTTP_PORT),
                domains=_domains(host, DEFAULT_HTTP_PORT, bare=True, namespace=namespace),
                routes=routes.encoded(vs, listener_port=DEFAULT_HTTP_PORT),
            )
            if record is not None:
                record.routes(vs, port=DEFAULT_HTTP_PORT, vhost=added)
            continue
        if not any(p.is_http for p in service.ports):
            if record is None:
                no_http_port(vs, host, notes)
            else:
                record.notes("no-http", vs, partial(no_http_port, vs, host, notes), host=host)
            continue
        _add_service(vhosts, service, namespace=namespace, routes_for=partial(routes.encoded, vs), vs=vs, record=record)

    used_wildcards: set[str] = set()
    for service in scope.services():
        if service.host in exact:
            continue
        matched = next(
            ((pattern, vs) for pattern, (_, vs) in wildcard_order if host_matches(pattern, service.host)), None
        )
        if matched is not None:
            used_wildcards.add(matched[0])
            _add_service(
                vhosts,
                service,
                namespace=namespace,
                routes_for=partial(routes.encoded, matched[1]),
                vs=matched[1],
                record=record,
            )
        else:
            _add_service(vhosts, service, namespace=namespace, routes_for=partial(_default_routes, routes, service))
    for pattern, (_, vs) in wildcard_order:
        # Istio serves a wildcard host as written only when it matched no service in the registry.
        if pattern not in used_wildcards:
            added = vhosts.add(
                name=virtual_host_name(pattern, DEFAULT_HTTP_PORT),
                domains=_domains(pattern, DEFAULT_HTTP_PORT, bare=True, namespace=namespace),
                routes=routes.encoded(vs, listener_port=DEFAULT_HTTP_PORT),
            )
            if record is not None:
                record.routes(vs, port=DEFAULT_HTTP_PORT, vhost=added)

    table = vhosts.table(name=sidecar_route_name(port), names=names)
    return http_listener(port=port, route_name=table.resource.name, edge=False), table


_RoutesFor = Callable[..., EncodedRoutes]


def _add_service(
    vhosts: VirtualHosts,
    service: Service,
    *,
    namespace: str,
    routes_for: _RoutesFor,
    vs: Resource[VirtualServiceSpec] | None = None,
    record: _Steps | None = None,
) -> None:
    """A virtual host per HTTP port of ``service``; ``routes_for(listener_port=N)`` gives each one's routes.

    ``record`` (with the VirtualService ``vs`` the routes come from) records a step per virtual host.
    """
    http_ports = [port for port in service.ports if port.is_http]
    if not http_ports:
        return
    default = _default_port(http_ports)
    for port in http_ports:
        added = vhosts.add(
            name=virtual_host_name(service.host, port.number),
            domains=_domains(service.host, port.number, bare=port.number == default, namespace=namespace),
            routes=routes_for(listener_port=port.number),
        )
        if record is not None and vs is not None:
            record.routes(vs, port=port.number, vhost=added)


def _default_routes(routes: RouteBuilder, service: Service, *, listener_port: int) -> EncodedRoutes:
    return routes.default_encoded(cluster_name(host=service.host, port=listener_port))


def _default_port(ports: Sequence[ServicePort]) -> int:
    """The port a Host header without port means: 80 when the service has it, else its first HTTP port."""
    numbers = [port.number for port in ports]
    return DEFAULT_HTTP_PORT if DEFAULT_HTTP_PORT in numbers else numbers[0]
