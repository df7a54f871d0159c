"""What one translation can hand the next: per-host work reused across proxy shapes and across configs.

A :class:`TranslationCache` is a plain value its owner keeps between ``translate`` calls
(one load, one daemon's passes); nothing is global. Every entry is stored under the full
content of the inputs that determine it and is reused only when the next inputs compare
equal, so a cached translation is byte-identical to an uncached one:

* the service registry, by the config's ServiceEntries (a ServiceEntry changed in place, with
  the same hosts and ports, or added at the end patches the last registry: :func:`patch_registry`);
  the DestinationRule index, by its DestinationRules (a rollout step changes only VirtualServices:
  both are reused; a few rules edited, removed or added at the end patch the last index);
* a service's clusters and load assignments, and the findings building them made, by the
  service (its ports and endpoints), the DestinationRule the proxy uses for it and whether
  the proxy reports non-HTTP ports (sidecar or gateway); clusters do not depend on the
  proxy's outbound port, so every shape of one config shares them, and a one-host change
  rebuilds only that host's;
* a VirtualService's routes for one listener port (serialized, with whether they pass Envoy's
  constraints), and what building them reported and which clusters they asked for, by the
  VirtualService and the services its destinations name (a route's cluster follows from those;
  whether that cluster exists is asked again);
* sets of clusters and of load assignments, by their resources: a change that
  leaves every cluster as it was (a rollout step) reuses the whole set, name order and version;
  the resources are kept encoded (with the service's clusters), so a new set of reused ones is
  versioned without serializing them again.

* sets of names (the clusters a sidecar's services made, those a route configuration uses), by
  content (:meth:`TranslationCache.names`): every shape of one config, and the next config when they
  are unchanged, holds one frozenset of them instead of one per shape.

* per sidecar shape (within :data:`PATCH_BUDGET`, least recently used forgotten), what its last
  translation read, made and how (:class:`~reconciler.translate.patch.SidecarState`): the next
  translation of that shape patches it where the change allows (:mod:`reconciler.translate.patch`).
  Sidecars that differ only in outbound port record the same steps, services and virtual hosts:
  that part is kept once per kind of sidecar (:meth:`TranslationCache.shared_state`) and each
  shape's state points at it, compared equal before it is taken.

Which resources passed Envoy's constraint check is remembered apart, by their digests
(:class:`~reconciler.translate.envoy_check.PassCache`, ``translate(passed=...)``).

Entries live for two configs: those the current config used and those the previous one
did; switching to a new config forgets the rest, so memory follows the config's size, not
the number of commits seen; a patched translation does not switch (it reads only what changed).
Concurrent use stays correct (an entry is only ever returned for inputs equal to its key), it
may only miss.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Generic, NamedTuple, TypeVar

from google.protobuf.message import Message

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.destinationrule import DestinationRuleSpec
from reconciler.model.hosts import resolve_host
from reconciler.model.lookup import DestinationRules
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.translate.notes import NoteCall
from reconciler.translate.registry import Service, ServiceRegistry, build_registry
from reconciler.translate.snapshot import Resource as XdsResource
from reconciler.translate.snapshot import ResourceSet

__all__ = [
    "PATCH_BUDGET",
    "EncodedRoutes",
    "EnsureCall",
    "RuleChange",
    "ServiceChange",
    "ServiceClusters",
    "TranslationCache",
    "VirtualServiceRoutes",
    "changed_items",
    "listed_hosts",
    "patch_registry",
    "recount",
    "replaced_positions",
]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class ServiceClusters(NamedTuple):
    """One service's clusters and load assignments for one DestinationRule, and the findings building them made.

    A named tuple: a cold translation makes one per service (tens of thousands).
    """

    service: Service
    rule: Resource[DestinationRuleSpec] | None
    #: Encoded, by name (a snapshot built of them encodes nothing again).
    clusters: Mapping[str, XdsResource]
    assignments: Mapping[str, XdsResource]
    notes: Sequence[NoteCall]


class EnsureCall(NamedTuple):
    """A route asked for the cluster of ``host:port`` (and ``subset``) from the rule at ``path``.

    A named tuple: a cold translation records one per destination (tens of thousands).
    """

    host: str
    port: int
    subset: str | None
    path: str


class EncodedRoutes(NamedTuple):
    """Routes serialized as a virtual host's ``routes`` field (each route's tag, length and message, in order).

    Named tuples, this and :class:`VirtualServiceRoutes`: a translation makes one per VirtualService and port.
    """

    data: bytes
    #: The clusters the routes send or mirror traffic to.
    references: frozenset[str]
    #: True when the routes break none of Envoy's constraints (False: not known, they are walked with the rest).
    passes: bool


class VirtualServiceRoutes(NamedTuple):
    """One VirtualService's routes for one listener port, and what building them reported and asked for, in order."""

    vs: Resource[VirtualServiceSpec]
    listener_port: int
    #: The service of each :class:`EnsureCall`'s host, in order: all the routes read of the registry.
    services: tuple[Service | None, ...]
    events: tuple[NoteCall | EnsureCall, ...]
    #: The path of the HTTP rule each route came from (for locating what Envoy rejects).
    paths: tuple[str, ...]
    #: The routes, serialized (kept as bytes: as messages they would be most of the cache).
    encoded: EncodedRoutes


