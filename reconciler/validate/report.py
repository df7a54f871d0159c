"""Building findings about one resource: the subject, file and line filled in from the resource.

Shared by the per-resource rules and the cross-resource analyzers so every finding
about a resource is located the same way (line of the field path, else of its nearest
ancestor, else of the document). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.model.config import Resource
from reconciler.model.text import quote
from reconciler.validate.findings import Code, Finding, Severity

__all__ = ["go_list", "go_quote", "resource_finding"]


def resource_finding(
    resource: Resource[Any],
    *,
    code: Code,
    path: str,
    message: str,
    severity: Severity = Severity.ERROR,
    hint: str = "",
) -> Finding:
    """A finding about ``resource`` at field ``path`` (``""`` for the whole document)."""
    return Finding(
        code=code,
        severity=severity,
        message=message,
        file=resource.source.file,
        line=resource.source.line_of(path),
        path=path,
        kind=resource.kind.value,
        namespace=resource.namespace,
        name=resource.name,
        hint=hint,
    )


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` writes it (double quotes, escapes), so messages read like istioctl's; shortened."""
    return quote(text, quoted_by=_json_string)


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def go_list(items: Sequence[Any]) -> str:
    """A slice as Go's ``%v`` writes it: ``[a b c]``."""
    return "[" + " ".join(str(item) for item in items) + "]"
