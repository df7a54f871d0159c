"""IST0109 ConflictingMeshGatewayVirtualServiceHosts: two mesh VirtualServices define the same host.

Sidecars cannot merge VirtualServices for one host, so which one wins is undefined.
As Istio's ``ConflictingMeshGatewayHostsAnalyzer``: hosts are resolved to FQDNs in the
VirtualService's namespace and scoped by its ``exportTo`` (two VirtualServices exported
to disjoint namespaces do not conflict). Every VirtualService in a conflict is reported.
"""

from __future__ import annotations

from reconciler.model.config import Resource
from reconciler.model.hosts import resolve_host
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.validate.analyzers.context import AnalysisContext
from reconciler.validate.findings import Code, Finding
from reconciler.validate.report import resource_finding

__all__ = ["analyze", "message"]


def message(virtual_services: str, host: str) -> str:
    """Istio's template for ConflictingMeshGatewayVirtualServiceHosts."""
    return (
        f"The VirtualServices {virtual_services} associated with mesh gateway define the same host {host} "
        "which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices "
        "into a single resource."
    )


def _scopes(service: Resource[VirtualServiceSpec]) -> list[str]:
    export_to = service.spec.export_to
    if not export_to or "*" in export_to:
        return ["*"]
    return sorted({service.namespace if entry == "." else entry for entry in export_to})


def analyze(context: AnalysisContext) -> list[Finding]:
    by_host: dict[tuple[str, str], list[Resource[VirtualServiceSpec]]] = {}
    for service in context.config.virtual_services:
        if not service.spec.applies_to_mesh:
            continue
        hosts = dict.fromkeys(resolve_host(host, service.namespace) for host in service.spec.hosts)
        for scope in _scopes(service):
            for host in hosts:
                by_host.setdefault((scope, host), []).append(service)
    findings: list[Finding] = []
    for (_, host), services in by_host.items():
        if len(services) < 2:
            continue
        names = ",".join(service.ref for service in services)
        for service in services:
            findings.append(
                resource_finding(
                    service,
                    code=Code.CONFLICTING_MESH_GATEWAY_HOSTS,
                    path="metadata.name",
                    message=message(names, host),
                    hint="merge their routes into one VirtualService per host",
                )
            )
    return findings
