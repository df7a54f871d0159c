"""The daemon's Prometheus metrics, served at ``/metrics``.

Named like other controllers' (``*_total``, ``*_seconds``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reconciler.translate.snapshot import SHORT_NAMES
from reconciler.xds.cache import EventKind, SnapshotCache, XdsEvent

__all__ = ["DaemonMetrics"]


class DaemonMetrics:
    """Reconcile passes and their duration (the loop records them); xDS responses and proxies (from ``cache``)."""

    def __init__(self, *, cache: SnapshotCache) -> None:
        self.registry = CollectorRegistry()
        self.passes = Counter(
            "reconciler_reconcile_total", "Reconcile passes by result reason.", ["reason"], registry=self.registry
        )
        self.duration = Histogram(
            "reconciler_reconcile_duration_seconds", "Time one reconcile pass took.", registry=self.registry
        )
        self.xds_events = Counter(
            "reconciler_xds_responses_total",
            "xDS responses by type and proxy answer (push, ack, nack).",
            ["type", "event"],
            registry=self.registry,
        )
        proxies = Gauge("reconciler_proxies_connected", "Proxies with an open ADS stream.", registry=self.registry)
        proxies.set_function(lambda: len(cache.statuses()))
        cache.add_listener(self._on_xds_event)

    def _on_xds_event(self, event: XdsEvent) -> None:
        if event.kind in (EventKind.PUSH, EventKind.ACK, EventKind.NACK):
            self.xds_events.labels(SHORT_NAMES.get(event.type_url, event.type_url), event.kind.value).inc()
