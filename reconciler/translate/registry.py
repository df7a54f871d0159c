"""The service registry: every service the mesh knows, its ports and its endpoints, as one value.

Translation never reads ServiceEntries directly for hosts, ports and endpoints: it asks a
:class:`ServiceRegistry`. :func:`build_registry` fills one from ServiceEntries; Kubernetes
Services and EndpointSlices (``reconciler.kube``) produce another of the same shape, combined with
:meth:`ServiceRegistry.merged`. A registry made for a daemon that watches a cluster names the
cluster's DNS domain (``cluster_domain``): a ``name.namespace.svc.<domain>`` host it does not list
(yet) is the cluster's to fill, not a missing service (:meth:`ServiceRegistry.from_cluster`). Pure
values: immutable, hashable where it matters, no I/O.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.hosts import exported_to, resolve_host
from reconciler.model.lookup import selects
from reconciler.model.protocols import HTTP2_PROTOCOLS, HTTP_PROTOCOLS
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.serviceentry import ServicePort as ServiceEntryPort
from reconciler.model.source import SourceInfo

__all__ = [
    "Endpoint",
    "Origin",
    "Resolution",
    "Service",
    "ServicePort",
    "ServiceRegistry",
    "build_registry",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_EMPTY_PORTS: Mapping[str, int] = MappingProxyType({})


class Resolution(StrEnum):
    """How a service's endpoints are found (ServiceEntry ``resolution``)."""

    #: Endpoints are listed explicitly (IP addresses): an EDS cluster with a load assignment.
    STATIC = "STATIC"
    #: Endpoints (or the host itself) are DNS names Envoy resolves, all addresses used.
    DNS = "DNS"
    #: Like DNS, but Envoy connects to one resolved address at a time.
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    #: Traffic goes to the address the client dialled (needs traffic capture; not translated).
    NONE = "NONE"
    #: Resolved per request by a dynamic forward proxy (not translated).
    DYNAMIC_DNS = "DYNAMIC_DNS"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a service came from, so findings about it point at the file and line to fix."""

    kind: str
    namespace: str
    name: str
    source: SourceInfo | None = None


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port of a service. ``protocol`` is upper-case; empty means unknown (treated like HTTP, as Istio sniffs)."""

    number: int
    name: str
    protocol: str = ""
    target_port: int | None = None
    #: Index in the origin's port list, for finding paths (``spec.ports[1]``).
    index: int = 0

    @property
    def is_http(self) -> bool:
        """True when requests on this port are routed as HTTP (declared HTTP-ish, or not declared)."""
        return not self.protocol or self.protocol in HTTP_PROTOCOLS

    @property
    def is_http2(self) -> bool:
        """True when the port speaks HTTP/2 to its endpoints (HTTP2, gRPC)."""
        return self.protocol in HTTP2_PROTOCOLS


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a service: an address, per-port-name port overrides, labels, weight."""

    address: str
    ports: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    weight: int | None = None
    #: Index in the origin's endpoint list, for finding paths (``spec.endpoints[2]``).
    index: int = 0

    def port_for(self, port: ServicePort) -> int:
        """The port this endpoint receives ``port``'s traffic on: its override, else targetPort, else number."""
        override = self.ports.get(port.name)
        if override is not None:
            return override
        return port.target_port or port.number

    def has_labels(self, selector: Mapping[str, str]) -> bool:
        """True when every ``selector`` label is on this endpoint (an empty selector selects all)."""
        return selects(selector, self.labels)


@dataclass(frozen=True, slots=True)
class Service:
    """A host the mesh can route to: fully qualified name, owner namespace, ports, endpoints."""

    host: str
    namespace: str
    ports: tuple[ServicePort, ...]
    resolution: Resolution
    endpoints: tuple[Endpoint, ...] = ()
    export_to: tuple[str, ...] = ()
    origin: Origin | None = None
    #: True when the origin selects extra endpoints by workload labels (not translated yet).
    selects_workloads: bool = False

    def visible_to(self, namespace: str) -> bool:
        """Istio ``exportTo``: may a proxy in ``namespace`` use this service?"""
        return exported_to(self.export_to, owner_namespace=self.namespace, consumer_namespace=namespace)

    def port(self, number: int) -> ServicePort | None:
        """The port numbered ``number``, if the service has one."""
        for port in self.ports:
            if port.number == number:
                return port
        return None