_RegistryKey = tuple[tuple[Resource[ServiceEntrySpec], ...], str | None]
_Rules = tuple[Resource[DestinationRuleSpec], ...]
#: A DestinationRule before and after a change (None: added, or removed).
RuleChange = tuple[Resource[DestinationRuleSpec] | None, Resource[DestinationRuleSpec] | None]
#: A service the registry replaced: the one before (None: added), the one after (same host, namespace and ports;
#: None: removed).
ServiceChange = tuple[Service | None, Service | None]
#: How many services the sidecar shapes kept for patching may see in all (each shape's state holds its snapshot
#: and how it was built, about 1.5 MB per 1,000 services): 50 distinct shapes of a 1,000-service mesh, or ten of a
#: 10,000-service one. The most recently used shape is always kept.
PATCH_BUDGET = 100_000


def patch_registry(
    registry: ServiceRegistry,
    *,
    before: Sequence[Resource[ServiceEntrySpec]],
    after: Sequence[Resource[ServiceEntrySpec]],
    listed: Callable[[], Mapping[str, int]] | None = None,
) -> tuple[ServiceRegistry, tuple[ServiceChange, ...]] | None:
    """``build_registry`` of the entries ``after``, made from ``registry`` (that of ``before``), if they differ little.

    Entries changed in place (the same name, hosts, ports and exportTo: new endpoints, say), entries
    added at the end and entries removed (whose hosts no other entry of their namespace lists) are
    taken; anything else gives None. Also returns the services replaced (before, after), added (None,
    after) and removed (before, None). Entries are told apart by namespace and name, unique in every
    config (``build_config`` drops repeats). ``listed`` gives :func:`listed_hosts` of ``before``, if known (else
    a removal looks at every entry ``after``).
    """
    changed = changed_items(before, after, limit=_PATCHED_ENTRIES)
    if changed is None:
        return None
    # Read only for a removal (it copies a count per host).
    left = None if listed is None or all(new is not None for _, new in changed) else _relisted(listed(), changed)
    positions: dict[int, Service] = {}
    replaced: list[ServiceChange] = []
    added: dict[tuple[str, str], Service] = {}
    removed: list[Service] = []
    for old, new in changed:
        if new is None:
            assert old is not None
            gone = _removed_services(registry, old, after=after, left=left)
            if gone is None:
                return None
            removed.extend(gone)
            replaced.extend((service, None) for service in gone)
            continue
        if old is None:
            # Like build_registry: a host a namespace lists already keeps the service listed first.
            for service in build_registry(MeshConfig(service_entries=(new,))).services:
                key = (service.host, service.namespace)
                taken = any(found.namespace == service.namespace for found in registry.lookup(service.host))
                if key not in added and not taken:
                    added[key] = service
                    replaced.append((None, service))
            continue
        if old == new:
            continue
        if (old.namespace, old.name, old.spec.hosts, old.spec.ports, old.spec.export_to) != (
            new.namespace,
            new.name,
            new.spec.hosts,
            new.spec.ports,
            new.spec.export_to,
        ):
            return None
        olds = build_registry(MeshConfig(service_entries=(old,))).services
        news = build_registry(MeshConfig(service_entries=(new,))).services
        for old_service, new_service in zip(olds, news, strict=True):
            kept = next((found for found in registry.lookup(old_service.host) if found == old_service), None)
            if kept is None:
                continue  # an earlier entry of the namespace holds this host: neither one is used
            positions[next(index for index, service in enumerate(registry.services) if service is kept)] = new_service
            replaced.append((kept, new_service))
    return registry.replaced(positions, added=added.values(), removed=removed), tuple(replaced)


