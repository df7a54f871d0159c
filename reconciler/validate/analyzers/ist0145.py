"""IST0145 ConflictingGateways: two Gateways with the same selector and port serve overlapping hosts.

As Istio's ``gateway.ConflictingGatewayAnalyzer``: Gateways are grouped by workload
selector and server port; within a group a server host that overlaps a host of another
Gateway's server is a conflict (the proxy cannot tell which server a request is for).
Hosts are compared as hosts (``ns/`` prefixes aside); overlaps are found through a host
index, so a large group is not compared pair by pair.
"""

from __future__ import annotations

from reconciler.model.config import Resource
from reconciler.model.gateway import GatewaySpec
from reconciler.model.hosts import split_gateway_host
from reconciler.validate.analyzers.context import AnalysisContext, HostIndex
from reconciler.validate.findings import Code, Finding
from reconciler.validate.report import resource_finding

__all__ = ["analyze", "message", "selector_text"]


def message(gateways: str, *, selector: str, port: str, hosts: str) -> str:
    """Istio's template for ConflictingGateways."""
    return f"Conflict with gateways {gateways} (workload selector {selector}, port {port}, hosts {hosts})."


def selector_text(gateway: Resource[GatewaySpec]) -> str:
    """A selector as Kubernetes prints it: ``key=value`` pairs, sorted, comma-separated."""
    return ",".join(f"{key}={value}" for key, value in sorted((gateway.spec.selector or {}).items()))


def analyze(context: AnalysisContext) -> list[Finding]:
    groups: dict[tuple[str, int], HostIndex[Resource[GatewaySpec]]] = {}
    for gateway in context.config.gateways:
        selector = selector_text(gateway)
        for server in gateway.spec.servers:
            index = groups.setdefault((selector, server.port.number), HostIndex())
            for entry in server.hosts:
                index.add(split_gateway_host(entry, gateway.namespace)[1], gateway)
    findings: list[Finding] = []
    for gateway in context.config.gateways:
        selector = selector_text(gateway)
        for server_index, server in enumerate(gateway.spec.servers):
            group = groups[(selector, server.port.number)]
            others: dict[str, None] = {}
            for entry in server.hosts:
                for _, other in group.overlapping(split_gateway_host(entry, gateway.namespace)[1]):
                    if other.ref != gateway.ref:
                        others[other.ref] = None
            if not others:
                continue
            findings.append(
                resource_finding(
                    gateway,
                    code=Code.CONFLICTING_GATEWAYS,
                    path=f"spec.servers[{server_index}].hosts",
                    message=message(
                        ",".join(others), selector=selector, port=str(server.port.number), hosts=",".join(server.hosts)
                    ),
                    hint="serve each host on a port from one Gateway: merge the servers or give them distinct hosts",
                )
            )
    return findings
