"""What Envoy would reject in a snapshot, as findings that point at the Istio field responsible.

Every resource of a snapshot is checked against Envoy's own proto constraints
(:mod:`reconciler.translate.constraints`) before anyone may publish it. A violation is
reported at the Istio resource and field the translator built that Envoy resource from
(asked of a ``locate`` function the translator provides); where no Istio source is known,
the finding names the Envoy resource and field path instead. Validation rules catch the
common cases first with friendlier words: these findings are the safety net. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.model.config import Resource
from reconciler.model.source import SourceInfo
from reconciler.translate.constraints import violations
from reconciler.translate.registry import Origin
from reconciler.translate.snapshot import PUSH_ORDER, Snapshot
from reconciler.validate.findings import Code, Finding, Severity

__all__ = ["Locate", "Source", "envoy_findings"]

#: An Istio resource (or registry origin) and a field path in it.
Source = tuple[Resource[Any] | Origin, str]
#: (xDS type URL, resource name, resource, Envoy field path) → where it came from, if known.
Locate = Callable[[str, str, Any, str], Source | None]


def envoy_findings(snapshot: Snapshot, *, locate: Locate) -> list[Finding]:
    """An error finding (RC0203) per constraint an emitted resource breaks; empty when Envoy would accept all."""
    found: list[Finding] = []
    for type_url in PUSH_ORDER:
        for name, resource in snapshot.resources(type_url).items():
            for violation in violations(resource):
                kind = type_url.rsplit(".", 1)[-1]
                envoy_field = f"{kind} {name!r} {violation.path}"
                message = f"Envoy would reject {envoy_field}: {violation.message}"
                found.append(_finding(locate(type_url, name, resource, violation.path), message))
    return found


def _finding(source: Source | None, message: str) -> Finding:
    if source is None:
        return Finding(code=Code.ENVOY_WOULD_REJECT, severity=Severity.ERROR, message=message, file="", line=0)
    subject, path = source
    info: SourceInfo | None
    if isinstance(subject, Resource):
        kind, namespace, name, info = subject.kind.value, subject.namespace, subject.name, subject.source
    else:
        kind, namespace, name, info = subject.kind, subject.namespace, subject.name, subject.source
    return Finding(
        code=Code.ENVOY_WOULD_REJECT,
        severity=Severity.ERROR,
        message=message,
        file=info.file if info is not None else "",
        line=info.line_of(path) if info is not None else 0,
        path=path,
        kind=kind,
        namespace=namespace,
        name=name,
    )