def _removed_services(
    registry: ServiceRegistry,
    entry: Resource[ServiceEntrySpec],
    *,
    after: Sequence[Resource[ServiceEntrySpec]],
    left: Mapping[str, int] | None,
) -> list[Service] | None:
    """The services of ``registry`` that go with ``entry``; None when one's host stays (built in full then).

    Another namespace's service of the host, or another entry of its namespace listing it (left out while
    ``entry`` came first), would keep the host. ``left``: :func:`listed_hosts` of ``after``, if known.
    """
    found = []
    for service in build_registry(MeshConfig(service_entries=(entry,))).services:
        listed_now = registry.lookup(service.host)
        if service not in listed_now:
            continue  # an earlier entry of the namespace holds this host: it stays
        if len(listed_now) > 1:
            return None  # the host stays, listed where its other service is: built in full
        found.append(listed_now[0])
    hosts = {service.host for service in found}
    if left is not None:
        return None if any(host in left for host in hosts) else found
    # A host written short starts with the first label of what it resolves to.
    labels = {host.partition(".")[0] for host in hosts}
    for other in after:
        for written in other.spec.hosts:
            if written.partition(".")[0] in labels and resolve_host(written, other.namespace) in hosts:
                return None
    return found


def listed_hosts(entries: Iterable[Resource[ServiceEntrySpec]]) -> Mapping[str, int]:
    """Per host (resolved), how many of ``entries`` list it."""
    # Counted in C: a cold cache counts every entry's hosts (10,000 at 10,000 services).
    return dict(Counter(host for entry in entries for host in _listed(entry)))


def _listed(entry: Resource[ServiceEntrySpec]) -> list[str]:
    return [resolve_host(written, entry.namespace) for written in entry.spec.hosts]


def _relisted(
    listed: Mapping[str, int], changes: Sequence[tuple[Resource[ServiceEntrySpec] | None, ...]]
) -> Mapping[str, int]:
    """:func:`listed_hosts` of the entries ``listed`` counted, once ``changes`` (before, after) are made."""
    return recount(
        listed,
        plus=[host for _, new in changes if new is not None for host in _listed(new)],
        minus=[host for old, _ in changes if old is not None for host in _listed(old)],
    )


def recount(counts: Mapping[str, int], *, plus: Iterable[str] = (), minus: Iterable[str] = ()) -> Mapping[str, int]:
    """``counts`` with one more of each of ``plus`` and one fewer of each of ``minus`` (none left: gone).

    A new mapping when anything changes: the one given may be kept by a state that is still used.
    """
    plus, minus = sorted(plus), sorted(minus)
    if plus == minus:
        return counts  # an entry changed in place lists the hosts it listed
    found = dict(counts)
    for key in plus:
        found[key] = found.get(key, 0) + 1
    for key in minus:
        left = found[key] - 1
        if left:
            found[key] = left
        else:
            del found[key]
    return found


def changed_items(before: Sequence[T], after: Sequence[T], *, limit: int) -> list[tuple[T | None, T | None]] | None:
    """How ``after`` differs from ``before`` by identity, as (before, after) pairs; None past ``limit`` pairs.

    Items replaced in place pair up; otherwise a run after the common head is removed and items are
    added at the end, or either alone (what ``DestinationRules.patched`` can take).
    """
    if len(before) == len(after):
        positions = replaced_positions(before, after)
        # As many removed as added, the rest moved up: not items replaced in place.
        moved = _removed_and_added(before, after, head=positions[0], limit=limit, moved=True) if positions else None
        if moved is not None or len(positions) > limit:
            return moved
        return [(before[index], after[index]) for index in positions]
    head = next(
        itertools.compress(itertools.count(), map(operator.is_not, before, after)), min(len(before), len(after))
    )
    return _removed_and_added(before, after, head=head, limit=limit)


