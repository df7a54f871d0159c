"""Per-resource rules beyond types: what Istio's own validation rejects (or warns about).

The schema decoder has already checked types, required fields, enums, one-ofs and value
ranges; these rules look at fields together, the way istio/istio ``pkg/config/validation``
does (``ValidateVirtualService``, ``ValidateDestinationRule``, ``ValidateGateway``,
``ValidateServiceEntry``). Each finding is code IST0106 (Istio's ``SchemaValidationError``),
error-level where Istio rejects the object and warning-level where Istio only warns.

One module per kind (``virtualservice``, ``destinationrule``, ``gateway``, ``serviceentry``,
``rolloutpolicy``), each with ``check_<kind>(checker, spec)``; ``checker`` holds what they
share. This package maps each kind to its rules. A few rules are stricter than Istio, where
this product has no other source of the information Istio would use (no Kubernetes yet);
the kind's module says which. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.model.config import Kind, Resource
from reconciler.validate.findings import Finding
from reconciler.validate.rules.checker import Checker
from reconciler.validate.rules.destinationrule import check_destination_rule
from reconciler.validate.rules.gateway import check_gateway
from reconciler.validate.rules.rolloutpolicy import check_rollout_policy
from reconciler.validate.rules.serviceentry import check_service_entry
from reconciler.validate.rules.virtualservice import check_virtual_service

__all__ = ["check_resource"]

_RULES: Mapping[Kind, Callable[[Checker, Any], None]] = {
    Kind.VIRTUAL_SERVICE: check_virtual_service,
    Kind.DESTINATION_RULE: check_destination_rule,
    Kind.GATEWAY: check_gateway,
    Kind.SERVICE_ENTRY: check_service_entry,
    Kind.ROLLOUT_POLICY: check_rollout_policy,
}


def check_resource(resource: Resource[Any]) -> list[Finding]:
    """Every rule finding about one decoded resource (IST0106, errors and warnings)."""
    check = Checker(resource)
    _RULES[resource.kind](check, resource.spec)
    return check.findings
