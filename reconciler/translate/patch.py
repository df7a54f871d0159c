"""The patch path: a sidecar's previous translation plus the objects that changed → its next translation.

A sidecar's snapshot of a 10,000-service mesh holds one RouteConfiguration of 11,000 virtual
hosts and 30,000 clusters; a rollout step changes one VirtualService, an endpoint event one
ServiceEntry. Translating the whole config again for that costs about a second; this module
does only the work the changed objects touch, and gives the same bytes:

* :func:`record` keeps, from a full translation (made with a
  :class:`~reconciler.translate.memo.TranslationCache`), what the patch needs: the config and
  registry it read, the services the proxy sees, what building each one's clusters reported,
  the steps :func:`~reconciler.translate.sidecar.build_sidecar` took with each VirtualService
  (:class:`~reconciler.translate.sidecar.SidecarStep`), and where each virtual host's bytes lie
  in the serialized RouteConfiguration;
* :func:`patch` takes the next config: VirtualServices changed in place (the same hosts,
  gateways, exportTo and TCP/TLS rules: new weights, matches, destinations) and ServiceEntries
  changed in place (the same hosts and ports: new endpoints) are re-translated, everything else
  is reused. Findings are replayed in the order a full translation makes them, so the same
  ones come out; the clusters routes ask for that no service has are made again the same way.
  The RouteConfiguration is spliced from the previous one's bytes and the changed virtual
  hosts' (a repeated field serializes as its elements one after another) and kept in those pieces
  (:class:`~reconciler.translate.snapshot.Pieces`: the response framing joins them), its message parsed
  only if someone asks (:attr:`~reconciler.translate.snapshot.Resource.message`); resource sets
  are patched (:meth:`~reconciler.translate.snapshot.ResourceSet.patched`) and only what changed
  is checked for consistency and against Envoy's constraints.

* DestinationRules edited in place (the same host and exportTo: subsets added or removed, a new
  policy) patch the rule index (``DestinationRules.patched``); the services of their hosts get their
  clusters built again, the clusters they no longer have go (a route still asking for one gets its
  own, as a full translation makes it);
* a host added at the end (ServiceEntry, DestinationRule, VirtualService appended) gets its clusters,
  its steps (after every other, as :func:`~reconciler.translate.sidecar.build_sidecar` takes them) and
  its virtual hosts, built alone and inserted where their names sort, when no other virtual host can
  contend for its domains (:func:`_claims_alone`: no wildcard host, no shared Host-header spelling);
* a host removed (its ServiceEntry, DestinationRule and VirtualService, anywhere in the config) loses its
  steps (set to None: the others keep their positions, steps name VirtualServices by key, see
  ``SidecarState.keys``), virtual hosts, clusters and load assignments, when the host goes whole
  (:func:`_removal`: no other route names it, no other virtual host wants its domains; kept counts tell,
  ``SidecarState.asked`` and ``http_hosts``); a VirtualService removed from a service that stays leaves
  that service's virtual hosts with its default route, as a full translation gives them;
* hosts removed and others added at the end in one commit, when the added ones contend with no host
  of the state before it (removed ones included) and name no removed host.

Anything else (a VirtualService's hosts edited, as many objects removed from the end as added, a wildcard
DestinationRule, what the constraints reject) returns None: the caller translates in full, so the result
never depends on which path made it (``tests/translate/test_translate_patch.py`` checks byte for byte).
Versions are made of parts a patch edits without hashing the rest again (a set's groups, a
RouteConfiguration's virtual hosts: :mod:`reconciler.translate.snapshot`). Pure: no I/O, no clock, no globals.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import operator
from collections.abc import Collection, Hashable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import partial

from envoy.config.route.v3 import route_components_pb2

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.hosts import resolve_host
from reconciler.model.lookup import DestinationRules
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.translate.clusters import ClusterSet
from reconciler.translate.constraints import violations
from reconciler.translate.envoy_check import VIRTUAL_HOST, PassCache
from reconciler.translate.memo import (
    EnsureCall,
    RuleChange,
    ServiceChange,
    TranslationCache,
    changed_items,
    recount,
    replaced_positions,
)
from reconciler.translate.names import DEFAULT_HTTP_PORT, cluster_name, related_hosts, virtual_host_name
from reconciler.translate.notes import NoteCall, Notes
from reconciler.translate.protos import read_varint, varint
from reconciler.translate.registry import Service, ServiceRegistry
from reconciler.translate.routes import RouteBuilder
from reconciler.translate.scope import Scope
from reconciler.translate.sidecar import SidecarStep, build_sidecar, no_http_port, report_l4_routes, virtual_host
from reconciler.translate.snapshot import (
    CLUSTER,
    ENDPOINT,
    PUSH_ORDER,
    ROUTE,
    Pieces,
    RouteHashes,
    Snapshot,
    clusters_of_virtual_host,
    virtual_host_spans,
)
from reconciler.translate.snapshot import Resource as XdsResource
from reconciler.validate.findings import Finding

__all__ = ["RouteLayout", "SidecarState", "patch", "record"]

_Event = NoteCall | EnsureCall
#: More VirtualServices added at once than this are translated in full.
_ADDED_HOSTS = 16
#: Field 2 of a RouteConfiguration (virtual_hosts), length-delimited.
_VIRTUAL_HOSTS_TAG = 0x12
#: A spliced route table kept in more pieces than this is joined (each patch splits a run or two).
_MAX_PIECES = 256


@dataclass(frozen=True, slots=True)
class RouteLayout:
    """Where each virtual host lies in a serialized sidecar RouteConfiguration (a ``packed`` Any).

    The virtual hosts' fields (tag, length, message each) follow one another from ``head`` to ``tail``
    in ``packed``, ``lengths`` long; ``names``: theirs, in order (sorted, as a sidecar's are); ``hashes``:
    theirs, what the version is made of (:class:`~reconciler.translate.snapshot.RouteHashes`).
    """

    resource: XdsResource
    head: int
    tail: int
    lengths: tuple[int, ...]
    names: tuple[str, ...]
    hashes: RouteHashes
    #: Where the RouteConfiguration's bytes start in ``packed``.
    value_start: int

    @classmethod
    def of(cls, resource: XdsResource, *, hashes: RouteHashes | None = None) -> RouteLayout:
        """The layout of ``resource``; ``hashes``: its virtual hosts' (:class:`RouteHashes`), if known already."""
        packed = resource.packed
        view = memoryview(packed)
        # Any: type_url (field 1), then value (field 2), each a tag and a length.
        length, offset = read_varint(packed, 1)
        value_length, value_start = read_varint(packed, offset + length + 1)
        head, spans, tail = virtual_host_spans(packed, value_start, value_start + value_length)
        lengths: list[int] = []
        names = []
        start = head
        for body, end in spans:
            # A virtual host's first field is its name (field 1: tag, length, text).
            name_length, name_start = read_varint(packed, body + 1)
            names.append(packed[name_start : name_start + name_length].decode())
            lengths.append(end - start)
            start = end
        return cls(
            resource=resource,
            head=head,
            tail=tail,
            lengths=tuple(lengths),
            names=tuple(names),
            hashes=hashes
            if hashes is not None
            else RouteHashes.of([hashlib.sha256(view[body:end]).digest() for body, end in spans]),
            value_start=value_start,
        )

    def position(self, name: str) -> int:
        """The index of the virtual host ``name`` (one there is)."""
        return bisect.bisect_left(self.names, name)

    def has(self, name: str) -> bool:
        """Whether a virtual host is named ``name``."""
        at = bisect.bisect_left(self.names, name)
        return at < len(self.names) and self.names[at] == name

    def digests(self) -> list[str]:
        """Each virtual host's digest as :class:`~reconciler.translate.envoy_check.PassCache` knows virtual hosts."""
        return [leaf.hex() for leaf in self.hashes.leaves]

    def body(self, index: int) -> bytes:
        """The serialized message of the virtual host at ``index``."""
        start = self.head + sum(self.lengths[:index])
        field = _content(self.resource).read(start, start + self.lengths[index])
        length, body = read_varint(field, 1)
        return field[body : body + length]

    def spliced(
        self,
        replaced: Mapping[int, bytes],
        *,
        inserted: Mapping[str, bytes],
        references: frozenset[str],
        removed: AbstractSet[int] = frozenset(),
    ) -> RouteLayout:
        """This RouteConfiguration with the virtual hosts at ``replaced`` positions serialized anew, ``inserted`` added.

        Its bytes are those a RouteConfiguration of the same virtual hosts serializes to (a repeated
        field is its elements' fields one after another; the inserted ones go where their names sort,
        those at ``removed`` positions are left out); ``references``: the clusters it names. They are
        kept as pieces (:class:`~reconciler.translate.snapshot.Pieces`): runs of this one's and the new
        virtual hosts, not joined into 10 MB of fresh memory here (the response framing copies them).
        """
        source = _content(self.resource)
        value_start = self.value_start
        # (index, replaces, name, message): an insertion goes before the host at its index, in name order; a
        # replacement without a message removes.
        edits: list[tuple[int, bool, str, bytes | None]] = sorted(
            [(index, True, "", message) for index, message in replaced.items()]
            + [(index, True, "", None) for index in removed]
            + [(self.position(name), False, name, message) for name, message in inserted.items()],
            key=lambda edit: (edit[0], edit[1], edit[2]),
        )
        # Value: the name field, the virtual hosts, the fields after them; each run up to a change kept.
        pieces: list[bytes | memoryview] = []
        names: list[str] = []
        lengths: list[int] = []
        leaves: list[bytes] = []
        # Per group of the virtual hosts' hashes, how many it gained (or lost).
        grown: dict[int, int] = {}
        kept_from, offset, done = value_start, self.head, 0
        for index, replaces, name, message in edits:
            offset += sum(self.lengths[done:index])
            pieces.extend(source.slice(kept_from, offset))
            names.extend(self.names[done:index])
            lengths.extend(self.lengths[done:index])
            leaves.extend(self.hashes.leaves[done:index])
            group = self.hashes.group(index) if self.names else 0
            grown[group] = grown.get(group, 0) + (message is not None) - replaces
            if message is not None:
                chunk = bytes((_VIRTUAL_HOSTS_TAG,)) + varint(len(message)) + message
                pieces.append(chunk)
                names.append(self.names[index] if replaces else name)
                lengths.append(len(chunk))
                leaves.append(hashlib.sha256(message).digest())
            done = index + 1 if replaces else index
            kept_from = offset = offset + (self.lengths[index] if replaces else 0)
        pieces.extend(source.slice(kept_from, source.size))
        names.extend(self.names[done:])
        lengths.extend(self.lengths[done:])
        leaves.extend(self.hashes.leaves[done:])
        size = sum(map(len, pieces))
        header = b"\x0a" + varint(len(ROUTE)) + ROUTE.encode() + b"\x12" + varint(size)
        content = Pieces((header, *pieces))
        if len(content.pieces()) > _MAX_PIECES:
            content.whole()  # patch after patch splits the runs finer: joined now and then, the pieces stay few
        hashes = self.hashes.edited(leaves, grown)
        tail = content.size - (source.size - self.tail)
        version = hashes.version(
            self.resource.name,
            prefix=source.read(value_start, self.head),
            suffix=source.read(self.tail, source.size),
        )
        resource = XdsResource(name=self.resource.name, content=content, version=version, references=references)
        return RouteLayout(
            resource=resource,
            head=self.head + len(header) - value_start,
            tail=tail,
            lengths=tuple(lengths),
            names=tuple(names),
            hashes=hashes,
            value_start=len(header),
        )


def _content(resource: XdsResource) -> Pieces:
    """The packed bytes of ``resource`` as pieces (one, if they are whole): read and sliced without joining them."""
    content = resource.content
    return content if isinstance(content, Pieces) else Pieces((content,))


@dataclass(frozen=True, slots=True)
class _Names:
    """A set of names: a full translation's (``whole``), less those a patch removed since, plus those it added.

    What the services made, 40,000 names at 10,000 services: a patch adding or removing a host's few
    copies those few, not the 40,000 (1 MB written per patch); past :data:`_EDITED_NAMES`, they are joined.
    ``added`` holds none of ``whole``, ``removed`` only names of it.
    """

    whole: frozenset[str]
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    def __contains__(self, name: object) -> bool:
        return name in self.added or (name in self.whole and name not in self.removed)

    def __len__(self) -> int:
        return len(self.whole) - len(self.removed) + len(self.added)

    def edited(self, *, added: Collection[str], removed: Collection[str]) -> _Names:
        """These names without ``removed``, then with ``added``."""
        if not added and not removed:
            return self
        whole = self.whole
        kept = self.added.difference(removed).union(name for name in added if name not in whole)
        gone = self.removed.union(name for name in removed if name in whole).difference(added)
        if len(kept) + len(gone) > _EDITED_NAMES:
            return _Names(whole.difference(gone).union(kept))
        return _Names(whole, kept, gone)


#: More names added to and removed from a full translation's than this and a patch joins them into one set.
_EDITED_NAMES = 512


@dataclass(frozen=True, slots=True)
class _Shared:
    """What a sidecar translation leaves for patching the next one, but its snapshot and its route table's offsets.

    The outbound port names the route configuration and the listener, nothing else: sidecars of one
    config that differ only in it record equal ones (~560 KiB at 1,000 services), held once (:func:`record`).
    """

    config: MeshConfig
    registry: ServiceRegistry
    findings: tuple[Finding, ...]
    #: The services the proxy sees, in order; what building each one's clusters reported (only those that did).
    services: tuple[Service, ...]
    service_notes: Mapping[int, tuple[NoteCall, ...]]
    #: Every cluster the services made (a route asking for one of these changes nothing).
    base: _Names
    #: The steps in the order a full translation takes them (None: a removed VirtualService's, left out).
    steps: tuple[SidecarStep | None, ...]
    #: The clusters (and load assignments) routes asked for that no service has.
    orphans: Mapping[str, XdsResource]
    orphan_assignments: Mapping[str, XdsResource]
    #: The route table's virtual hosts as :class:`RouteLayout` has them (their bytes do not depend on the port).
    names: tuple[str, ...]
    lengths: tuple[int, ...]
    hashes: RouteHashes
    # What follows is made of the fields above (:meth:`made`; empty until then), and patched with them.
    #: The key (:attr:`SidecarStep.vs`) of each VirtualService of ``config``, in order: its index in the config
    #: a full translation recorded, kept as others go and come (a removal renumbers no step).
    keys: tuple[int, ...] = ()
    #: Per VirtualService (by key), its steps; the steps whose events matter to the rest.
    steps_of: Mapping[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    eventful: frozenset[int] = frozenset()
    #: Per host, how many steps ask for a cluster of it, and how many VirtualServices of ``config`` route its HTTP
    #: (:func:`_http_hosts`): what tells whether a removed host goes whole without a look at every other one.
    asked: Mapping[str, int] = dataclasses.field(default_factory=dict)
    http_hosts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Whether a VirtualService has a wildcard host, and whether a step's virtual host got no name or domain: either
    #: way, which virtual host claims a domain depends on the others (added hosts are translated in full then).
    wildcards: bool = False
    denied: bool = False

    def made(self) -> _Shared:
        """What a full translation recorded (the fields before ``keys``) with what is made of it."""
        steps = [_live(step) for step in self.steps]
        config = self.config
        steps_of: dict[int, list[int]] = {}
        for index, step in enumerate(steps):
            steps_of.setdefault(step.vs, []).append(index)
        return dataclasses.replace(
            self,
            keys=tuple(range(len(config.virtual_services))),
            steps_of={vs: tuple(found) for vs, found in steps_of.items()},
            eventful=_eventful_steps(steps, self.orphans.keys()),
            asked=recount({}, plus=[host for step in steps for host in _asked(step)]),
            http_hosts=recount({}, plus=[host for vs in config.virtual_services for host in _http_hosts(vs)]),
            wildcards=any("*" in host for vs in config.virtual_services for host in vs.spec.hosts),
            denied=any(step.kind == "routes" and step.vhost is None for step in steps),
        )

    def alike(self, other: _Shared) -> bool:
        """Whether ``other`` recorded what this did (compared by identity first: most parts are the same objects)."""
        return all(
            getattr(self, name) is getattr(other, name) or getattr(self, name) == getattr(other, name)
            for name in _RECORDED
        )


#: What a full sidecar translation records (:func:`record`): the fields of :class:`_Shared` the others are made of.
_RECORDED = tuple(
    field.name
    for field in dataclasses.fields(_Shared)
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
)


@dataclass(frozen=True, slots=True)
class SidecarState:
    """What a sidecar translation leaves for patching the next one (kept per shape in the cache).

    ``shared``: all but the snapshot and where the route table's virtual hosts lie in its bytes
    (``layout``), which name the outbound port; sidecars differing only in it hold one.
    """

    shared: _Shared
    snapshot: Snapshot
    layout: RouteLayout


def _eventful(events: Sequence[_Event], base: _Names) -> bool:
    """Whether replaying ``events`` can change anything: a note, or a cluster no service made."""
    for event in events:
        if not isinstance(event, EnsureCall):
            return True
        if cluster_name(host=event.host, port=event.port, subset=event.subset) not in base:
            return True
    return False


def record(
    *,
    config: MeshConfig,
    registry: ServiceRegistry,
    services: Sequence[Service],
    service_notes: Mapping[int, tuple[NoteCall, ...]],
    clusters: ClusterSet,
    base_clusters: frozenset[str],
    steps: Sequence[SidecarStep],
    snapshot: Snapshot,
    findings: tuple[Finding, ...],
    cache: TranslationCache | None = None,
    kin: Hashable = None,
    route_hashes: RouteHashes | None = None,
) -> SidecarState:
    """The state a full sidecar translation leaves for :func:`patch`.

    ``services`` in the order the proxy sees them, what adding each one's clusters reported (by
    position, only those that did), the translation's ``clusters`` and those of them the services
    made, and the ``steps`` :func:`~reconciler.translate.sidecar.build_sidecar` recorded. With a
    ``cache``, what the sidecars of ``kin`` (its shape but for the outbound port) record alike is
    taken from the last of them when equal, so each port's state adds only its route table. ``route_hashes``: the
    route table's virtual hosts' hashes, if the translation made them.
    """
    # The services made ``base_clusters``, a subset of the clusters: as many means no route made one (nor its CLA).
    orphaned = len(clusters.cluster_items) > len(base_clusters)
    orphan_names = clusters.cluster_items.keys() - base_clusters if orphaned else set()
    orphan_assignments = clusters.assignment_items.keys() - base_clusters if orphaned else set()
    (resource,) = snapshot.sets[ROUTE].items.values()
    layout = RouteLayout.of(resource, hashes=route_hashes)
    recorded = _Shared(
        config=config,
        registry=registry,
        findings=findings,
        services=tuple(services),
        service_notes=dict(service_notes),
        base=_Names(base_clusters),
        steps=tuple(steps),
        orphans={name: snapshot.sets[CLUSTER].items[name] for name in orphan_names},
        orphan_assignments={name: snapshot.sets[ENDPOINT].items[name] for name in orphan_assignments},
        names=layout.names,
        lengths=layout.lengths,
        hashes=layout.hashes,
    )
    found = cache.shared_state(kin) if cache is not None else None
    if not isinstance(found, _Shared) or not found.alike(recorded):
        shared = recorded.made()
    elif found.config is not config or found.registry is not registry:
        # Equal ones: the patch compares the next config and registry with these by identity first.
        shared = dataclasses.replace(found, config=config, registry=registry)
    else:
        shared = found
    if cache is not None and shared is not found:
        cache.keep_shared_state(kin, shared)
    return SidecarState(
        shared=shared,
        snapshot=snapshot,
        layout=dataclasses.replace(layout, names=shared.names, lengths=shared.lengths, hashes=shared.hashes),
    )


def _eventful_steps(steps: Sequence[SidecarStep], orphans: AbstractSet[str]) -> frozenset[int]:
    """The steps whose events matter to the rest: notes, and look-ups of clusters no service made.

    A look-up of a cluster no service made makes one (the orphans), so only look-ups naming
    an orphan's host need their cluster's name made to tell.
    """
    hosts = {name.rsplit("|", 1)[-1] for name in orphans}
    found = []
    for index, step in enumerate(steps):
        for event in step.events:
            if not isinstance(event, EnsureCall) or (
                event.host in hosts and cluster_name(host=event.host, port=event.port, subset=event.subset) in orphans
            ):
                found.append(index)
                break
    return frozenset(found)


def _vs_structure(vs: Resource[VirtualServiceSpec]) -> tuple[object, ...]:
    """What of a VirtualService decides which virtual hosts it makes and which notes it gets outside its routes."""
    spec = vs.spec
    return (vs.namespace, vs.name, spec.hosts, spec.gateways, spec.export_to, bool(spec.http), spec.tcp, spec.tls)


class _Replay:
    """A new translation's findings and orphan clusters, made by replaying events in a full translation's order."""

    def __init__(self, scope: Scope) -> None:
        self.notes = Notes()
        # Starts without the services' clusters: only events naming other clusters are replayed.
        self.clusters = ClusterSet(scope=scope, notes=self.notes, report_ports=True)

    def events(self, events: Sequence[_Event], vs: Resource[VirtualServiceSpec], base: _Names) -> None:
        for event in events:
            if not isinstance(event, EnsureCall):
                self.notes.replay((event,))
            elif cluster_name(host=event.host, port=event.port, subset=event.subset) not in base:
                self.clusters.ensure(
                    host=event.host, port=event.port, subset=event.subset, referrer=vs, path=event.path
                )


def patch(
    state: SidecarState,
    config: MeshConfig,
    *,
    registry: ServiceRegistry,
    scope: Scope,
    cache: TranslationCache,
    passed: PassCache | None,
) -> SidecarState | None:
    """The state (snapshot, findings) of translating ``config`` for the shape of ``state``; None: translate in full.

    ``registry`` is what the full translation would use (``cache.registry(config)`` or the caller's),
    ``scope`` the proxy's view of ``config`` through it.
    """
    # Tuples compare their items by identity first: unchanged objects cost nothing.
    rule_hosts: dict[str, DestinationRules] = {}
    rules_before = cache.rules(config)
    if state.shared.config.destination_rules != config.destination_rules:
        found_rules = cache.rules_change(state.shared.config.destination_rules, rules_before)
        if found_rules is None:
            return None
        rules_before = found_rules[0]
        rule_hosts = _rule_hosts(*found_rules)
        if any("*" in host for host in rule_hosts):
            return None  # a wildcard rule applies to many hosts: left to a full translation
    vs_changes = _virtual_service_changes(state.shared.config, config)
    if vs_changes is None:
        return None
    changed_vs, added_vs, removed_vs = vs_changes
    service_changes: Sequence[ServiceChange] = ()
    if registry is not state.shared.registry:
        found = cache.registry_change(state.shared.registry, registry)
        if found is None:
            return None
        service_changes = found
    added_hosts = {new.host for old, new in service_changes if old is None and new is not None}
    claimed = added_hosts | {resolve_host(host, vs.namespace) for vs in added_vs for host in vs.spec.hosts}
    if claimed and not _claims_alone(state, claimed, registry=registry, namespace=scope.namespace):
        return None
    gone_services = [old for old, new in service_changes if new is None and old is not None]
    removal = _Removal.none(state)
    if removed_vs or gone_services:
        # Hosts added in the same commit were checked against the state before it, removed hosts and all.
        found_removal = _removal(state, removed_vs=removed_vs, services=gone_services, scope=scope)
        if found_removal is None:
            return None
        removal = found_removal

    services = list(state.shared.services)
    service_notes = dict(state.shared.service_notes)
    built = ClusterSet(scope=scope, notes=Notes(), report_ports=True, cache=cache)
    rebuilt = _services(state, service_changes, scope=scope, cache=cache, built=built, into=(services, service_notes))
    if rebuilt is None:
        return None
    added_services = [service for service in rebuilt if service.host in added_hosts]
    # Services removed: their clusters gone (no route left asks for them: see _removal).
    unlisted: set[str] = set()
    for removed_service in gone_services:
        if _position(state.shared.services, removed_service) is not None:
            old_rule = rules_before.rule_for(
                removed_service.host,
                namespace=scope.namespace,
                service_namespace=removed_service.namespace,
                labels=scope.labels,
            )
            unlisted.update(ClusterSet.names(removed_service, old_rule))
    # Services whose DestinationRule changed: their clusters built again, the names they no longer have gone.
    dropped: set[str] = set()
    for host, before in rule_hosts.items():
        service = scope.service(host)
        if service is None or service.host in added_hosts:
            continue  # no clusters of its own before (the replay below makes those routes name)
        position = _position(services, service)
        if position is None:
            return None
        if all(found is not service for found in rebuilt) and not _rebuild(
            service, position, built=built, scope=scope, cache=cache, into=service_notes
        ):
            return None
        old_rule = before.rule_for(
            host, namespace=scope.namespace, service_namespace=service.namespace, labels=scope.labels
        )
        # The ports are those the service had (a registry patch keeps them): only the subsets differ.
        dropped.update(ClusterSet.names(service, old_rule))
    # The services' clusters less those they no longer make, plus the new ones.
    base = state.shared.base.edited(
        added=[name for name in built.clusters if name not in state.shared.base],
        removed=(dropped | unlisted) - built.clusters.keys(),
    )
    removed = {name for name in dropped | unlisted if name not in base}
    if not all(name in base for name in built.assignments):
        return None

    # Steps of the changed VirtualServices are taken again; the others' events replay as recorded.
    steps = list(removal.steps)
    eventful = set(removal.eventful)
    unmade = {name for name in dropped if name not in base}
    if unmade:
        # A route asking for a cluster no service makes any more makes one of its own: its step now matters.
        eventful.update(_asking(steps, unmade))
    vhosts: dict[int, bytes] = {}
    # The changed routes' cluster look-ups go to a scratch set: the replay below decides what they add.
    scratch = ClusterSet(scope=scope, notes=Notes(), report_ports=True)
    routes = RouteBuilder(scope=scope, clusters=scratch, notes=Notes(), cache=cache)
    keys = removal.keys
    retaken = {position: vs for index, vs in changed_vs.items() for position in removal.steps_of.get(keys[index], ())}
    # Routes to a host that is a service now read its ports: a look-up of it (no service made it) is taken again.
    retaken.update(
        (position, _vs_of(config, keys, _live(steps[position]).vs))
        for position in sorted(removal.eventful)
        if position not in retaken
        and any(isinstance(event, EnsureCall) and event.host in added_hosts for event in _live(steps[position]).events)
    )
    asked, http_hosts = removal.asked, removal.http_hosts
    for position, vs in retaken.items():
        step = _live(steps[position])
        events = _step_events(step, vs, routes=routes, vhosts=vhosts, layout=state.layout)
        retook = dataclasses.replace(step, events=events)
        steps[position] = retook
        asked = recount(asked, plus=_asked(retook), minus=_asked(step))
        if _eventful(events, base):
            eventful.add(position)
        else:
            eventful.discard(position)
    steps_of = removal.steps_of
    inserted: dict[str, route_components_pb2.VirtualHost] = {}
    if added_services or added_vs:
        offset = keys[-1] + 1 if keys else 0
        added_steps = _add_hosts(
            scope, added_vs, added_services, rules=cache.rules(config), cache=cache, offset=offset, into=inserted
        )
        keys = (*keys, *range(offset, offset + len(added_vs)))
        asked = recount(asked, plus=[host for step in added_steps for host in _asked(step)])
        http_hosts = recount(http_hosts, plus=[host for vs in added_vs for host in _http_hosts(vs)])
        steps_of = dict(steps_of)
        for step in added_steps:
            steps_of[step.vs] = (*steps_of.get(step.vs, ()), len(steps))
            if _eventful(step.events, base):
                eventful.add(len(steps))
            steps.append(step)

    replay = _Replay(scope)
    for position in sorted(service_notes):
        replay.notes.replay(service_notes[position])
    for position in sorted(eventful):
        step = _live(steps[position])
        replay.events(step.events, _vs_of(config, keys, step.vs), base)

    changed_items: dict[str, dict[str, XdsResource]] = {CLUSTER: {}, ENDPOINT: {}}
    # Clusters and assignments come encoded (checked by how they are made): taken as they are, never parsed.
    for type_url, items in ((CLUSTER, built.cluster_items), (ENDPOINT, built.assignment_items)):
        _changed(state.snapshot, type_url, items, into=changed_items[type_url])
    orphans = _orphans(state.shared.orphans, replay.clusters.cluster_items)
    orphan_assignments = _orphans(state.shared.orphan_assignments, replay.clusters.assignment_items)
    gone: dict[str, set[str]] = {CLUSTER: set(removed), ENDPOINT: set(removed)}
    for type_url, kept_orphans, new_orphans in (
        (CLUSTER, state.shared.orphans, orphans),
        (ENDPOINT, state.shared.orphan_assignments, orphan_assignments),
    ):
        changed_items[type_url].update(
            (name, item) for name, item in new_orphans.items() if kept_orphans.get(name) is not item
        )
        # What no service and no route makes any more goes (a cluster that became a service's is replaced).
        made = changed_items[type_url]
        gone[type_url] = {
            name
            for name in gone[type_url].union(kept_orphans.keys() - new_orphans.keys())
            if name not in made and name not in base
        }

    layout = state.layout
    added_vhosts = {name: vhost.SerializeToString(deterministic=True) for name, vhost in inserted.items()}
    # A service whose VirtualService went: its virtual hosts get its default route, as a full translation's.
    default_clusters = {
        position: cluster_name(host=name.rpartition(":")[0], port=port)
        for position, (name, _, port) in removal.defaults.items()
    }
    defaults = {
        position: virtual_host(
            name=name, domains=domains, routes=[routes.default_route(default_clusters[position])]
        ).SerializeToString(deterministic=True)
        for position, (name, domains, _) in removal.defaults.items()
    }
    fresh_vhosts = [*vhosts.values(), *added_vhosts.values(), *defaults.values()]
    # The clusters the route configuration names now and did not.
    named: set[str] = set()
    if fresh_vhosts or removal.vhosts:
        found_named = _newly_named(layout, vhosts)
        if found_named is None:
            return None
        named = found_named.union(*(clusters_of_virtual_host(vhost) for vhost in inserted.values()))
        named.update(default_clusters.values())
        if named & removal.references:
            return None  # an added route names a removed host's cluster: it makes its own (a full translation's)
        named = {name for name in named if name not in layout.resource.references}
        layout = layout.spliced(
            {**vhosts, **defaults},
            inserted=added_vhosts,
            references=_edited(layout.resource.references, added=named, removed=removal.references),
            removed=removal.vhosts,
        )
    if gone[CLUSTER] & layout.resource.references or not _passes(state, layout, changed_items, fresh_vhosts, passed):
        return None
    sets = {
        type_url: state.snapshot.sets[type_url].patched(items, removed=gone[type_url])
        for type_url, items in changed_items.items()
    }
    # What the new and changed resources point at must exist (the rest was consistent before).
    requires = {
        ENDPOINT: [name for item in changed_items[CLUSTER].values() for name in item.references],
        CLUSTER: list(named),
    }
    if layout is not state.layout:
        sets[ROUTE] = state.snapshot.sets[ROUTE].patched({layout.resource.name: layout.resource})
    snapshot = state.snapshot.patched(sets, requires=requires)
    if snapshot is None:
        return None
    if passed is not None:
        passed.touch(partial(_keys, snapshot, layout))
    shared = dataclasses.replace(
        state.shared,
        config=config,
        registry=registry,
        findings=replay.notes.result(),
        services=tuple(services),
        service_notes=service_notes,
        base=base,
        steps=tuple(steps),
        orphans=orphans,
        orphan_assignments=orphan_assignments,
        names=layout.names,
        lengths=layout.lengths,
        hashes=layout.hashes,
        keys=keys,
        steps_of=steps_of,
        eventful=frozenset(eventful),
        asked=asked,
        http_hosts=http_hosts,
    )
    return SidecarState(shared=shared, snapshot=snapshot, layout=layout)


def _services(
    state: SidecarState,
    changes: Sequence[ServiceChange],
    *,
    scope: Scope,
    cache: TranslationCache,
    built: ClusterSet,
    into: tuple[list[Service], dict[int, tuple[NoteCall, ...]]],
) -> list[Service] | None:
    """The changed and added services this proxy sees, their clusters built again into ``built``; None: in full.

    ``into``: the proxy's services (a changed one replaced, an added one appended, as the registry
    lists it last, a removed one left out) and what building each one's clusters reported.
    """
    services, notes = into
    rebuilt = []
    for old, new in changes:
        if new is None:
            gone = _position(services, old)
            if gone is not None:
                del services[gone]
                shifted = {index - (index > gone): found for index, found in notes.items() if index != gone}
                notes.clear()
                notes.update(shifted)
            continue
        if scope.service(new.host) is not new:
            continue
        if old is None:
            position = len(services)
            services.append(new)
        else:
            if old.resolution is not new.resolution:
                return None  # DNS ↔ STATIC adds or removes load assignments: left to a full translation
            found = _position(services, old)
            if found is None:
                return None
            position = found
            services[position] = new
        if not _rebuild(new, position, built=built, scope=scope, cache=cache, into=notes):
            return None
        rebuilt.append(new)
    return rebuilt


def _position(items: Sequence[object], item: object) -> int | None:
    """Where ``item`` (that very object) is in ``items``, if it is: compared at C speed (10,000 services)."""
    return next(itertools.compress(itertools.count(), map(operator.is_, items, itertools.repeat(item))), None)


class _AddedScope(Scope):
    """A proxy's view of the added VirtualServices and services alone (the rest of the registry still looked up)."""

    def __init__(
        self,
        scope: Scope,
        *,
        virtual_services: Sequence[Resource[VirtualServiceSpec]],
        services: list[Service],
        rules: DestinationRules,
    ) -> None:
        super().__init__(
            config=MeshConfig(virtual_services=tuple(virtual_services)),
            registry=scope.registry,
            namespace=scope.namespace,
            labels=scope.labels,
            rules=rules,
        )
        self._added = services

    def services(self) -> list[Service]:
        return list(self._added)


def _add_hosts(
    scope: Scope,
    virtual_services: Sequence[Resource[VirtualServiceSpec]],
    services: list[Service],
    *,
    rules: DestinationRules,
    cache: TranslationCache,
    offset: int,
    into: dict[str, route_components_pb2.VirtualHost],
) -> list[SidecarStep]:
    """What :func:`build_sidecar` does with added VirtualServices (keys from ``offset`` on) and services: its steps.

    The virtual hosts go ``into`` by name. The steps come after every other, and the virtual hosts claim
    domains no other one wants (:func:`_claims_alone`), so building them alone gives what a full translation adds.
    """
    added = _AddedScope(scope, virtual_services=virtual_services, services=services, rules=rules)
    steps: list[SidecarStep] = []
    # Its cluster look-ups go to a scratch set, as the changed routes' do (the replay makes what they add).
    scratch = ClusterSet(scope=added, notes=Notes(), report_ports=True)
    builder = RouteBuilder(scope=added, clusters=scratch, notes=Notes(), cache=cache)
    _, config = build_sidecar(scope=added, routes=builder, notes=Notes(), port=0, steps=steps)
    into.update((vhost.name, vhost) for vhost in config.virtual_hosts)
    return [dataclasses.replace(step, vs=step.vs + offset) for step in steps]


@dataclass(frozen=True, slots=True)
class _Removal:
    """The steps left once VirtualServices and services are removed (theirs None), and what goes from the routes."""

    steps: Sequence[SidecarStep | None]
    keys: tuple[int, ...]
    steps_of: Mapping[int, tuple[int, ...]]
    eventful: AbstractSet[int]
    asked: Mapping[str, int]
    http_hosts: Mapping[str, int]
    #: The positions of the virtual hosts that go, and the clusters only they named.
    vhosts: frozenset[int] = frozenset()
    references: frozenset[str] = frozenset()
    #: The virtual hosts (by position) of a service whose VirtualService went, which get its default route: their
    #: name, domains and port.
    defaults: Mapping[int, tuple[str, tuple[str, ...], int]] = dataclasses.field(default_factory=dict)

    @classmethod
    def none(cls, state: SidecarState) -> _Removal:
        """Nothing removed: the steps of ``state`` as they are (the fields above, in order)."""
        shared = state.shared
        return cls(shared.steps, shared.keys, shared.steps_of, shared.eventful, shared.asked, shared.http_hosts)


def _removal(state: SidecarState, *, removed_vs: range, services: Sequence[Service], scope: Scope) -> _Removal | None:
    """What removing the VirtualServices at ``removed_vs`` (indexes before) and ``services`` leaves; None: in full.

    Taken when the hosts they served go whole, or stay services the proxy sees: no other VirtualService
    takes one over, no other route names one, no other virtual host could claim one's domains
    (:func:`_spelled_alike`). Their steps go (the others keep their positions and keys); their virtual
    hosts and the clusters only those named go, a staying service's virtual hosts get its default route
    (a route config naming another host's cluster from them is translated in full).
    """
    if state.shared.wildcards or state.shared.denied:
        return None
    namespace = scope.namespace
    removed = state.shared.config.virtual_services[removed_vs.start : removed_vs.stop]
    routed = [host for vs in removed for host in _http_hosts(vs)]
    gone_hosts = {service.host for service in services}
    hosts = gone_hosts.union(routed)
    if any("*" in host for host in hosts):
        return None  # a wildcard's spellings are every host's
    staying = {host for host in hosts - gone_hosts if state.shared.registry.lookup(host)}
    if any(scope.service(host) is None for host in staying):
        return None  # a service the proxy does not see: its host's virtual host is the VirtualService's alone
    if any(_spelled_alike(state, host, registry=state.shared.registry, namespace=namespace) for host in hosts):
        return None
    http_hosts = recount(state.shared.http_hosts, minus=routed)
    if any(host in http_hosts for host in hosts):
        return None  # another VirtualService of the host would take it over
    layout = state.layout
    names = {virtual_host_name(service.host, port.number) for service in services for port in service.ports}
    removed_keys = state.shared.keys[removed_vs.start : removed_vs.stop]
    positions = [position for key in removed_keys for position in state.shared.steps_of.get(key, ())]
    steps = list(state.shared.steps)
    defaults: dict[int, tuple[str, tuple[str, ...], int]] = {}
    for position in positions:
        step = _live(steps[position])
        if step.vhost is None:
            continue
        if step.vhost.rpartition(":")[0] in staying:
            defaults[layout.position(step.vhost)] = (step.vhost, step.domains, step.listener_port)
        else:
            names.add(step.vhost)
    asked = recount(
        state.shared.asked, minus=[host for position in positions for host in _asked(_live(steps[position]))]
    )
    if any(host in asked for host in hosts):
        return None  # a route to a removed host now names a cluster of its own
    for position in positions:
        steps[position] = None
    vhosts = frozenset(layout.position(name) for name in names if layout.has(name))
    references: set[str] = set()
    for position in itertools.chain(vhosts, defaults):
        references |= clusters_of_virtual_host(route_components_pb2.VirtualHost.FromString(layout.body(position)))
    if any(name.rsplit("|", 1)[-1] not in hosts for name in references):
        return None  # another virtual host may name it too: a full translation finds out
    # A default route names its service's cluster of the port: that one stays named.
    references.difference_update(
        cluster_name(host=name.rpartition(":")[0], port=port) for name, _, port in defaults.values()
    )
    found = dataclasses.replace(
        _Removal.none(state),
        asked=asked,
        http_hosts=http_hosts,
        vhosts=vhosts,
        references=frozenset(references),
        defaults=defaults,
    )
    if not removed_keys:
        return found
    steps_of = dict(state.shared.steps_of)
    for key in removed_keys:
        steps_of.pop(key, None)
    return dataclasses.replace(
        found,
        steps=steps,
        keys=(*state.shared.keys[: removed_vs.start], *state.shared.keys[removed_vs.stop :]),
        steps_of=steps_of,
        eventful=state.shared.eventful - frozenset(positions),
    )


def _asked(step: SidecarStep) -> set[str]:
    """The hosts ``step`` asked for a cluster of."""
    return {event.host for event in step.events if isinstance(event, EnsureCall)}


def _http_hosts(vs: Resource[VirtualServiceSpec]) -> set[str]:
    """The hosts (resolved) whose HTTP traffic ``vs`` would take over: none without HTTP rules."""
    return {resolve_host(written, vs.namespace) for written in vs.spec.hosts} if vs.spec.http else set()


def _live(step: SidecarStep | None) -> SidecarStep:
    """A step of a VirtualService still there (steps named by keys and eventful positions are)."""
    assert step is not None
    return step


def _vs_of(config: MeshConfig, keys: Sequence[int], key: int) -> Resource[VirtualServiceSpec]:
    """The VirtualService of ``config`` whose steps name ``key`` (``keys``: each one's, ascending)."""
    return config.virtual_services[bisect.bisect_left(keys, key)]


def _spelled_alike(state: SidecarState, host: str, *, registry: ServiceRegistry, namespace: str) -> bool:
    """Whether another host, a service's or a virtual host's, shares a Host-header spelling with ``host``."""
    return any(
        registry.lookup(related)
        or state.shared.registry.lookup(related)
        or state.layout.has(virtual_host_name(related, DEFAULT_HTTP_PORT))
        for related in related_hosts(host, proxy_namespace=namespace)
    )


def _claims_alone(state: SidecarState, hosts: AbstractSet[str], *, registry: ServiceRegistry, namespace: str) -> bool:
    """Whether the virtual hosts of ``hosts`` (added) take domains no other one has or wants, and no wildcard's.

    Then each claims its own domains whatever the order: they are built apart and inserted.
    """
    if state.shared.wildcards or state.shared.denied:
        return False
    layout = state.layout
    for host in hosts:
        if "*" in host or state.shared.registry.lookup(host) or layout.has(virtual_host_name(host, DEFAULT_HTTP_PORT)):
            return False
        if hosts & related_hosts(host, proxy_namespace=namespace) or _spelled_alike(
            state, host, registry=registry, namespace=namespace
        ):
            return False
    return True


def _virtual_service_changes(
    before: MeshConfig, after: MeshConfig
) -> tuple[dict[int, Resource[VirtualServiceSpec]], list[Resource[VirtualServiceSpec]], range] | None:
    """The VirtualServices changed in place (by index), those added at the end, the indexes of those removed (before).

    None when they changed more. An added one may not have TCP or TLS rules (their findings come before
    every other step's). Those removed are a run of neighbours (:func:`~reconciler.translate.memo.changed_items`);
    some may go and others come in one commit.
    """
    olds, news = before.virtual_services, after.virtual_services
    if len(olds) == len(news):
        positions = replaced_positions(olds, news)
        if all(
            olds[index] == news[index] or _vs_structure(olds[index]) == _vs_structure(news[index])
            for index in positions
        ):
            return {index: news[index] for index in positions if olds[index] != news[index]}, [], range(0)
    changes = changed_items(olds, news, limit=_ADDED_HOSTS)
    if changes is None:
        return None
    added = [new for old, new in changes if old is None and new is not None]
    gone = sum(new is None for _, new in changes)
    if len(added) + gone != len(changes) or any(vs.spec.tcp or vs.spec.tls for vs in added):
        return None
    # The common head ends where the removed run starts.
    start = next(itertools.compress(itertools.count(), map(operator.is_not, olds, news)), len(news))
    return {}, added, range(start, start + gone)


def _step_events(
    step: SidecarStep,
    vs: Resource[VirtualServiceSpec],
    *,
    routes: RouteBuilder,
    vhosts: dict[int, bytes],
    layout: RouteLayout,
) -> tuple[_Event, ...]:
    """Take ``step`` again with the changed ``vs``: its events, and (into ``vhosts``) its virtual host's new bytes."""
    if step.kind == "routes":
        built = routes.routes(vs, listener_port=step.listener_port)
        entry = routes.last_entry()
        assert entry is not None
        if step.vhost is not None:
            position = layout.position(step.vhost)
            data = virtual_host(name=step.vhost, domains=step.domains, routes=built).SerializeToString(
                deterministic=True
            )
            if data != layout.body(position):
                vhosts[position] = data
        return entry.events
    notes = Notes()
    recorded: list[NoteCall] = []
    notes.record(recorded)
    if step.kind == "l4":
        report_l4_routes(vs, notes)
    else:
        no_http_port(vs, step.host, notes)
    return tuple(recorded)


def _changed(
    snapshot: Snapshot, type_url: str, items: Mapping[str, XdsResource], *, into: dict[str, XdsResource]
) -> None:
    """The rebuilt ``items`` (encoded as made) ``into``, but for those with the bytes they had (kept as they were)."""
    kept = snapshot.sets[type_url].items
    for name, item in items.items():
        old = kept.get(name)
        if old is None or old.version != item.version:
            into[name] = item


def _rebuild(
    service: Service,
    position: int,
    *,
    built: ClusterSet,
    scope: Scope,
    cache: TranslationCache,
    into: dict[int, tuple[NoteCall, ...]],
) -> bool:
    """Build ``service``'s clusters (at ``position`` in the proxy's services) into ``built``, its notes ``into``.

    False when the cache did not keep what it built (the notes are read from there).
    """
    built.add_service(service)
    rule = scope.destination_rule(service.host, service_namespace=service.namespace)
    kept = cache.service_clusters(service, rule, report_ports=True)
    if kept is None:
        return False
    if kept.notes:
        into[position] = tuple(kept.notes)
    else:
        into.pop(position, None)
    return True


def _rule_hosts(before: DestinationRules, changes: Sequence[RuleChange]) -> dict[str, DestinationRules]:
    """The hosts (resolved) whose DestinationRules ``changes`` touch, each with the index ``before`` them."""
    return {
        resolve_host(rule.spec.host, rule.namespace): before for pair in changes for rule in pair if rule is not None
    }


def _asking(steps: Sequence[SidecarStep | None], names: AbstractSet[str]) -> list[int]:
    """The steps that ask for a cluster of ``names``."""
    hosts = {name.rsplit("|", 1)[-1] for name in names}
    return [
        index
        for index, step in enumerate(steps)
        if step is not None
        and any(
            isinstance(event, EnsureCall)
            and event.host in hosts
            and cluster_name(host=event.host, port=event.port, subset=event.subset) in names
            for event in step.events
        )
    ]


def _orphans(kept: Mapping[str, XdsResource], items: Mapping[str, XdsResource]) -> dict[str, XdsResource]:
    """The orphan clusters (or assignments) now asked for, reusing those kept with the same bytes."""
    out = {}
    for name, item in items.items():
        found = kept.get(name)
        out[name] = found if found is not None and found.version == item.version else item
    return out


def _newly_named(layout: RouteLayout, vhosts: Mapping[int, bytes]) -> set[str] | None:
    """The clusters the virtual hosts ``vhosts`` name that those they replace did not.

    None when a changed virtual host stops naming a cluster (another one may still name it: a full
    translation finds out).
    """
    added: set[str] = set()
    for position, data in vhosts.items():
        old_names = clusters_of_virtual_host(route_components_pb2.VirtualHost.FromString(layout.body(position)))
        new_names = clusters_of_virtual_host(route_components_pb2.VirtualHost.FromString(data))
        if not old_names <= new_names:
            return None
        added |= new_names - old_names
    return added


def _edited(names: frozenset[str], *, added: Collection[str], removed: Collection[str]) -> frozenset[str]:
    """``names`` with ``added`` (not among them) and without ``removed``: a copy only if anything changes."""
    if added and removed:
        return names.difference(removed).union(added)
    if added:
        return names.union(added)
    if removed:
        return names.difference(removed)
    return names


def _passes(
    state: SidecarState,
    layout: RouteLayout,
    changed: Mapping[str, Mapping[str, XdsResource]],
    vhosts: Sequence[bytes],
    passed: PassCache | None,
) -> bool:
    """Whether what changed breaks none of Envoy's constraints (the rest passed before); passes go to ``passed``."""
    fresh: list[tuple[str, str]] = []
    for type_url, items in changed.items():
        for item in items.values():
            if passed is not None and passed.known(type_url, item.version):
                continue
            if violations(item.message):
                return False
            fresh.append((type_url, item.version))
    for data in vhosts:
        key = (VIRTUAL_HOST, hashlib.sha256(data).hexdigest())
        if passed is not None and passed.known(*key):
            continue
        if violations(route_components_pb2.VirtualHost.FromString(data)):
            return False
        fresh.append(key)
    if passed is not None:
        for key in fresh:
            passed.add(*key)
        if layout is not state.layout:
            passed.add(ROUTE, layout.resource.version)
    return True


def _keys(snapshot: Snapshot, layout: RouteLayout) -> list[tuple[str, str]]:
    """Every pass a full translation's check of this snapshot would have met."""
    keys = [(type_url, item.version) for type_url in PUSH_ORDER for item in snapshot.sets[type_url].items.values()]
    keys.extend((VIRTUAL_HOST, found) for found in layout.digests())
    keys.append((ROUTE, layout.resource.version))
    return keys
