"""The entry point: a validated config and one proxy's identity in, that proxy's snapshot out.

Pure and deterministic: no I/O, no clock, no globals, no dependence on dict or set
iteration order of anything but the input. The same config, proxy and registry always give
a byte-identical snapshot (and so the same version).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from envoy.config.route.v3 import route_components_pb2, route_pb2

from reconciler.errors import TranslationError
from reconciler.model.config import MeshConfig, Resource
from reconciler.model.gateway import GatewaySpec
from reconciler.model.lookup import selects
from reconciler.translate.clusters import ClusterSet
from reconciler.translate.envoy_check import VIRTUAL_HOST, PassCache, Source, envoy_findings
from reconciler.translate.gateway import build_gateway
from reconciler.translate.memo import TranslationCache
from reconciler.translate.notes import NoteCall, Notes
from reconciler.translate.patch import SidecarState, patch, record
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.registry import Origin, ServiceRegistry, build_registry
from reconciler.translate.routes import RouteBuilder
from reconciler.translate.scope import Scope
from reconciler.translate.sidecar import RouteTable, SidecarStep, sidecar_routes
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, ResourceSet, Snapshot, resource_name
from reconciler.validate.findings import Finding

__all__ = [
    "Checked",
    "ProxyShape",
    "Translation",
    "check_representatives",
    "proxy_shape",
    "representative_proxies",
    "resolve_role",
    "translate",
]

#: What a proxy's snapshot of one config depends on: labels, resolved role, namespace, and (sidecars only) the port.
ProxyShape = tuple[tuple[tuple[str, str], ...], ProxyRole, str, int | None]


@dataclass(frozen=True, slots=True)
class Translation:
    """A proxy's snapshot, the role it was built for, and what could not be translated."""

    snapshot: Snapshot
    findings: tuple[Finding, ...]
    role: ProxyRole
    #: ``namespace/name`` of the Gateways that selected the proxy (empty for sidecars).
    gateways: tuple[str, ...] = ()


def resolve_role(config: MeshConfig, proxy: ProxyIdentity) -> tuple[ProxyRole, list[Resource[GatewaySpec]]]:
    """The proxy's role and the Gateways it implements.

    An explicit role wins. Without one, a proxy is a gateway when a Gateway's (non-empty)
    selector matches its labels: an empty selector would otherwise turn every sidecar into
    a gateway. Once a gateway, every Gateway whose selector matches applies, as in Istio.
    """
    if proxy.role is ProxyRole.SIDECAR:
        return ProxyRole.SIDECAR, []
    matching = [gw for gw in config.gateways if selects(gw.spec.selector, proxy.labels)]
    if proxy.role is ProxyRole.GATEWAY:
        return ProxyRole.GATEWAY, matching
    if any(gw.spec.selector for gw in matching):
        return ProxyRole.GATEWAY, matching
    return ProxyRole.SIDECAR, []


