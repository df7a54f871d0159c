"""Request counts per destination for progressive delivery, from the proxies themselves.

Every proxy bootstrapped by reconciler pushes its per-cluster statistics to the daemon's
gRPC port each ``stats_flush_interval`` (Envoy's ``envoy.stat_sinks.metrics_service``, see
:mod:`reconciler.translate.bootstrap`). Istio names subset clusters
``outbound|PORT|SUBSET|FQDN``, so each caller counts canary and stable apart, and the sum
over callers is what :mod:`reconciler.rollout.analysis` judges.

* :class:`MetricsProvider`: the interface rollouts read (a Prometheus provider fits it too);
* :class:`MetricsStore`: the built-in provider, bounded and thread-safe;
* :class:`MetricsService`: the StreamMetrics servicer feeding a store. The daemon wires it::

      store = MetricsStore()
      server = await start_server(cache=cache, address=..., services=[MetricsService(store).add_to])
      store.counts([canary_cluster, stable_cluster], since=window_start)

* :mod:`reconciler.metrics.envoy_stats`: which stats Envoy really sends, and how they count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from reconciler.metrics.service import MetricsService
from reconciler.metrics.store import DEFAULT_RETENTION_SECONDS, MetricsStore, ReportingProxy
from reconciler.rollout.analysis import Counts

__all__ = ["DEFAULT_RETENTION_SECONDS", "MetricsProvider", "MetricsService", "MetricsStore", "ReportingProxy"]


class MetricsProvider(Protocol):
    """Per-cluster counts since a time; the one question rollout analysis asks of any metrics backend."""

    def counts(self, clusters: Iterable[str], *, since: float) -> Mapping[str, Counts]:
        """For each of ``clusters`` (Envoy cluster names), what it served since ``since`` (seconds)."""
        ...
