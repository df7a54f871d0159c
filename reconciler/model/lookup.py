"""Istio's lookups that validation and translation must answer alike.

Which DestinationRule applies to a host for a workload in a namespace, which of several
services sharing a host name a namespace uses, and which workloads a label selector
selects. The analyzers (``reconciler.validate``) and translation (``reconciler.translate``)
both ask here, so for a given proxy namespace and labels they see the same (merged)
DestinationRule and subsets. Validation asks for the namespaces of the proxies a
VirtualService is known to reach (its own, its gateways'), not every namespace it is
exported to.

Pure: standard library only, no I/O, no globals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TypeVar

from reconciler.model.config import Resource
from reconciler.model.destinationrule import DestinationRuleSpec, Subset
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


# (load index, consolidated rule) per host
_Entry = tuple[int, Rule]


class _Consolidating:
    """The DestinationRules of one host that Istio merges into one: same namespace pool, same selector."""

    __slots__ = ("export_to", "first", "index", "names", "subsets", "traffic_policy")

    def __init__(self, index: int, rule: Rule) -> None:
        self.index = index
        self.first = rule
        # Made when a second rule merges in: most hosts have one rule, used as it is (see rule()).
        self.subsets: list[Subset] | None = None
        self.names: set[str] = set()
        self.traffic_policy = rule.spec.traffic_policy
        self.export_to: tuple[str, ...] | None = _exports(rule)

    def merge(self, rule: Rule) -> None:
        # Istio's mergeDestinationRule: new subset names are appended, the first top-level
        # traffic policy wins (a later one applies when the earlier rules have none).
        if self.subsets is None:
            self.subsets = list(self.first.spec.subsets)
            self.names = {subset.name for subset in self.subsets}
        for subset in rule.spec.subsets:
            if subset.name not in self.names:
                self.names.add(subset.name)
                self.subsets.append(subset)
        if self.traffic_policy is None:
            self.traffic_policy = rule.spec.traffic_policy
        exports = _exports(rule)
        if self.export_to is None or exports is None:
            self.export_to = None
        else:
            self.export_to = tuple(dict.fromkeys(self.export_to + exports))

    def rule(self) -> Rule:
        spec = self.first.spec
        export_to = () if self.export_to is None else self.export_to
        if self.subsets is None and spec.export_to == export_to:
            return self.first
        merged = replace(
            spec,
            subsets=spec.subsets if self.subsets is None else tuple(self.subsets),
            traffic_policy=self.traffic_policy,
            export_to=export_to,
        )
        return self.first if merged == spec else replace(self.first, spec=merged)


def _exports(rule: Rule) -> tuple[str, ...] | None:
    """``exportTo`` with ``.`` spelt as the namespace; None for everywhere (empty or ``*``)."""
    export_to = rule.spec.export_to
    if not export_to or "*" in export_to:
        return None
    return tuple(dict.fromkeys(rule.namespace if entry == "." else entry for entry in export_to))


class _Pool:
    """Consolidated DestinationRules that one group of proxies sees in one namespace, by host."""

    __slots__ = ("building", "by_host", "exports", "rules", "wildcards")

    def __init__(self) -> None:
        self.building: dict[tuple[str, tuple[tuple[str, str], ...] | None], _Consolidating] = {}
        self.by_host: dict[str, list[_Entry]] = {}
        #: Per host, the union of its rules' ``exportTo``; None for everywhere.
        self.exports: dict[str, tuple[str, ...] | None] = {}
        self.wildcards: list[str] = []
        #: Per host, its rules as added (in load order): a patch consolidates one host's again.
        self.rules: dict[str, tuple[Rule, ...]] = {}

    def add(self, index: int, rule: Rule, host: str) -> None:
        self.rules[host] = (*self.rules.get(host, ()), rule)
        selector = rule.spec.workload_selector
        key = (host, None if selector is None else tuple(sorted((selector.match_labels or {}).items())))
        existing = self.building.get(key)
        if existing is None:
            self.building[key] = _Consolidating(index, rule)
        else:
            existing.merge(rule)

    def seal(self) -> None:
        for (host, _), consolidating in self.building.items():
            entries = self.by_host.get(host)
            if entries is None:
                entries = self.by_host[host] = []
                if "*" in host:
                    self.wildcards.append(host)
            entries.append((consolidating.index, consolidating.rule()))
            if consolidating.first.spec.workload_selector is None:
                self.exports[host] = consolidating.export_to
        for entries in self.by_host.values():
            entries.sort(key=lambda entry: entry[0])
        self.building.clear()

    def with_host(self, host: str, rules: tuple[Rule, ...]) -> _Pool:
        """A copy of this (sealed) pool whose rules for the exact ``host`` are ``rules`` (in load order)."""
        fresh = _Pool()
        for index, rule in enumerate(rules):
            fresh.add(index, rule, host)
        fresh.seal()
        out = _Pool()
        out.wildcards = self.wildcards
        out.by_host, out.exports, out.rules = dict(self.by_host), dict(self.exports), dict(self.rules)
        for mapping in (out.by_host, out.exports, out.rules):
            mapping.pop(host, None)
        if rules:
            out.rules[host] = rules
            out.by_host[host] = fresh.by_host[host]
        if host in fresh.exports:
            out.exports[host] = fresh.exports[host]
        return out

    def most_specific(self, host: str) -> str | None:
        """Istio's ``MostSpecificHostMatch``: the exact host, else the longest wildcard covering it."""
        if host in self.by_host and "*" not in host:
            return host
        best: str | None = None
        for pattern in self.wildcards:
            if host_matches(pattern, host) and (best is None or len(pattern) > len(best)):
                best = pattern
        return best

    def exported_to(self, host: str, namespace: str) -> bool:
        exports = self.exports.get(host)
        return exports is None or namespace in exports


