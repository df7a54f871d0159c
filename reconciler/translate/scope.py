"""What one proxy can see: visible services, the DestinationRule for a host, the VirtualServices that apply.

Istio's visibility rules in one place: ``exportTo`` on every kind, the proxy's own
namespace first when several objects compete, DestinationRule ``workloadSelector``. Which
service and which DestinationRule a host gets is decided by :mod:`reconciler.model.lookup`,
which the analyzers use too, so validation and translation agree.
Lookups are indexed by host (translation runs over tens of thousands of services) and
memoised for the life of one :class:`Scope`, which lives for one ``translate`` call (the
DestinationRule index, which depends on the config alone, may be handed in).
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.destinationrule import DestinationRuleSpec, Subset
from reconciler.model.gateway import GatewaySpec
from reconciler.model.hosts import exported_to, gateway_ref
from reconciler.model.lookup import DestinationRules, choose_service
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.translate.registry import Service, ServiceRegistry

__all__ = ["Scope", "find_subset"]


def find_subset(rule: Resource[DestinationRuleSpec], name: str) -> tuple[int, Subset] | None:
    """The first subset of ``rule`` named ``name``, with its index (for field paths)."""
    for index, subset in enumerate(rule.spec.subsets):
        if subset.name == name:
            return index, subset
    return None


def _owner(service: Service) -> tuple[str, tuple[str, ...]]:
    return service.namespace, service.export_to


class Scope:
    """Per-proxy, per-translation view of the config and the registry."""

    def __init__(
        self,
        *,
        config: MeshConfig,
        registry: ServiceRegistry,
        namespace: str,
        labels: Mapping[str, str],
        rules: DestinationRules | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.namespace = namespace
        self.labels = labels
        self._services: dict[str, Service | None] = {}
        self._rules: dict[tuple[str, str], Resource[DestinationRuleSpec] | None] = {}
        # The index depends on the config alone: a cache hands the one it built for an earlier proxy.
        self._rule_index = rules if rules is not None else DestinationRules(config.destination_rules)

    # -- services ----------------------------------------------------------------------

    def service(self, host: str) -> Service | None:
        """The service named ``host`` this proxy may use: its own namespace's first, else the first visible."""
        if host in self._services:
            return self._services[host]
        chosen = choose_service(self.registry.lookup(host), namespace=self.namespace, owner=_owner)
        self._services[host] = chosen
        return chosen

    def services(self) -> list[Service]:
        """Every service visible to this proxy, one per host, in registry order."""
        found = []
        for host in self.registry.hosts:
            service = self.service(host)
            if service is not None:
                found.append(service)
        return found

    # -- destination rules -------------------------------------------------------------

    def destination_rule(
        self, host: str, *, service_namespace: str | None = None
    ) -> Resource[DestinationRuleSpec] | None:
        """The DestinationRule for ``host``, chosen like Istio (:meth:`DestinationRules.rule_for`).

        Rules of the proxy's namespace, then of the service's namespace, then of the root
        namespace; never a rule of an unrelated namespace, even one exported everywhere.
        """
        key = (host, service_namespace or "")
        if key in self._rules:
            return self._rules[key]
        rule = self._rule_index.rule_for(
            host, namespace=self.namespace, service_namespace=service_namespace, labels=self.labels
        )
        self._rules[key] = rule
        return rule

    # -- virtual services and gateways -----------------------------------------------

    def visible(self, resource: Resource[VirtualServiceSpec]) -> bool:
        """Istio ``exportTo`` of a VirtualService, seen from this proxy's namespace."""
        return exported_to(
            resource.spec.export_to, owner_namespace=resource.namespace, consumer_namespace=self.namespace
        )

    def mesh_virtual_services(self) -> list[Resource[VirtualServiceSpec]]:
        """VirtualServices sidecars use (no ``gateways`` or ``mesh`` listed) that this proxy can see."""
        return [vs for vs in self.config.virtual_services if vs.spec.applies_to_mesh and self.visible(vs)]

    def gateway_virtual_services(self, gateway: Resource[GatewaySpec]) -> list[Resource[VirtualServiceSpec]]:
        """VirtualServices bound to ``gateway`` (``ns/name`` or short name in their own namespace)."""
        found = []
        for vs in self.config.virtual_services:
            if any(gateway_ref(name, vs.namespace) == gateway.ref for name in vs.spec.gateways) and self.visible(vs):
                found.append(vs)
        return found
