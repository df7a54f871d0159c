"""What the analyzers share: indexes of one config built once, so no analyzer compares all pairs.

``HostIndex`` finds the entries whose host overlaps a given host in time proportional to
the host's labels plus the number of wildcard entries (few in real configs), not to the
number of entries. ``AnalysisContext`` holds the indexes every analyzer needs (the service
registry from ServiceEntries, DestinationRules by namespace and host, Gateways by
``namespace/name``) and builds each lazily, on first use. Which DestinationRule (and so
which subsets) a host has for a namespace is decided by :mod:`reconciler.model.lookup`,
the code translation uses, so for the namespaces asked about the analyzers see the subsets
translation builds (proxies of namespaces not asked about may use other rules). Pure.

Service registry: without Kubernetes (not yet), the only services reconciler can see are
ServiceEntry hosts. A host under ``*.svc.cluster.local`` — which every short name resolves
to — may be a Kubernetes Service we cannot see, so analyzers never report such a host as
missing (:func:`may_be_kubernetes_service`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.destinationrule import DestinationRuleSpec
from reconciler.model.gateway import GatewaySpec
from reconciler.model.hosts import DEFAULT_DOMAIN, exported_to, host_matches, resolve_host
from reconciler.model.lookup import DestinationRules, choose_service
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.virtualservice import Destination, VirtualServiceSpec

__all__ = [
    "AnalysisContext",
    "HostIndex",
    "RoutedDestination",
    "may_be_kubernetes_service",
    "routed_destinations",
]

T = TypeVar("T")

_CLUSTER_LOCAL_WILDCARD = f"*.svc.{DEFAULT_DOMAIN}"


def may_be_kubernetes_service(host: str) -> bool:
    """True when ``host`` (resolved) is or covers a cluster-local name a Kubernetes Service might own."""
    return host_matches(_CLUSTER_LOCAL_WILDCARD, host) or host_matches(host, _CLUSTER_LOCAL_WILDCARD)


class HostIndex(Generic[T]):
    """Items keyed by (resolved, lower-case) host; look up every item whose host overlaps a host."""

    def __init__(self) -> None:
        self._exact: dict[str, list[T]] = {}
        # Concrete hosts under each dot-suffix (".example.com"), for wildcard queries.
        self._by_suffix: dict[str, list[tuple[str, T]]] = {}
        self._wildcards: list[tuple[str, T]] = []
        self._all: list[tuple[str, T]] = []

    def add(self, host: str, item: T) -> None:
        self._all.append((host, item))
        self._exact.setdefault(host, []).append(item)
        if host.startswith("*"):
            self._wildcards.append((host, item))
            return
        position = host.find(".")
        while position >= 0:
            self._by_suffix.setdefault(host[position:], []).append((host, item))
            position = host.find(".", position + 1)

    def exact(self, host: str) -> list[T]:
        """Items registered under exactly ``host`` (a wildcard host too), in the order added."""
        return self._exact.get(host, [])

    def overlapping(self, host: str) -> Iterator[tuple[str, T]]:
        """Every (registered host, item) that overlaps ``host``: exact ones first, then wildcard ones."""
        if not host.startswith("*"):
            for item in self._exact.get(host, ()):
                yield host, item
        elif host == "*":
            yield from ((h, i) for h, i in self._all if not h.startswith("*"))
        else:
            suffix = host[1:]
            if suffix.startswith("."):
                yield from self._by_suffix.get(suffix, ())
            else:
                # A partial wildcard (``*foo.com``): rare enough to scan.
                yield from ((h, i) for h, i in self._all if not h.startswith("*") and h.endswith(suffix))
        for pattern, item in self._wildcards:
            if host_matches(pattern, host) or host_matches(host, pattern):
                yield pattern, item


@dataclass(frozen=True, slots=True)
class RoutedDestination:
    """One destination a VirtualService sends (or mirrors) traffic to, with its field path."""

    destination: Destination
    path: str
    mirror: bool = False


def routed_destinations(spec: VirtualServiceSpec) -> Iterator[RoutedDestination]:
    """Every destination of every HTTP, TCP and TLS route, then every mirror, with field paths."""
    for index, http in enumerate(spec.http):
        for dest_index, route in enumerate(http.route):
            yield RoutedDestination(route.destination, f"spec.http[{index}].route[{dest_index}].destination")
    for index, tcp in enumerate(spec.tcp):
        for dest_index, l4_route in enumerate(tcp.route):
            yield RoutedDestination(l4_route.destination, f"spec.tcp[{index}].route[{dest_index}].destination")
    for index, tls in enumerate(spec.tls):
        for dest_index, l4_route in enumerate(tls.route):
            yield RoutedDestination(l4_route.destination, f"spec.tls[{index}].route[{dest_index}].destination")
    for index, http in enumerate(spec.http):
        if http.mirror is not None:
            yield RoutedDestination(http.mirror, f"spec.http[{index}].mirror", mirror=True)
        for mirror_index, policy in enumerate(http.mirrors):
            yield RoutedDestination(
                policy.destination, f"spec.http[{index}].mirrors[{mirror_index}].destination", mirror=True
            )


class AnalysisContext:
    """One config and the indexes built from it (lazily, once) for the analyzers."""

    def __init__(self, config: MeshConfig, *, rule_index: DestinationRules | None = None) -> None:
        """``rule_index``: ``config``'s DestinationRules indexed already (built here when needed otherwise)."""
        self.config = config
        self._rule_index = rule_index
        # Several analyzers look up the same destinations; each lookup is done once.
        self._services_for: dict[tuple[str, str], list[Resource[ServiceEntrySpec]]] = {}
        self._rules_for: dict[tuple[str, str], list[Resource[DestinationRuleSpec]]] = {}

    @functools.cached_property
    def services(self) -> HostIndex[Resource[ServiceEntrySpec]]:
        """The service registry: every ServiceEntry host, resolved in the entry's namespace."""
        index: HostIndex[Resource[ServiceEntrySpec]] = HostIndex()
        for entry in self.config.service_entries:
            for host in dict.fromkeys(resolve_host(h, entry.namespace) for h in entry.spec.hosts):
                index.add(host, entry)
        return index

    @functools.cached_property
    def destination_rules(self) -> DestinationRules:
        """DestinationRules by namespace and resolved ``host``, chosen from as translation does."""
        return self._rule_index if self._rule_index is not None else DestinationRules(self.config.destination_rules)

    @functools.cached_property
    def gateways(self) -> dict[str, Resource[GatewaySpec]]:
        """Gateways by ``namespace/name``, the form VirtualServices reference them in."""
        return {gateway.ref: gateway for gateway in self.config.gateways}

    def services_for(self, host: str, *, namespace: str) -> list[Resource[ServiceEntrySpec]]:
        """ServiceEntries visible from ``namespace`` that declare ``host`` (resolved there): exact first.

        Like Istio's ``GetDestinationHost``: a wildcard entry covers the hosts under it.
        """
        key = (host, namespace)
        cached = self._services_for.get(key)
        if cached is None:
            found: dict[int, Resource[ServiceEntrySpec]] = {}
            for _, entry in self.services.overlapping(resolve_host(host, namespace)):
                if id(entry) not in found and _visible(entry, namespace=namespace):
                    found[id(entry)] = entry
            cached = self._services_for[key] = list(found.values())
        return cached

    def service_namespace(self, host: str, *, namespace: str) -> str | None:
        """Namespace of the ServiceEntry a workload in ``namespace`` uses for exactly ``host`` (resolved there).

        Chosen as translation chooses among same-named services: the workload's own
        namespace's, else the first visible one; None when no entry declares the host.
        Like the service registry, only the first entry of a namespace declares the host.
        """
        oldest: dict[str, Resource[ServiceEntrySpec]] = {}
        for entry in self.services.exact(resolve_host(host, namespace)):
            oldest.setdefault(entry.namespace, entry)
        chosen = choose_service(oldest.values(), namespace=namespace, owner=_entry_owner)
        return chosen.namespace if chosen is not None else None

    def rules_for(self, host: str, *, namespace: str) -> list[Resource[DestinationRuleSpec]]:
        """The DestinationRules workloads in ``namespace`` use for ``host`` (resolved there), as translation picks.

        The general rule and the workload-selecting ones of the most specific host
        (:meth:`DestinationRules.rules_for`), from the namespace itself, else the service's
        namespace, else the root namespace; never a rule of an unrelated namespace, even one
        exported everywhere. Rules for the same host are merged as Istio merges them.
        """
        key = (host, namespace)
        cached = self._rules_for.get(key)
        if cached is None:
            resolved = resolve_host(host, namespace)
            cached = self._rules_for[key] = self.destination_rules.rules_for(
                resolved, namespace=namespace, service_namespace=self.service_namespace(resolved, namespace=namespace)
            )
        return cached


def _entry_owner(entry: Resource[ServiceEntrySpec]) -> tuple[str, tuple[str, ...]]:
    return entry.namespace, entry.spec.export_to


def _visible(entry: Resource[ServiceEntrySpec], *, namespace: str) -> bool:
    return exported_to(entry.spec.export_to, owner_namespace=entry.namespace, consumer_namespace=namespace)