def translate(
    config: MeshConfig,
    proxy: ProxyIdentity,
    *,
    registry: ServiceRegistry | None = None,
    passed: PassCache | None = None,
    cache: TranslationCache | None = None,
) -> Translation:
    """Translate ``config`` into the complete, consistent snapshot for ``proxy``.

    ``registry`` defaults to the services of the config's ServiceEntries
    (:func:`~reconciler.translate.registry.build_registry`). Every cluster of every
    service the proxy can see is included; the listeners and routes depend on the role.
    Raises :class:`~reconciler.errors.TranslationError` only if the snapshot would be
    inconsistent, which is a bug: what cannot be expressed becomes a finding instead.
    ``passed`` skips the Envoy-constraint check of resources that passed it before. ``cache`` reuses
    the work of earlier translations (of this config for other proxies, or of earlier configs) where
    its inputs are equal (:class:`~reconciler.translate.memo.TranslationCache`): the result is the same.
    """
    role, gateways = resolve_role(config, proxy)
    # A sidecar's shape keys its patch state in the cache (read here, kept below).
    shape = proxy_shape(config, proxy) if cache is not None and role is ProxyRole.SIDECAR else None
    if shape is not None and cache is not None:
        patched = _patch(config, proxy, shape=shape, registry=registry, cache=cache, passed=passed)
        if patched is not None:
            return patched
    if cache is not None:
        cache.begin(config)
    if registry is None:
        registry = cache.registry(config) if cache is not None else build_registry(config)
    notes = Notes()
    scope = _scope(config, proxy, registry=registry, cache=cache)
    clusters = ClusterSet(scope=scope, notes=notes, report_ports=role is ProxyRole.SIDECAR, cache=cache)
    routes = RouteBuilder(scope=scope, clusters=clusters, notes=notes, cache=cache)
    # Every visible service's clusters first: routes then find the clusters they name
    # already built, and only destinations outside the registry add clusters of their own.
    services = scope.services()
    # A cache keeps what a sidecar's translation did, for patching the next one (see patch.py).
    steps: list[SidecarStep] | None = [] if cache is not None and role is ProxyRole.SIDECAR else None
    service_notes: dict[int, tuple[NoteCall, ...]] = {}
    if steps is None:
        for service in services:
            clusters.add_service(service)
    else:
        journal: list[NoteCall] = []
        notes.journal = journal
        for index, service in enumerate(services):
            clusters.add_service(service)
            if journal:
                service_notes[index] = tuple(journal)
                journal.clear()
        notes.journal = None
    # Interned: every shape of a config has the same services, so the same clusters (and the next config likely too).
    base = cache.names(frozenset(clusters.cluster_items)) if steps is not None and cache is not None else frozenset()
    table: RouteTable | None = None
    # Route configurations whose routes passed Envoy's constraints as templates, and their own fields too.
    passing: set[str] = set()
    if role is ProxyRole.GATEWAY:
        listeners, route_configs = build_gateway(
            scope=scope, gateways=gateways, routes=routes, notes=notes, passing=passing
        )
    else:
        listener, table = sidecar_routes(
            scope=scope,
            routes=routes,
            notes=notes,
            port=proxy.outbound_port,
            steps=steps,
            names=cache.names if cache is not None else None,
        )
        listeners, route_configs = [listener], []
    snapshot = Snapshot.build(
        clusters=clusters.cluster_items.values(),
        endpoints=clusters.assignment_items.values(),
        listeners=listeners,
        routes=route_configs,
        shared_set=cache.resource_set if cache is not None else ResourceSet.build,
        names=cache.names if cache is not None else None,
    )
    if table is not None:
        # The sidecar's route table comes serialized; what it names is checked with the rest.
        with_routes = snapshot.patched({ROUTE: table.resource_set()}, requires={})
        assert with_routes is not None
        snapshot = with_routes
    snapshot = snapshot.check()
    if table is not None and table.passes:
        passing.add(table.resource.name)
        if passed is not None:
            for digest in table.digests():
                passed.add(VIRTUAL_HOST, digest)
    refused = envoy_findings(
        _left_to_check(snapshot, passing=passing, passed=passed),
        locate=_Locator(scope=scope, routes=routes, gateways=gateways),
        passed=passed,
    )
    if refused:
        raise TranslationError(
            f"Envoy would reject {len(refused)} value(s) of this config, first: {refused[0].format()}",
            findings=refused,
        )
    # What only this proxy's shape uses stays as bytes: its route table as a message is megabytes (clusters are shared).
    snapshot = snapshot.shed((LISTENER, ROUTE))
    findings = notes.result()
    if steps is not None and cache is not None and shape is not None:
        state = record(
            config=config,
            registry=registry,
            services=services,
            service_notes=service_notes,
            clusters=clusters,
            base_clusters=base,
            steps=steps,
            snapshot=snapshot,
            findings=findings,
            cache=cache,
            # Shapes differing only in outbound port share what they record alike.
            kin=shape[:-1],
            route_hashes=table.hashes if table is not None else None,
        )
        cache.keep_sidecar_state(shape, state, services=len(state.shared.services))
    return Translation(
        snapshot=snapshot,
        findings=findings,
        role=role,
        gateways=tuple(gw.ref for gw in gateways),
    )