def _removed_and_added(
    before: Sequence[T], after: Sequence[T], *, head: int, limit: int, moved: bool = False
) -> list[tuple[T | None, T | None]] | None:
    """``before`` is ``H R T`` and ``after`` ``H T A`` (``H``: the first ``head`` items): R removed, A added.

    ``moved``: only if T is not empty (else None).
    """
    # T starts with after's item at the head, if T is not empty (compared at C speed, like the rest).
    found = (
        next(
            itertools.compress(itertools.count(), map(operator.is_, before[head:], itertools.repeat(after[head]))), None
        )
        if head < len(after)
        else None
    )
    if moved and not found:
        return None
    kept = 0 if found is None else len(before) - head - found
    removed, added = before[head : len(before) - kept], after[head + kept :]
    # T must be whole in ``after`` too: ``map`` stops at the shorter slice.
    if (
        len(removed) + len(added) > limit
        or head + kept > len(after)
        or not all(map(operator.is_, before[len(before) - kept :], after[head : head + kept]))
    ):
        return None
    return [(item, None) for item in removed] + [(None, item) for item in added]


def replaced_positions(before: Sequence[object], after: Sequence[object]) -> list[int]:
    """The positions where two sequences of the same length hold different objects (compared at C speed)."""
    return list(itertools.compress(range(len(before)), map(operator.is_not, before, after)))


#: More changed entries than this are rebuilt from scratch (each patched one scans the registry).
_PATCHED_ENTRIES = 16


