"""IST0132 VirtualServiceHostNotFoundInGateway: none of a VirtualService's hosts is exposed by its Gateway.

As Istio's ``virtualservice.GatewayAnalyzer``: a Gateway server host ``ns/host`` applies
only to VirtualServices in ``ns`` (``.`` is the Gateway's namespace, ``*`` any namespace,
a bare host any namespace); the VirtualService is fine when any of its hosts overlaps any
applicable Gateway host. A Gateway that does not exist is IST0101's finding, not this one.
"""

from __future__ import annotations

from reconciler.model.config import Resource
from reconciler.model.gateway import GatewaySpec
from reconciler.model.hosts import gateway_ref, hosts_overlap, split_gateway_host
from reconciler.validate.analyzers.context import AnalysisContext
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.validate.report import go_list, resource_finding

__all__ = ["analyze", "gateway_hosts_for", "message"]


def message(hosts: tuple[str, ...], *, virtual_service: str, gateway: str) -> str:
    """Istio's template for VirtualServiceHostNotFoundInGateway."""
    return (
        f"one or more host {go_list(hosts)} defined in VirtualService {virtual_service} not found in Gateway {gateway}."
    )


def gateway_hosts_for(gateway: Resource[GatewaySpec], namespace: str) -> list[str]:
    """The hosts ``gateway`` exposes to VirtualServices in ``namespace``."""
    hosts: list[str] = []
    for server in gateway.spec.servers:
        for entry in server.hosts:
            host_namespace, host = split_gateway_host(entry, gateway.namespace)
            if host_namespace in ("*", namespace):
                hosts.append(host)
    return hosts


def analyze(context: AnalysisContext) -> list[Finding]:
    findings: list[Finding] = []
    for service in context.config.virtual_services:
        hosts = [host.lower() for host in service.spec.hosts]
        for index, reference in enumerate(service.spec.gateways):
            if reference == "mesh":
                continue
            gateway = context.gateways.get(gateway_ref(reference, service.namespace))
            if gateway is None:
                continue
            exposed = gateway_hosts_for(gateway, service.namespace)
            if any(hosts_overlap(gateway_host, host) for gateway_host in exposed for host in hosts):
                continue
            findings.append(
                resource_finding(
                    service,
                    code=Code.HOST_NOT_IN_GATEWAY,
                    severity=Severity.WARNING,
                    path=f"spec.gateways[{index}]",
                    message=message(service.spec.hosts, virtual_service=service.ref, gateway=gateway.ref),
                    hint=(
                        f"Gateway {gateway.ref} exposes {', '.join(exposed)} to namespace {service.namespace}"
                        if exposed
                        else f"Gateway {gateway.ref} exposes no hosts to namespace {service.namespace}"
                    )
                    + "; add the host to a server's hosts or fix the VirtualService's hosts",
                )
            )
    return findings
