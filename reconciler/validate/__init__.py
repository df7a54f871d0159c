"""Validation of Istio networking config: schema decoding and cross-resource analysis.

Purely computational: no I/O, no clocks, no globals. Input is parsed YAML (with
source lines) or decoded resources; output is typed model objects and findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.model.config import Kind, MeshConfig, Resource
from reconciler.validate.analyze import analyze
from reconciler.validate.findings import Code, Finding, Severity, has_errors, sort_findings
from reconciler.validate.schema import decode_resource

__all__ = [
    "Code",
    "Finding",
    "Severity",
    "analyze",
    "build_config",
    "decode_resource",
    "has_errors",
    "sort_findings",
]


def build_config(resources: Sequence[Resource[Any]]) -> tuple[MeshConfig, list[Finding]]:
    """Assemble decoded resources into one config, reporting duplicates (same kind, namespace, name)."""
    findings: list[Finding] = []
    seen: dict[tuple[Kind, str, str], Resource[Any]] = {}
    by_kind: dict[Kind, list[Resource[Any]]] = {kind: [] for kind in Kind}
    for resource in resources:
        key = (resource.kind, resource.namespace, resource.name)
        first = seen.get(key)
        if first is not None:
            findings.append(
                Finding(
                    code=Code.DUPLICATE_RESOURCE,
                    severity=Severity.ERROR,
                    message=(
                        f"duplicate {resource.kind} {resource.ref}: "
                        f"already defined at {first.source.file}:{first.source.line}"
                    ),
                    file=resource.source.file,
                    line=resource.source.line_of("metadata.name"),
                    path="metadata.name",
                    kind=resource.kind.value,
                    namespace=resource.namespace,
                    name=resource.name,
                    hint="rename one of them or delete the copy",
                )
            )
            continue
        seen[key] = resource
        by_kind[resource.kind].append(resource)
    config = MeshConfig(
        virtual_services=tuple(by_kind[Kind.VIRTUAL_SERVICE]),
        destination_rules=tuple(by_kind[Kind.DESTINATION_RULE]),
        service_entries=tuple(by_kind[Kind.SERVICE_ENTRY]),
        gateways=tuple(by_kind[Kind.GATEWAY]),
        rollout_policies=tuple(by_kind[Kind.ROLLOUT_POLICY]),
    )
    return config, findings