class _Generations(Generic[K, V]):
    """A dict that keeps what the current generation used plus what the previous one did."""

    __slots__ = ("_new", "_old")

    def __init__(self) -> None:
        self._new: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K, accept: Callable[[V], bool] | None = None) -> V | None:
        """The value of ``key`` (moved into the current generation), if any and ``accept`` takes it."""
        found = self._new.get(key)
        if found is None:
            found = self._old.get(key)
            if found is None or (accept is not None and not accept(found)):
                return None
            del self._old[key]
            self._new[key] = found
        return found if accept is None or accept(found) else None

    def values(self) -> Iterator[V]:
        """Every value of both generations."""
        yield from self._new.values()
        yield from self._old.values()

    def put(self, key: K, value: V) -> None:
        self._new[key] = value

    def advance(self) -> None:
        self._old, self._new = self._new, {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


def _same(first: object, second: object) -> bool:
    return first is second or first == second


class _Latest(Generic[K, V]):
    """The value built for the last key, reused while the next key compares equal."""

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: tuple[K, V] | None = None

    def get(self, key: K, build: Callable[[tuple[K, V] | None], V]) -> V:
        """The value for ``key``; ``build`` gets the last key and value (if any) to build it from."""
        memo = self._memo
        if memo is not None and _same(memo[0], key):
            return memo[1]
        value = build(memo)
        self._memo = (key, value)
        return value


class TranslationCache:
    """Work of earlier translations, reused where the inputs are equal; pass it to ``translate(cache=...)``."""

    def __init__(self) -> None:
        self._config: MeshConfig | None = None
        self._registry: _Latest[_RegistryKey, ServiceRegistry] = _Latest()
        #: The last registry patched: from what, to what, and which services it replaced.
        self._registry_patch: tuple[ServiceRegistry, ServiceRegistry, tuple[ServiceChange, ...]] | None = None
        #: The ServiceEntries of the last registry and their :func:`listed_hosts` (what a removal patch reads).
        self._listed: tuple[Sequence[Resource[ServiceEntrySpec]], Mapping[str, int]] | None = None
        self._states: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._rules: _Latest[tuple[Resource[DestinationRuleSpec], ...], DestinationRules] = _Latest()
        #: The last DestinationRule index patched: the rules and index before, the index after, the changes.
        self._rules_patch: tuple[_Rules, DestinationRules, DestinationRules, tuple[RuleChange, ...]] | None = None
        self._clusters: _Generations[tuple[str, str, bool], ServiceClusters] = _Generations()
        self._routes: _Generations[tuple[str, str, int], VirtualServiceRoutes] = _Generations()
        # By type and size: the messages a set was built from (in the order given) and the set.
        self._sets: _Generations[tuple[str, int], tuple[tuple[Message | XdsResource, ...], ResourceSet]] = (
            _Generations()
        )
        # Name sets by content: looking one up finds the equal set kept (a hash, then an equality check).
        self._names: _Generations[frozenset[str], frozenset[str]] = _Generations()
        # Per kind of sidecar (a shape but for its outbound port), the part of its patch state every port shares.
        self._shared: _Generations[Hashable, object] = _Generations()

    def __len__(self) -> int:
        """Entries held (services' clusters, VirtualServices' routes, kept resource and name sets): tests, metrics."""
        return len(self._clusters) + len(self._routes) + len(self._sets) + len(self._names) + len(self._shared)

    def begin(self, config: MeshConfig) -> None:
        """Start translating ``config``: on a new config, forget what neither it nor the previous one used."""
        if config is self._config:
            return
        self._config = config
        self._clusters.advance()
        self._routes.advance()
        self._sets.advance()
        self._names.advance()
        self._shared.advance()

    def registry(self, config: MeshConfig, *, cluster_domain: str | None = None) -> ServiceRegistry:
        """``build_registry(config, cluster_domain=...)``, reused while the ServiceEntries and domain compare equal."""

        def build(last: tuple[_RegistryKey, ServiceRegistry] | None) -> ServiceRegistry:
            if last is not None and last[0][1] == cluster_domain:
                listed = partial(self._listing, last[0][0])
                patched = patch_registry(last[1], before=last[0][0], after=config.service_entries, listed=listed)
                if patched is not None:
                    self._registry_patch = (last[1], *patched)
                    return patched[0]
            self._listing(config.service_entries)
            return build_registry(config, cluster_domain=cluster_domain)

        return self._registry.get((config.service_entries, cluster_domain), build)

    def _listing(self, entries: Sequence[Resource[ServiceEntrySpec]]) -> Mapping[str, int]:
        """:func:`listed_hosts` of ``entries``, counted again from those kept if they changed little."""
        kept = self._listed
        if kept is None or kept[0] is not entries:
            changes = None if kept is None else changed_items(kept[0], entries, limit=_PATCHED_ENTRIES)
            found = listed_hosts(entries) if kept is None or changes is None else _relisted(kept[1], changes)
            kept = self._listed = (entries, found)
        return kept[1]

    def registry_change(self, before: ServiceRegistry, after: ServiceRegistry) -> Sequence[ServiceChange] | None:
        """The services :meth:`registry` replaced to make ``after`` of ``before``, if it patched one into the other."""
        last = self._registry_patch
        if last is None or last[0] is not before or last[1] is not after:
            return None
        return last[2]

    def rules(self, config: MeshConfig) -> DestinationRules:
        """The DestinationRule index of ``config``, reused while the DestinationRules compare equal.

        A few rules changed, removed or added at the end patch the last index (``DestinationRules.patched``).
        """

        def build(last: tuple[_Rules, DestinationRules] | None) -> DestinationRules:
            if last is not None:
                changes = changed_items(last[0], config.destination_rules, limit=_PATCHED_ENTRIES)
                patched = last[1].patched(changes) if changes is not None else None
                if changes is not None and patched is not None:
                    self._rules_patch = (last[0], last[1], patched, tuple(changes))
                    return patched
            return DestinationRules(config.destination_rules)

        return self._rules.get(config.destination_rules, build)

    def rules_change(
        self, before: _Rules, after: DestinationRules
    ) -> tuple[DestinationRules, Sequence[RuleChange]] | None:
        """The index of the rules ``before`` and the changes :meth:`rules` patched into ``after``, if it did."""
        last = self._rules_patch
        if last is None or last[2] is not after or not _same(last[0], before):
            return None
        return last[1], last[3]

    def sidecar_state(self, shape: Hashable) -> object | None:
        """What the last translation of a sidecar ``shape`` left for patching it (:mod:`reconciler.translate.patch`)."""
        found = self._states.get(shape)
        # Another thread may forget the shape in between: then this one merely does not move it.
        with contextlib.suppress(KeyError):
            self._states.move_to_end(shape)
        return None if found is None else found[0]

    def keep_sidecar_state(self, shape: Hashable, state: object, *, services: int) -> None:
        """Keep ``state`` (of a shape that sees ``services``) for ``shape``, within :data:`PATCH_BUDGET`.

        The least recently used shapes are forgotten until the kept ones see at most the budget's services.
        """
        with contextlib.suppress(KeyError):
            self._states[shape] = (state, services)
            self._states.move_to_end(shape)
            while len(self._states) > 1 and sum(size for _, size in self._states.values()) > PATCH_BUDGET:
                self._states.popitem(last=False)

    def shared_state(self, kin: Hashable) -> object | None:
        """The port-independent part of the patch state kept for sidecars of ``kin`` (:meth:`keep_shared_state`)."""
        # Another thread may age the entry in between: then this one merely misses.
        with contextlib.suppress(KeyError):
            return self._shared.get(kin)
        return None

    def keep_shared_state(self, kin: Hashable, state: object) -> None:
        """Keep ``state``, what every outbound port of the sidecars of ``kin`` records alike, for the next such shape.

        Sidecars that differ only in outbound port translate to the same steps, virtual hosts and
        services (~560 KiB at 1,000 services); held once, each shape adds only its own route table.
        Kept for the current and the previous config, like the cache's other entries.
        """
        self._shared.put(kin, state)

    def names(self, names: frozenset[str]) -> frozenset[str]:
        """The frozenset kept equal to ``names`` if any, else ``names`` (kept from now on).

        At 1,000 services the clusters a route configuration uses are ~200 KiB of frozenset and
        strings, the same for every sidecar shape: interned, they are held once per config.
        """
        found = self._names.get(names)
        if found is not None:
            return found
        self._names.put(names, names)
        return names

    def service_clusters(
        self, service: Service, rule: Resource[DestinationRuleSpec] | None, *, report_ports: bool
    ) -> ServiceClusters | None:
        """The clusters built before for an equal service and rule, if any."""
        found = self._clusters.get((service.host, service.namespace, report_ports))
        if found is None or not (_same(found.service, service) and _same(found.rule, rule)):
            return None
        return found

    def keep_service_clusters(self, built: ServiceClusters, *, report_ports: bool) -> None:
        self._clusters.put((built.service.host, built.service.namespace, report_ports), built)

    def routes(
        self, vs: Resource[VirtualServiceSpec], *, listener_port: int, service: Callable[[str], Service | None]
    ) -> VirtualServiceRoutes | None:
        """The routes built before for an equal VirtualService and port, if ``service`` (host → the service a
        proxy uses) gives what it gave then for each host they asked for a cluster of.

        Those are all the hosts whose service the routes read (for a destination's default port), and an
        equal VirtualService asks for the same hosts in the same order.
        """
        found = self._routes.get((vs.namespace, vs.name, listener_port))
        if found is None or not _same(found.vs, vs):
            return None
        hosts = (event.host for event in found.events if isinstance(event, EnsureCall))
        return found if found.services == tuple(map(service, hosts)) else None

    def keep_routes(self, built: VirtualServiceRoutes) -> None:
        self._routes.put((built.vs.namespace, built.vs.name, built.listener_port), built)

    def resource_set(self, type_url: str, resources: Iterable[Message | XdsResource]) -> ResourceSet:
        """``ResourceSet.build`` of ``resources`` (clusters, assignments: encoded, as :class:`ServiceClusters` holds).

        A set built before from equal resources, in the same order, is returned as it is.
        """
        given = tuple(resources)
        key = (type_url, len(given))
        # Compares by identity first: the resources a cache reused are the same objects.
        found = self._sets.get(key, lambda kept: kept[0] == given)
        if found is not None:
            return found[1]
        built = ResourceSet.build(type_url, given)
        self._sets.put(key, (given, built))
        return built
