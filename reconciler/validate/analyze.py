"""Cross-resource analysis: one function runs every rule and every analyzer over a whole config. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.model.checkpoint import Checkpoint, no_checkpoint
from reconciler.model.config import MeshConfig, Resource
from reconciler.model.lookup import DestinationRules
from reconciler.validate.analyzers import ANALYZERS, AnalysisContext
from reconciler.validate.findings import Finding
from reconciler.validate.rules import check_resource

__all__ = ["analyze"]


def analyze(
    config: MeshConfig,
    *,
    checkpoint: Checkpoint = no_checkpoint,
    check: Callable[[Resource[Any]], list[Finding]] = check_resource,
    rule_index: DestinationRules | None = None,
) -> list[Finding]:
    """Every finding about ``config``: per-resource rules (IST0106), then the analyzers (Istio codes).

    ``checkpoint`` is called before each resource's rules and before each analyzer. A caller that
    keeps work between configs passes ``check`` (:func:`check_resource`, remembered per resource)
    and ``rule_index`` (``config``'s DestinationRules indexed, as translation indexes them).
    """
    findings: list[Finding] = []
    for resource in config.resources():
        checkpoint()
        findings.extend(check(resource))
    context = AnalysisContext(config, rule_index=rule_index)
    for analyzer in ANALYZERS:
        checkpoint()
        findings.extend(analyzer(context))
    return findings