def _left_to_check(snapshot: Snapshot, *, passing: set[str], passed: PassCache | None) -> Snapshot:
    """``snapshot`` without the route configurations in ``passing`` (their routes passed as templates while built).

    Those count as passed in ``passed``, as if the check had met them.
    """
    if not passing:
        return snapshot
    routes = snapshot.sets[ROUTE]
    left = [routes.resources[name] for name in routes.resources if name not in passing]
    kept = ResourceSet.build(ROUTE, left, encode=lambda _, message: routes.items[resource_name(message)])
    without = snapshot.patched({ROUTE: kept}, requires={})
    assert without is not None  # nothing is required
    if passed is not None:
        for name in passing:
            passed.add(ROUTE, routes.items[name].version)
    return without


def _scope(
    config: MeshConfig, proxy: ProxyIdentity, *, registry: ServiceRegistry, cache: TranslationCache | None
) -> Scope:
    return Scope(
        config=config,
        registry=registry,
        namespace=proxy.namespace,
        labels=proxy.labels,
        rules=cache.rules(config) if cache is not None else None,
    )


def _patch(
    config: MeshConfig,
    proxy: ProxyIdentity,
    *,
    shape: ProxyShape,
    registry: ServiceRegistry | None,
    cache: TranslationCache,
    passed: PassCache | None,
) -> Translation | None:
    """The sidecar's translation patched from the last one of its shape, if the change allows (see patch.py)."""
    state = cache.sidecar_state(shape)
    if not isinstance(state, SidecarState):
        return None
    # A patch reads only what changed: the cache's generations are not advanced (see TranslationCache.begin).
    registry = registry if registry is not None else cache.registry(config)
    scope = _scope(config, proxy, registry=registry, cache=cache)
    patched = patch(state, config, registry=registry, scope=scope, cache=cache, passed=passed)
    if patched is None:
        return None
    cache.keep_sidecar_state(shape, patched, services=len(patched.shared.services))
    return Translation(snapshot=patched.snapshot, findings=patched.shared.findings, role=ProxyRole.SIDECAR)


def representative_proxies(config: MeshConfig) -> list[ProxyIdentity]:
    """Proxies whose snapshots together hold every route and cluster the config can produce.

    A sidecar in each namespace the config uses (what a namespace sees depends on exportTo)
    and a gateway for each Gateway's selector; used to check a config before any real proxy
    asks for it.
    """
    resources: tuple[Resource[Any], ...] = (
        *config.virtual_services,
        *config.destination_rules,
        *config.service_entries,
        *config.gateways,
    )
    namespaces = sorted({resource.namespace for resource in resources})
    proxies = [
        ProxyIdentity(node_id=f"check-sidecar.{namespace}", namespace=namespace, role=ProxyRole.SIDECAR)
        for namespace in namespaces
    ]
    selectors: dict[tuple[str, tuple[tuple[str, str], ...]], None] = {}
    for gateway in config.gateways:
        selectors.setdefault((gateway.namespace, tuple(sorted((gateway.spec.selector or {}).items()))), None)
    proxies.extend(
        ProxyIdentity(
            node_id=f"check-gateway.{namespace}", namespace=namespace, labels=dict(labels), role=ProxyRole.GATEWAY
        )
        for namespace, labels in selectors
    )
    return proxies


def proxy_shape(config: MeshConfig, proxy: ProxyIdentity) -> ProxyShape:
    """The key under which proxies get the same snapshot of ``config``: :func:`translate` reads nothing else.

    The role is the resolved one (a sidecar that states no role is a sidecar), and the outbound port
    counts only for sidecars (a gateway's listeners come from its Gateways).
    """
    role, _ = resolve_role(config, proxy)
    port = proxy.outbound_port if role is ProxyRole.SIDECAR else None
    return tuple(sorted(proxy.labels.items())), role, proxy.namespace, port


