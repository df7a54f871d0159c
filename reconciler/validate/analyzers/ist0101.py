"""IST0101 ReferencedResourceNotFound: a gateway, host, port or subset that a VirtualService names does not exist.

Follows Istio's ``virtualservice.GatewayAnalyzer``, ``DestinationHostAnalyzer`` and
``DestinationRuleAnalyzer``, mirrors included. The service registry is the ServiceEntries
visible (``exportTo``) from the VirtualService's namespace; a host that may be a Kubernetes
Service (``*.svc.cluster.local``, which short names resolve to) is never reported missing,
because reconciler cannot see Kubernetes yet. A subset is looked up in the DestinationRule(s)
that translation uses for the host (``reconciler.model.lookup``, merged like Istio) for the
proxies that use the VirtualService: sidecars of its namespace (when it applies to the
mesh) and the gateways it binds to, in their namespaces. Not checked: sidecars of other
namespaces the VirtualService is exported to, which may use their own namespace's rule for
the host; for them an accepted subset can still become a cluster without endpoints
(translation then reports it).
"""

from __future__ import annotations

import difflib

from reconciler.model.config import Resource
from reconciler.model.hosts import gateway_ref, resolve_host
from reconciler.model.lookup import ROOT_NAMESPACE
from reconciler.model.text import quote
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.validate.analyzers.context import (
    AnalysisContext,
    RoutedDestination,
    may_be_kubernetes_service,
    routed_destinations,
)
from reconciler.validate.findings import Code, Finding
from reconciler.validate.report import go_quote, resource_finding

__all__ = ["analyze", "message"]

CODE = Code.REFERENCED_RESOURCE_NOT_FOUND


def message(reftype: str, refval: str) -> str:
    """Istio's template: ``Referenced %s not found: %q``."""
    return f"Referenced {reftype} not found: {go_quote(refval)}"


def analyze(context: AnalysisContext) -> list[Finding]:
    findings: list[Finding] = []
    for service in context.config.virtual_services:
        _check_gateways(context, service, findings)
        _check_destinations(context, service, findings)
    return findings


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _check_gateways(context: AnalysisContext, service: Resource[VirtualServiceSpec], findings: list[Finding]) -> None:
    for index, reference in enumerate(service.spec.gateways):
        if reference == "mesh":
            continue
        ref = gateway_ref(reference, service.namespace)
        if ref in context.gateways:
            continue
        namespace = ref.partition("/")[0]
        known = [g.name for g in context.config.gateways if g.namespace == namespace]
        hint = _did_you_mean(ref.partition("/")[2], known) or (
            f"no Gateway {ref} is defined; gateways in {namespace}: {', '.join(sorted(known))}"
            if known
            else f"no Gateway is defined in namespace {namespace}; write namespace/name for another namespace"
        )
        findings.append(
            resource_finding(
                service, code=CODE, path=f"spec.gateways[{index}]", message=message("gateway", reference), hint=hint
            )
        )


def _check_destinations(
    context: AnalysisContext, service: Resource[VirtualServiceSpec], findings: list[Finding]
) -> None:
    namespace = service.namespace
    for routed in routed_destinations(service.spec):
        destination = routed.destination
        entries = context.services_for(destination.host, namespace=namespace)
        resolved = resolve_host(destination.host, namespace)
        if not entries and not may_be_kubernetes_service(resolved):
            findings.append(
                resource_finding(
                    service,
                    code=CODE,
                    path=f"{routed.path}.host",
                    message=message("mirror host" if routed.mirror else "host", destination.host),
                    hint=f"no ServiceEntry visible from namespace {namespace} declares {resolved}; "
                    "add a ServiceEntry for it or fix the host",
                )
            )
        elif entries and destination.port is not None and destination.port.number is not None:
            declared = sorted({port.number for entry in entries for port in entry.spec.ports})
            if declared and destination.port.number not in declared:
                findings.append(
                    resource_finding(
                        service,
                        code=CODE,
                        path=f"{routed.path}.port.number",
                        message=message("host:port", f"{destination.host}:{destination.port.number}"),
                        hint=f"{destination.host} declares ports {', '.join(map(str, declared))}",
                    )
                )
        if destination.subset is not None:
            _check_subset(context, service, findings, routed=routed, host=destination.host, subset=destination.subset)


def _check_subset(
    context: AnalysisContext,
    service: Resource[VirtualServiceSpec],
    findings: list[Finding],
    *,
    routed: RoutedDestination,
    host: str,
    subset: str,
) -> None:
    resolved = resolve_host(host, service.namespace)
    for namespace in _proxy_namespaces(context, service):
        rules = context.rules_for(resolved, namespace=namespace)
        names = [s.name for rule in rules for s in rule.spec.subsets]
        if subset in names:
            continue
        where = "" if namespace == service.namespace else f" (for the gateway proxies in namespace {namespace})"
        if rules:
            hint = (
                _did_you_mean(subset, names)
                or f"DestinationRule {rules[0].ref} for {host} defines subsets: {', '.join(names) or '(none)'}"
            ) + where
        else:
            hint = (
                f"no DestinationRule for {host} applies in namespace {namespace} (rules are taken from that "
                f"namespace, the service's namespace or {ROOT_NAMESPACE});"
                f" define one with a subset named {quote(subset)}"
            )
        _report_subset(service, findings, routed=routed, host=host, subset=subset, hint=hint)
        return


def _proxy_namespaces(context: AnalysisContext, service: Resource[VirtualServiceSpec]) -> list[str]:
    """Namespaces of the proxies that use ``service``: its own (sidecars), then its gateways'."""
    namespaces: dict[str, None] = {}
    if service.spec.applies_to_mesh:
        namespaces[service.namespace] = None
    for reference in service.spec.gateways:
        if reference != "mesh" and (gateway := context.gateways.get(gateway_ref(reference, service.namespace))):
            namespaces.setdefault(gateway.namespace, None)
    return list(namespaces) or [service.namespace]


def _report_subset(
    service: Resource[VirtualServiceSpec],
    findings: list[Finding],
    *,
    routed: RoutedDestination,
    host: str,
    subset: str,
    hint: str,
) -> None:
    reftype = "mirror+subset in destinationrule" if routed.mirror else "host+subset in destinationrule"
    findings.append(
        resource_finding(
            service, code=CODE, path=f"{routed.path}.subset", message=message(reftype, f"{host}+{subset}"), hint=hint
        )
    )
