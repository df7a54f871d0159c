"""Cross-resource analysis: one function runs every rule and every analyzer over a whole config. Pure."""

from __future__ import annotations

from reconciler.model.checkpoint import Checkpoint, no_checkpoint
from reconciler.model.config import MeshConfig
from reconciler.validate.analyzers import ANALYZERS, AnalysisContext
from reconciler.validate.findings import Finding
from reconciler.validate.rules import check_resource

__all__ = ["analyze"]


def analyze(config: MeshConfig, *, checkpoint: Checkpoint = no_checkpoint) -> list[Finding]:
    """Every finding about ``config``: per-resource rules (IST0106), then the analyzers (Istio codes).

    ``checkpoint`` is called before each resource's rules and before each analyzer.
    """
    findings: list[Finding] = []
    for resource in config.resources():
        checkpoint()
        findings.extend(check_resource(resource))
    context = AnalysisContext(config)
    for analyzer in ANALYZERS:
        checkpoint()
        findings.extend(analyzer(context))
    return findings