@dataclass(frozen=True, slots=True)
class Checked:
    """``config`` translated for :func:`representative_proxies`: what Envoy would reject, and the translations kept."""

    #: RC0203 error findings at the Istio field responsible, without repeats; empty when Envoy would accept it all.
    rejections: tuple[Finding, ...]
    #: The translations that passed, by :func:`proxy_shape`, made with the config's own registry (at most ``keep``).
    translations: Mapping[ProxyShape, Translation]
    #: What those translations could not express (warnings: a host without endpoints...), without repeats.
    notes: tuple[Finding, ...] = ()


def check_representatives(
    config: MeshConfig,
    *,
    keep: int,
    passed: PassCache | None = None,
    cache: TranslationCache | None = None,
    cluster_domain: str | None = None,
) -> Checked:
    """What Envoy would reject in any snapshot of ``config``, keeping up to ``keep`` of the translations made.

    Kept so that serving or diffing the config need not translate those shapes again; the bound holds
    memory to ``keep`` snapshots however many namespaces the config uses. Each distinct resource is
    checked against Envoy's constraints once (the shapes share most clusters): in ``passed`` when
    given (say, shared with the other side of a diff), else in one scoped to this call. The shapes
    share their per-service work in ``cache`` when given (say, kept across a daemon's passes), else in
    one scoped to this call. ``cluster_domain``: the config is served beside a cluster's Services
    (:meth:`ServiceRegistry.from_cluster`).
    """
    passed = passed if passed is not None else PassCache()
    cache = cache if cache is not None else TranslationCache()
    registry = cache.registry(config, cluster_domain=cluster_domain)
    found: dict[Finding, None] = {}
    notes: dict[Finding, None] = {}
    kept: dict[ProxyShape, Translation] = {}
    for proxy in representative_proxies(config):
        try:
            translation = translate(config, proxy, registry=registry, passed=passed, cache=cache)
        except TranslationError as error:
            if not error.findings:
                raise
            found.update(dict.fromkeys(error.findings))
            continue
        notes.update(dict.fromkeys(translation.findings))
        if len(kept) < keep:
            kept[proxy_shape(config, proxy)] = translation
    return Checked(rejections=tuple(found), translations=MappingProxyType(kept), notes=tuple(notes))


@dataclass(frozen=True, slots=True)
class _Locator:
    """Which Istio resource and field an emitted Envoy resource came from (for what Envoy would reject)."""

    scope: Scope
    routes: RouteBuilder
    gateways: list[Resource[GatewaySpec]]

    def __call__(self, type_url: str, name: str, resource: Any, envoy_path: str) -> Source | None:
        if type_url in (CLUSTER, ENDPOINT):
            # outbound|PORT|SUBSET|HOST: the host's DestinationRule shapes the cluster, its ServiceEntry the endpoints.
            host = name.rsplit("|", 1)[-1]
            rule = self.scope.destination_rule(host)
            if rule is not None and type_url == CLUSTER:
                return rule, "spec.trafficPolicy"
            service = self.scope.service(host)
            origin: Origin | None = service.origin if service is not None else None
            return (origin, "spec") if origin is not None else None
        if type_url == ROUTE and isinstance(resource, route_pb2.RouteConfiguration):
            return self._route_source(resource, envoy_path)
        if type_url == LISTENER and self.gateways:
            return self.gateways[0], "spec.servers"
        return None

    def _route_source(self, config: route_pb2.RouteConfiguration, envoy_path: str) -> Source | None:
        # virtual_hosts[V].routes[R]...: the HTTP rule that route was built from.
        parts = envoy_path.split(".", 2)
        if len(parts) < 2 or not parts[0].startswith("virtual_hosts[") or not parts[1].startswith("routes["):
            return None
        vhost = config.virtual_hosts[int(parts[0][len("virtual_hosts[") : -1])]
        route: route_components_pb2.Route = vhost.routes[int(parts[1][len("routes[") : -1])]
        return self.routes.source_of(route)
