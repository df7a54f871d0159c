"""IST0173 DestinationRuleSubsetNotSelectPods: a subset whose labels select none of the host's endpoints.

As Istio's ``destinationrule.PodNotSelectedAnalyzer``, with ServiceEntry endpoints in
place of pods (reconciler cannot see pods yet): checked only when every ServiceEntry
declaring the host lists its endpoints explicitly (``endpoints:`` with ``STATIC`` or DNS
resolution), so the endpoints and their labels are known. A subset selects an endpoint
when all its labels are on the endpoint.
"""

from __future__ import annotations

from reconciler.model.lookup import selects
from reconciler.validate.analyzers.context import AnalysisContext
from reconciler.validate.findings import Code, Finding
from reconciler.validate.report import resource_finding

__all__ = ["analyze", "message"]


def message(subset: str) -> str:
    """Istio's template for DestinationRuleSubsetNotSelectPods."""
    return (
        f"The Subset {subset} defined in the DestinationRule does not select any pods. "
        "Which may lead to 503 UH (NoHealthyUpstream)."
    )


def analyze(context: AnalysisContext) -> list[Finding]:
    findings: list[Finding] = []
    for rule in context.config.destination_rules:
        if not rule.spec.subsets:
            continue
        entries = context.services_for(rule.spec.host, namespace=rule.namespace)
        if not entries or any(
            not entry.spec.endpoints or entry.spec.resolution in (None, "NONE", "DYNAMIC_DNS") for entry in entries
        ):
            continue  # endpoints (and so their labels) are not all known
        endpoint_labels = [endpoint.labels or {} for entry in entries for endpoint in entry.spec.endpoints]
        for index, subset in enumerate(rule.spec.subsets):
            selector = subset.labels or {}
            if any(selects(selector, labels) for labels in endpoint_labels):
                continue
            shown = ", ".join(f"{key}={value}" for key, value in sorted(selector.items()))
            findings.append(
                resource_finding(
                    rule,
                    code=Code.SUBSET_SELECTS_NO_PODS,
                    path=f"spec.subsets[{index}].labels" if subset.labels else f"spec.subsets[{index}]",
                    message=message(subset.name),
                    hint=f"no endpoint of {', '.join(e.ref for e in entries)} has the labels {shown}",
                )
            )
    return findings
