"""Cross-resource analyzers, one module per analyzer code (Istio's, then our RC codes).

Each is ``analyze(context) -> findings``.

Codes, levels and message wording follow Istio's analyzer catalogue. Every analyzer
reads a shared :class:`AnalysisContext` whose host indexes are built once, so a whole
config is analysed in time roughly linear in its size. Pure.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.validate.analyzers import (
    ist0101,
    ist0109,
    ist0112,
    ist0130_0131,
    ist0132,
    ist0145,
    ist0173,
    ist0174,
    rc0401,
)
from reconciler.validate.analyzers.context import AnalysisContext
from reconciler.validate.findings import Finding

__all__ = ["ANALYZERS", "AnalysisContext", "Analyzer"]

Analyzer = Callable[[AnalysisContext], list[Finding]]

#: Every analyzer, in code order (Istio's codes, then ours).
ANALYZERS: tuple[Analyzer, ...] = (
    ist0101.analyze,
    ist0109.analyze,
    ist0112.analyze,
    ist0130_0131.analyze,
    ist0132.analyze,
    ist0145.analyze,
    ist0173.analyze,
    ist0174.analyze,
    rc0401.analyze,
)