@dataclass(frozen=True, slots=True)
class ServiceRegistry:
    """Every known service, in a stable order, indexed by host.

    Several services may share a host (one per namespace, or one from Kubernetes and one
    from a ServiceEntry); :meth:`lookup` returns them in registry order and translation
    prefers the one in the proxy's namespace, then the first, as Istio does.
    """

    services: tuple[Service, ...] = ()
    #: The DNS domain of the cluster whose Services fill this registry; ``None``: no cluster is watched.
    cluster_domain: str | None = None
    _by_host: MappingProxyType[str, tuple[Service, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index: dict[str, list[Service]] = {}
        for service in self.services:
            index.setdefault(service.host, []).append(service)
        # A frozen dataclass computes its derived index once, here; it is never mutated afterwards.
        object.__setattr__(self, "_by_host", MappingProxyType({host: tuple(found) for host, found in index.items()}))

    def lookup(self, host: str) -> tuple[Service, ...]:
        """All services named exactly ``host`` (lower-case FQDN), in registry order."""
        return self._by_host.get(host, ())

    @property
    def hosts(self) -> tuple[str, ...]:
        """Distinct hosts in registry order."""
        return tuple(self._by_host)

    def from_cluster(self, host: str) -> bool:
        """Whether ``host`` (resolved) names a Kubernetes Service, ``name.namespace.svc.<domain>``, of the cluster."""
        if self.cluster_domain is None:
            return False
        name, dot, rest = host.partition(".")
        namespace, _, suffix = rest.partition(".")
        return bool(dot and name and namespace) and suffix == f"svc.{self.cluster_domain}" and "*" not in host

    def replaced(
        self, services: Mapping[int, Service], *, added: Iterable[Service] = (), removed: Iterable[Service] = ()
    ) -> ServiceRegistry:
        """This registry with the services at the given positions replaced by others of the same hosts, and ``added``.

        Equal to building it with those services (an added service of a host and namespace already
        listed is for the caller to leave out) and without ``removed`` (each the only one of its host);
        the host index is copied, not rebuilt (a patched translation replaces, adds or removes one
        service of ten thousand).
        """
        listed = list(self.services)
        by_host = self._by_host.copy()  # the proxy's dict, copied at C speed (dict() would look each host up)
        for position, service in services.items():
            old = listed[position]
            if old.host != service.host:
                raise ValueError(f"{service.host} cannot replace {old.host}")
            listed[position] = service
            by_host[service.host] = tuple(service if found is old else found for found in by_host[service.host])
        for service in added:
            listed.append(service)
            by_host[service.host] = (*by_host.get(service.host, ()), service)
        for service in removed:
            if by_host.get(service.host) != (service,):
                raise ValueError(f"{service.host} is not listed once")
            # Found by identity at C speed (10,000 services).
            del listed[
                next(itertools.compress(itertools.count(), map(operator.is_, listed, itertools.repeat(service))))
            ]
            del by_host[service.host]
        out = object.__new__(ServiceRegistry)
        # The fields __post_init__ would set, made from this registry's (frozen: set once, here).
        object.__setattr__(out, "services", tuple(listed))
        object.__setattr__(out, "cluster_domain", self.cluster_domain)
        object.__setattr__(out, "_by_host", MappingProxyType(by_host))
        return out

    def merged(self, other: ServiceRegistry) -> ServiceRegistry:
        """This registry plus ``other``'s services; on the same host and namespace, this one's wins.

        Call it as ``kubernetes.merged(service_entries)`` to give Kubernetes Services
        precedence over ServiceEntries of the same name, like Istio.
        """
        seen = {(service.host, service.namespace) for service in self.services}
        extra = tuple(service for service in other.services if (service.host, service.namespace) not in seen)
        return ServiceRegistry(
            services=self.services + extra, cluster_domain=self.cluster_domain or other.cluster_domain
        )


def build_registry(config: MeshConfig, *, cluster_domain: str | None = None) -> ServiceRegistry:
    """A registry with one service per ServiceEntry host, in load order.

    Short hosts are resolved in the entry's namespace like Istio. A host listed by two
    entries of the same namespace keeps the first entry (Istio keeps the oldest).
    """
    services: list[Service] = []
    seen: set[tuple[str, str]] = set()
    # Entries written alike share their ports (a mesh repeats a few port lists across thousands of entries).
    ports: dict[tuple[ServiceEntryPort, ...], tuple[ServicePort, ...]] = {}
    for entry in config.service_entries:
        for service in _services_of(entry, ports=ports):
            key = (service.host, service.namespace)
            if key not in seen:
                seen.add(key)
                services.append(service)
    return ServiceRegistry(services=tuple(services), cluster_domain=cluster_domain)


def _ports_of(ports: tuple[ServiceEntryPort, ...]) -> tuple[ServicePort, ...]:
    return tuple(
        ServicePort(
            number=int(port.number),
            name=port.name,
            protocol=(port.protocol or "").upper(),
            target_port=int(port.target_port) if port.target_port is not None else None,
            index=index,
        )
        for index, port in enumerate(ports)
    )


def _services_of(
    entry: Resource[ServiceEntrySpec], *, ports: dict[tuple[ServiceEntryPort, ...], tuple[ServicePort, ...]]
) -> Iterable[Service]:
    """The services of ``entry``; ``ports`` holds the ports made of each list of the entries' ports met so far."""
    spec = entry.spec
    made = ports.get(spec.ports)
    if made is None:
        made = ports[spec.ports] = _ports_of(spec.ports)
    # The model's mappings are already read-only: shared, not copied (a mesh has many endpoints).
    endpoints = tuple(
        Endpoint(
            address=workload.address,
            ports=workload.ports or _EMPTY_PORTS,
            labels=workload.labels or _EMPTY,
            weight=workload.weight,
            index=index,
        )
        for index, workload in enumerate(spec.endpoints)
        if workload.address
    )
    # Istio's default resolution is NONE (passthrough).
    resolution = Resolution(spec.resolution or "NONE")
    origin = Origin(kind=entry.kind.value, namespace=entry.namespace, name=entry.name, source=entry.source)
    for host in spec.hosts:
        yield Service(
            host=resolve_host(host, entry.namespace),
            namespace=entry.namespace,
            ports=made,
            resolution=resolution,
            endpoints=endpoints,
            export_to=spec.export_to,
            origin=origin,
            selects_workloads=spec.workload_selector is not None,
        )
