"""The entry point: a validated config and one proxy's identity in, that proxy's snapshot out.

Pure and deterministic: no I/O, no clock, no globals, no dependence on dict or set
iteration order of anything but the input. The same config, proxy and registry always give
a byte-identical snapshot (and so the same version).
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model.config import MeshConfig, Resource
from reconciler.model.gateway import GatewaySpec
from reconciler.model.lookup import selects
from reconciler.translate.clusters import ClusterSet
from reconciler.translate.gateway import build_gateway
from reconciler.translate.notes import Notes
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.registry import ServiceRegistry, build_registry
from reconciler.translate.routes import RouteBuilder
from reconciler.translate.scope import Scope
from reconciler.translate.sidecar import build_sidecar
from reconciler.translate.snapshot import Snapshot
from reconciler.validate.findings import Finding

__all__ = ["Translation", "resolve_role", "translate"]


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


def translate(config: MeshConfig, proxy: ProxyIdentity, *, registry: ServiceRegistry | None = None) -> Translation:
    """Translate ``config`` into the complete, consistent snapshot for ``proxy``.

    ``registry`` defaults to the services of the config's ServiceEntries
    (:func:`~reconciler.translate.registry.build_registry`). Every cluster of every
    service the proxy can see is included; the listeners and routes depend on the role.
    Raises :class:`~reconciler.errors.TranslationError` only if the snapshot would be
    inconsistent, which is a bug: what cannot be expressed becomes a finding instead.
    """
    if registry is None:
        registry = build_registry(config)
    role, gateways = resolve_role(config, proxy)
    notes = Notes()
    scope = Scope(config=config, registry=registry, namespace=proxy.namespace, labels=proxy.labels)
    clusters = ClusterSet(scope=scope, notes=notes, report_ports=role is ProxyRole.SIDECAR)
    routes = RouteBuilder(scope=scope, clusters=clusters, notes=notes)
    # Every visible service's clusters first: routes then find the clusters they name
    # already built, and only destinations outside the registry add clusters of their own.
    for service in scope.services():
        clusters.add_service(service)
    if role is ProxyRole.GATEWAY:
        listeners, route_configs = build_gateway(scope=scope, gateways=gateways, routes=routes, notes=notes)
    else:
        listener, route_config = build_sidecar(scope=scope, routes=routes, notes=notes, port=proxy.outbound_port)
        listeners, route_configs = [listener], [route_config]
    snapshot = Snapshot.build(
        clusters=clusters.clusters.values(),
        endpoints=clusters.assignments.values(),
        listeners=listeners,
        routes=route_configs,
    ).check()
    return Translation(
        snapshot=snapshot,
        findings=notes.result(),
        role=role,
        gateways=tuple(gw.ref for gw in gateways),
    )
