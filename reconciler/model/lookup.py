"""Istio's lookups that validation and translation must answer alike.

Which DestinationRule applies to a host for a workload in a namespace, which of several
services sharing a host name a namespace uses, and which workloads a label selector
selects. The analyzers (``reconciler.validate``) and translation (``reconciler.translate``)
both ask here, so a subset that validation accepts is the one translation builds a
cluster for, never an empty cluster that answers 503.

Pure: standard library only, no I/O, no globals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

from reconciler.model.config import Resource
from reconciler.model.destinationrule import DestinationRuleSpec
from reconciler.model.hosts import DEFAULT_DOMAIN, exported_to, host_matches, resolve_host

__all__ = [
    "ROOT_NAMESPACE",
    "DestinationRules",
    "choose_service",
    "kubernetes_service_namespace",
    "selects",
]

#: Istio's config root namespace: rules there are the mesh-wide fallback.
ROOT_NAMESPACE = "istio-system"

T = TypeVar("T")
Rule = Resource[DestinationRuleSpec]

_NO_LABELS: Mapping[str, str] = MappingProxyType({})
_SVC_SUFFIX = f".svc.{DEFAULT_DOMAIN}"


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """True when every selector label is on the workload (an empty selector selects everything)."""
    return all(labels.get(key) == value for key, value in (selector or {}).items())


def kubernetes_service_namespace(host: str) -> str | None:
    """``ns`` of a Kubernetes service name ``name.ns.svc.cluster.local``; None for any other host."""
    if "*" in host or not host.endswith(_SVC_SUFFIX):
        return None
    name, dot, namespace = host[: -len(_SVC_SUFFIX)].partition(".")
    if not dot or not name or not namespace or "." in namespace:
        return None
    return namespace


def choose_service(
    candidates: Iterable[T], *, namespace: str, owner: Callable[[T], tuple[str, tuple[str, ...]]]
) -> T | None:
    """The service a workload in ``namespace`` uses among ``candidates`` that share one host name.

    ``owner(candidate)`` is its namespace and ``exportTo``. Like Istio: the visible one of
    the workload's own namespace, else the first visible one (candidates come oldest first).
    """
    chosen: T | None = None
    for candidate in candidates:
        candidate_namespace, export_to = owner(candidate)
        if not exported_to(export_to, owner_namespace=candidate_namespace, consumer_namespace=namespace):
            continue
        if candidate_namespace == namespace:
            return candidate
        if chosen is None:
            chosen = candidate
    return chosen


# (load index, rule, resolved host)
_Entry = tuple[int, Rule, str]


class _NamespaceRules:
    """The DestinationRules of one namespace: by exact host, and the wildcard ones."""

    __slots__ = ("exact", "selecting", "wildcards")

    def __init__(self) -> None:
        self.exact: dict[str, list[_Entry]] = {}
        self.wildcards: list[_Entry] = []
        #: True when some rule here has a ``workloadSelector``.
        self.selecting = False


class DestinationRules:
    """Every DestinationRule of a config, indexed by namespace and host, to choose like Istio.

    Build it once per config (or per translation); each lookup touches only the rules of
    at most three namespaces for the host asked about.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._by_namespace: dict[str, _NamespaceRules] = {}
        for index, rule in enumerate(rules):
            host = resolve_host(rule.spec.host, rule.namespace)
            owned = self._by_namespace.get(rule.namespace)
            if owned is None:
                owned = self._by_namespace[rule.namespace] = _NamespaceRules()
            if "*" in host:
                owned.wildcards.append((index, rule, host))
            else:
                owned.exact.setdefault(host, []).append((index, rule, host))
            if rule.spec.workload_selector is not None:
                owned.selecting = True

    def rule_for(
        self,
        host: str,
        *,
        namespace: str,
        service_namespace: str | None = None,
        labels: Mapping[str, str] = _NO_LABELS,
    ) -> Rule | None:
        """The DestinationRule a workload in ``namespace`` with ``labels`` uses for ``host`` (resolved).

        As Istio's ``PushContext.destinationRule``: the rules of the workload's own
        namespace first, then those of the service's namespace, then those of the root
        namespace (``istio-system``); a rule in any other namespace never applies, whatever
        its ``exportTo``. A rule must be exported to the workload's namespace (``exportTo``),
        except that a rule with a ``workloadSelector`` applies exactly to the workloads it
        selects in its own namespace. Within a namespace, a workload-selecting rule beats a general one, an
        exact host beats a wildcard and a longer wildcard a shorter one; load order breaks
        the remaining ties. ``service_namespace`` is the namespace of the service the
        workload uses for ``host``; when unknown, a Kubernetes service name says it.
        """
        if service_namespace is None:
            service_namespace = kubernetes_service_namespace(host)
        for owner in _tiers(namespace, service_namespace):
            best = self._best(owner, host, namespace=namespace, labels=labels)
            if best is not None:
                return best
        return None

    def rules_for(self, host: str, *, namespace: str, service_namespace: str | None = None) -> list[Rule]:
        """Every DestinationRule some workload in ``namespace`` uses for ``host``: :meth:`rule_for` per workload kind.

        First the rule of workloads no workload-selecting rule picks, then, for each rule of
        ``namespace`` that selects workloads, the rule those workloads get. What a
        VirtualService in ``namespace`` routes to must be in one of these.
        """
        found: dict[int, Rule] = {}
        general = self.rule_for(host, namespace=namespace, service_namespace=service_namespace)
        if general is not None:
            found[id(general)] = general
        owned = self._by_namespace.get(namespace)
        if owned is not None and owned.selecting:
            for _, rule, _ in self._covering(owned, host):
                selector = rule.spec.workload_selector
                if selector is None:
                    continue
                chosen = self.rule_for(
                    host,
                    namespace=namespace,
                    service_namespace=service_namespace,
                    labels=selector.match_labels or _NO_LABELS,
                )
                if chosen is not None:
                    found.setdefault(id(chosen), chosen)
        return list(found.values())

    @staticmethod
    def _covering(owned: _NamespaceRules, host: str) -> list[_Entry]:
        entries = list(owned.exact.get(host, ()))
        entries.extend(entry for entry in owned.wildcards if host_matches(entry[2], host))
        return entries

    def _best(self, owner: str, host: str, *, namespace: str, labels: Mapping[str, str]) -> Rule | None:
        owned = self._by_namespace.get(owner)
        if owned is None:
            return None
        best: Rule | None = None
        best_rank: tuple[int, int, int, int] | None = None
        for index, rule, pattern in self._covering(owned, host):
            selector = rule.spec.workload_selector
            if selector is not None:
                # Istio applies a workload-selecting rule only to matching workloads of its own namespace.
                if owner != namespace or not selects(selector.match_labels, labels):
                    continue
            elif not exported_to(rule.spec.export_to, owner_namespace=owner, consumer_namespace=namespace):
                continue
            wildcard = "*" in pattern
            rank = (0 if selector is not None else 1, int(wildcard), -len(pattern) if wildcard else 0, index)
            if best_rank is None or rank < best_rank:
                best, best_rank = rule, rank
        return best


def _tiers(namespace: str, service_namespace: str | None) -> list[str]:
    tiers = [namespace]
    if service_namespace is not None and service_namespace != namespace:
        tiers.append(service_namespace)
    if ROOT_NAMESPACE not in tiers:
        tiers.append(ROOT_NAMESPACE)
    return tiers
