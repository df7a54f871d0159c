"""IST0174 UnknownDestinationRuleHost: a DestinationRule for a host no service declares.

As Istio's ``PodNotSelectedAnalyzer`` host check, against the registry reconciler can
see: ServiceEntries visible from the DestinationRule's namespace. A host that may be a
Kubernetes Service (under ``*.svc.cluster.local``; short names resolve there) is not
reported, because reconciler cannot see Kubernetes yet.
"""

from __future__ import annotations

from reconciler.model.hosts import resolve_host
from reconciler.validate.analyzers.context import AnalysisContext, may_be_kubernetes_service
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.validate.report import resource_finding

__all__ = ["analyze", "message"]


def message(host: str) -> str:
    """Istio's template for UnknownDestinationRuleHost."""
    return f"The host {host} defined in the DestinationRule does not match any services in the mesh."


def analyze(context: AnalysisContext) -> list[Finding]:
    findings: list[Finding] = []
    for rule in context.config.destination_rules:
        if may_be_kubernetes_service(resolve_host(rule.spec.host, rule.namespace)):
            continue
        if context.services_for(rule.spec.host, namespace=rule.namespace):
            continue
        findings.append(
            resource_finding(
                rule,
                code=Code.HOST_MATCHES_NO_SERVICE,
                severity=Severity.WARNING,
                path="spec.host",
                message=message(rule.spec.host),
                hint=f"add a ServiceEntry for {rule.spec.host} (visible from namespace {rule.namespace}) "
                "or fix the host",
            )
        )
    return findings
