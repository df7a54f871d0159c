"""IST0112 VirtualServiceDestinationPortSelectorRequired: a destination on a multi-port service names no port.

As Istio's ``DestinationHostAnalyzer``: when the ServiceEntry that declares the host has
more than one port, the destination (route or mirror) must say which one to use.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.validate.analyzers.context import AnalysisContext, routed_destinations
from reconciler.validate.findings import Code, Finding
from reconciler.validate.report import go_list, go_quote, resource_finding

__all__ = ["analyze", "message"]


def message(host: str, ports: Sequence[int]) -> str:
    """Istio's template for VirtualServiceDestinationPortSelectorRequired."""
    return (
        f"This VirtualService routes to a service {go_quote(host)} that exposes multiple ports {go_list(ports)}. "
        "Specifying a port in the destination is required to disambiguate."
    )


def analyze(context: AnalysisContext) -> list[Finding]:
    findings: list[Finding] = []
    for service in context.config.virtual_services:
        for routed in routed_destinations(service.spec):
            destination = routed.destination
            if destination.port is not None:
                continue
            entries = context.services_for(destination.host, namespace=service.namespace)
            if not entries:
                continue
            # Istio uses the first matching ServiceEntry (exact hosts come before wildcards).
            ports = [port.number for port in entries[0].spec.ports]
            if len(ports) > 1:
                findings.append(
                    resource_finding(
                        service,
                        code=Code.DESTINATION_PORT_SELECTOR_REQUIRED,
                        path=f"{routed.path}.host",
                        message=message(destination.host, ports),
                        hint=f"add `port: {{number: {ports[0]}}}` (or another of {', '.join(map(str, ports))})",
                    )
                )
    return findings