class DestinationRules:
    """Every DestinationRule of a config, consolidated and indexed by namespace and host, to choose like Istio.

    Like Istio's ``PushContext.initDestinationRules``, each namespace has three pools: the
    rules its own proxies see (every rule exported to it, ``workloadSelector`` ones too), the
    rules exported to other namespaces, and for the root namespace the rules private to
    it. Rules for the same host without ``workloadSelector`` (or with identical ones) in
    one pool are merged into one (:class:`_Consolidating`), keeping the first rule's
    name. Build it once per config (or per translation); each lookup touches at most
    three pools.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._local: dict[str, _Pool] = {}
        self._exported: dict[str, _Pool] = {}
        self._root_local = _Pool()
        for index, rule in enumerate(rules):
            host = resolve_host(rule.spec.host, rule.namespace)
            for kind, namespace in _placement(rule):
                self._pool(kind, namespace).add(index, rule, host)
        for pool in (*self._local.values(), *self._exported.values(), self._root_local):
            pool.seal()

    def _pool(self, kind: str, namespace: str) -> _Pool:
        if kind == _ROOT:
            return self._root_local
        pools = self._local if kind == _LOCAL else self._exported
        pool = pools.get(namespace)
        if pool is None:
            pool = pools[namespace] = _Pool()
        return pool

    def patched(self, changes: Sequence[tuple[Rule | None, Rule | None]]) -> DestinationRules | None:
        """The index of these rules with ``changes`` made, equal to building it anew; None where that is needed.

        Each change is (before, after): a rule edited in place (the same host and ``exportTo``, and so the
        same pools), removed (after None) or added after every other (before None). Only the changed hosts'
        rules are consolidated again; a change to a wildcard host's presence needs a rebuild (None).
        """
        edits: dict[tuple[str, str, str], list[tuple[Rule | None, Rule | None]]] = {}
        for before, after in changes:
            placed = [
                (rule, resolve_host(rule.spec.host, rule.namespace), _placement(rule))
                for rule in (before, after)
                if rule is not None
            ]
            if before is not None and after is not None and (placed[0][1:] != placed[1][1:]):
                return None
            for _, host, placement in placed[:1]:
                for kind, namespace in placement:
                    edits.setdefault((kind, namespace, host), []).append((before, after))
        out = object.__new__(DestinationRules)
        out._local, out._exported, out._root_local = dict(self._local), dict(self._exported), self._root_local
        for (kind, namespace, host), made in edits.items():
            pool = out._pool(kind, namespace)
            rules = list(pool.rules.get(host, ()))
            for before, after in made:
                at = next((index for index, rule in enumerate(rules) if rule is before), None)
                if before is None and after is not None:
                    rules.append(after)
                elif at is None:
                    return None
                elif after is None:
                    del rules[at]
                else:
                    rules[at] = after
            if "*" in host and (not rules or host not in pool.rules):
                return None
            patched = pool.with_host(host, tuple(rules))
            if kind == _ROOT:
                out._root_local = patched
            else:
                (out._local if kind == _LOCAL else out._exported)[namespace] = patched
        return out

    def rule_for(
        self,
        host: str,
        *,
        namespace: str,
        service_namespace: str | None = None,
        labels: Mapping[str, str] = _NO_LABELS,
    ) -> Rule | None:
        """The DestinationRule a workload in ``namespace`` with ``labels`` uses for ``host`` (resolved).

        As Istio's ``PushContext.destinationRule`` and ``SidecarScope.DestinationRule``:

        1. the rules the workload's namespace sees (for the root namespace, ``istio-system``,
           only its rules private to it, so a mesh-wide ``*.local`` rule there does not hide
           a service's own rule from a gateway in ``istio-system``);
        2. else the rules the service's namespace exports;
        3. else the rules the root namespace exports.

        In each, the most specific host wins (exact, then the longest wildcard); only then
        is ``exportTo`` checked, and a rule not exported to ``namespace`` passes on to the
        next step. Among that host's rules, a ``workloadSelector`` rule selecting ``labels``
        beats the general one; when neither applies no rule does (no fall-through to the
        next step). A rule in any other namespace never applies. ``service_namespace`` is
        the namespace of the service the workload uses for ``host``; when unknown, a
        Kubernetes service name says it.
        """
        entries = self._entries(host, namespace=namespace, service_namespace=service_namespace)
        if entries is None:
            return None
        catch_all: Rule | None = None
        for _, rule in entries:
            selector = rule.spec.workload_selector
            if selector is None:
                catch_all = rule
            elif selects(selector.match_labels, labels):
                return rule
        return catch_all

    def rules_for(self, host: str, *, namespace: str, service_namespace: str | None = None) -> list[Rule]:
        """Every DestinationRule some workload in ``namespace`` uses for ``host``: :meth:`rule_for` per workload kind.

        The general rule and the workload-selecting ones of the chosen host. What a
        VirtualService routes to for proxies in ``namespace`` must be in one of these.
        """
        entries = self._entries(host, namespace=namespace, service_namespace=service_namespace)
        if entries is None:
            return []
        general = [rule for _, rule in entries if rule.spec.workload_selector is None]
        return general + [rule for _, rule in entries if rule.spec.workload_selector is not None]

    def _entries(self, host: str, *, namespace: str, service_namespace: str | None) -> list[_Entry] | None:
        own = self._root_local if namespace == ROOT_NAMESPACE else self._local.get(namespace)
        if own is not None:
            chosen = own.most_specific(host)
            if chosen is not None:
                return own.by_host[chosen]
        if service_namespace is None:
            service_namespace = kubernetes_service_namespace(host)
        for owner in (service_namespace, ROOT_NAMESPACE):
            pool = self._exported.get(owner) if owner is not None else None
            if pool is None:
                continue
            chosen = pool.most_specific(host)
            if chosen is not None and pool.exported_to(chosen, namespace):
                return pool.by_host[chosen]
        return None


_LOCAL, _EXPORTED, _ROOT = "local", "exported", "root"


def _placement(rule: Rule) -> tuple[tuple[str, str], ...]:
    """The pools ``rule`` belongs to: (kind, namespace), as Istio's ``initDestinationRules`` sorts them."""
    namespace = rule.namespace
    # Istio exports a workload-selecting rule nowhere but its own namespace.
    exports = (namespace,) if rule.spec.workload_selector is not None else _exports(rule)
    found = []
    if exports is None or namespace in exports:
        found.append((_LOCAL, namespace))
    if exports is not None and exports == (namespace,):
        if namespace == ROOT_NAMESPACE:
            found.append((_ROOT, namespace))
    else:
        found.append((_EXPORTED, namespace))
    return tuple(found)
