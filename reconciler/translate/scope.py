"""What one proxy can see: visible services, the DestinationRule for a host, the VirtualServices that apply.

Istio's visibility rules in one place: ``exportTo`` on every kind, the proxy's own
namespace first when several objects compete, DestinationRule ``workloadSelector``.
Lookups are indexed by host (translation runs over tens of thousands of services) and
memoised for the life of one :class:`Scope`, which lives for one ``translate`` call.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.destinationrule import DestinationRuleSpec, Subset
from reconciler.model.gateway import GatewaySpec
from reconciler.model.hosts import exported_to, gateway_ref, host_matches, resolve_host
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.translate.registry import Service, ServiceRegistry

__all__ = ["ROOT_NAMESPACE", "Scope", "find_subset", "selects"]

#: Istio's config root namespace: rules there are the mesh-wide fallback.
ROOT_NAMESPACE = "istio-system"


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """True when every selector label is on the workload (an empty selector selects everything)."""
    return all(labels.get(key) == value for key, value in (selector or {}).items())


def find_subset(rule: Resource[DestinationRuleSpec], name: str) -> tuple[int, Subset] | None:
    """The first subset of ``rule`` named ``name``, with its index (for field paths)."""
    for index, subset in enumerate(rule.spec.subsets):
        if subset.name == name:
            return index, subset
    return None


class Scope:
    """Per-proxy, per-translation view of the config and the registry."""

    def __init__(
        self,
        *,
        config: MeshConfig,
        registry: ServiceRegistry,
        namespace: str,
        labels: Mapping[str, str],
    ) -> None:
        self.config = config
        self.registry = registry
        self.namespace = namespace
        self.labels = labels
        self._services: dict[str, Service | None] = {}
        self._rules: dict[tuple[str, str], Resource[DestinationRuleSpec] | None] = {}
        exact: dict[str, list[tuple[int, Resource[DestinationRuleSpec], str]]] = {}
        wildcard: list[tuple[int, Resource[DestinationRuleSpec], str]] = []
        for index, rule in enumerate(config.destination_rules):
            if not self._rule_applies(rule):
                continue
            host = resolve_host(rule.spec.host, rule.namespace)
            if "*" in host:
                wildcard.append((index, rule, host))
            else:
                exact.setdefault(host, []).append((index, rule, host))
        self._exact_rules = exact
        self._wildcard_rules = wildcard

    # -- services ----------------------------------------------------------------------

    def service(self, host: str) -> Service | None:
        """The service named ``host`` this proxy may use: its own namespace's first, else the first visible."""
        if host in self._services:
            return self._services[host]
        chosen: Service | None = None
        for candidate in self.registry.lookup(host):
            if not candidate.visible_to(self.namespace):
                continue
            if candidate.namespace == self.namespace:
                chosen = candidate
                break
            if chosen is None:
                chosen = candidate
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

    def _rule_applies(self, rule: Resource[DestinationRuleSpec]) -> bool:
        selector = rule.spec.workload_selector
        if selector is not None:
            # Istio applies a workload-selecting rule only to matching workloads of its own namespace.
            return rule.namespace == self.namespace and selects(selector.match_labels, self.labels)
        return exported_to(rule.spec.export_to, owner_namespace=rule.namespace, consumer_namespace=self.namespace)

    def destination_rule(
        self, host: str, *, service_namespace: str | None = None
    ) -> Resource[DestinationRuleSpec] | None:
        """The DestinationRule for ``host``, chosen like Istio.

        Rules from the proxy's namespace win, then the service's namespace, then the root
        namespace, then any other; within those, a workload-selecting rule beats a general
        one, an exact host beats a wildcard and a longer wildcard a shorter one; load order
        breaks the remaining ties.
        """
        key = (host, service_namespace or "")
        if key in self._rules:
            return self._rules[key]
        candidates = list(self._exact_rules.get(host, ()))
        candidates.extend(entry for entry in self._wildcard_rules if host_matches(entry[2], host))
        best: Resource[DestinationRuleSpec] | None = None
        if candidates:
            _, best, _ = min(candidates, key=lambda entry: self._rule_rank(entry, service_namespace))
        self._rules[key] = best
        return best

    def _rule_rank(
        self, entry: tuple[int, Resource[DestinationRuleSpec], str], service_namespace: str | None
    ) -> tuple[int, int, int, int, int]:
        index, rule, host = entry
        if rule.namespace == self.namespace:
            namespace_rank = 0
        elif rule.namespace == service_namespace:
            namespace_rank = 1
        elif rule.namespace == ROOT_NAMESPACE:
            namespace_rank = 2
        else:
            namespace_rank = 3
        selector_rank = 0 if rule.spec.workload_selector is not None else 1
        wildcard = "*" in host
        return (namespace_rank, selector_rank, int(wildcard), -len(host) if wildcard else 0, index)

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
