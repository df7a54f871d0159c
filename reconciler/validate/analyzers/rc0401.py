"""RC0401 ConflictingRolloutPolicies, and IST0101 for a RolloutPolicy target that does not exist.

A RolloutPolicy governs the VirtualServices its ``targets`` name, in its own namespace
(:func:`reconciler.model.rolloutpolicy.target_matches`). A target that matches no
VirtualService is Istio's ReferencedResourceNotFound (IST0101): the policy would silently
govern nothing. A VirtualService that two policies govern is an error of ours: which one
walks its weights would depend on file order.
"""

from __future__ import annotations

from typing import Any

from reconciler.model.config import Resource
from reconciler.model.rolloutpolicy import RolloutPolicySpec, target_matches
from reconciler.validate.analyzers import ist0101
from reconciler.validate.analyzers.context import AnalysisContext
from reconciler.validate.findings import Code, Finding
from reconciler.validate.report import resource_finding

__all__ = ["analyze"]


def analyze(context: AnalysisContext) -> list[Finding]:
    findings: list[Finding] = []
    governed_by: dict[tuple[str, str], Resource[RolloutPolicySpec]] = {}
    for policy in context.config.rollout_policies:
        in_namespace = [vs for vs in context.config.virtual_services if vs.namespace == policy.namespace]
        for index, target in enumerate(policy.spec.targets):
            path = f"spec.targets[{index}]"
            matched = [
                vs
                for vs in in_namespace
                if target_matches(target, namespace=policy.namespace, name=vs.name, hosts=vs.spec.hosts)
            ]
            if not matched:
                findings.append(_missing(policy, target.name, target.host, path, in_namespace))
            for service in matched:
                first = governed_by.setdefault((service.namespace, service.name), policy)
                if first is not policy:
                    findings.append(
                        resource_finding(
                            policy,
                            code=Code.CONFLICTING_ROLLOUT_POLICIES,
                            path=path,
                            message=f"VirtualService {service.ref} is already governed by RolloutPolicy {first.ref}",
                            hint="a VirtualService can be under one RolloutPolicy only: remove it from one of them",
                        )
                    )
    return findings


def _missing(
    policy: Resource[RolloutPolicySpec],
    name: str | None,
    host: str | None,
    path: str,
    candidates: list[Resource[Any]],
) -> Finding:
    known = sorted(vs.name for vs in candidates)
    return resource_finding(
        policy,
        code=Code.REFERENCED_RESOURCE_NOT_FOUND,
        path=f"{path}.name" if name is not None else f"{path}.host",
        message=ist0101.message("virtualservice" if name is not None else "virtualservice host", name or host or ""),
        hint=f"VirtualServices in namespace {policy.namespace}: {', '.join(known)}"
        if known
        else f"no VirtualService is defined in namespace {policy.namespace}; a policy governs its own namespace only",
    )
