"""What Envoy's metrics_service sink sends, and how it becomes request and error counts. Pure.

Observed with Envoy 1.40 (``report_counters_as_deltas``, ``histogram_emit_mode: HISTOGRAM``,
``emit_tags_as_labels`` off), a route with ``retry_on: 5xx,connect-failure,reset`` and two
retries, 10 requests to each of four upstreams:

=================== ==================================================================
upstream            what ``cluster.<name>.*`` counted
=================== ==================================================================
503 half the time   ``upstream_rq_completed`` 10 and ``upstream_rq_2xx`` 10 (final answers
                    only: every request ended well), ``retry.upstream_rq_completed`` 9,
                    ``retry.upstream_rq_5xx`` 9 (the retried 503s), ``upstream_rq_retry`` 9
connection refused  ``upstream_cx_connect_fail`` 30, ``upstream_rq_retry`` 20, and the 10 final
                    local 503s as ``upstream_rq_5xx`` 10 / ``upstream_rq_completed`` 10;
                    no ``retry.*`` (nothing answered)
reset before reply  like refused: ``upstream_rq_retry`` 20, ``upstream_rq_5xx`` 10,
                    ``upstream_rq_completed`` 10 (``upstream_rq_rx_reset`` stays 0: it is
                    for HTTP/2 stream resets)
route timeout       ``upstream_rq_timeout`` 10 and the same 10 as ``upstream_rq_504`` /
                    ``upstream_rq_5xx`` / ``upstream_rq_completed``
=================== ==================================================================

So ``upstream_rq_*`` counts each request's *final* outcome, Envoy's own 503/504 for a
connect failure, reset or timeout included, and a retried attempt shows only in
``upstream_rq_retry`` (and, when an answer came, in ``retry.upstream_rq_*``). Summing
``upstream_cx_connect_fail``, ``upstream_rq_timeout`` or ``upstream_rq_rx_reset`` on top of
``upstream_rq_5xx`` would count final failures twice. Counted per attempt instead:

* requests = ``upstream_rq_completed`` + ``upstream_rq_retry``
* errors = ``upstream_rq_5xx`` + ``retry.upstream_rq_5xx`` + (``upstream_rq_retry`` -
  ``retry.upstream_rq_completed``), the last term being retried attempts that got no answer.

``upstream_rq_time`` is recorded for final answers from the upstream only. The sink sends it
per flush interval (not since start): Prometheus-style cumulative buckets (upper bound in ms →
samples at most that) over the samples of that interval, so buckets add up over flushes and
proxies. Attempts without a sample (retried, refused, timed out) count as slower than every
bucket in :func:`reconciler.rollout.analysis.slow_requests`, so a latency check counts them too.

Counters the proxy has touched are sent on every flush, zero deltas included; never-touched
ones are not. Names are flat (``cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_5xx``):
Envoy's tag extraction cuts such cluster names at their first dot, so labels are off and a
name is split on the known stat suffixes, longest first (``retry.upstream_rq_5xx`` before
``upstream_rq_5xx``). Envoy's ``external.``/``internal.`` variants then land on a cluster name
ending in ``.external``/``.internal``, which nobody asks for; a real cluster so named would
share Envoy's flat names with them anyway.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from reconciler.metrics.wire import MetricType
from reconciler.rollout.analysis import Counts
from reconciler.translate.bootstrap import CLUSTER_COUNTERS, CLUSTER_HISTOGRAM

__all__ = ["ClusterDelta", "cluster_deltas", "to_counts"]

_PREFIX = "cluster."
_COMPLETED, _5XX, _RETRY, _RETRY_COMPLETED, _RETRY_5XX = range(len(CLUSTER_COUNTERS))
# Longest first, so "retry.upstream_rq_5xx" is not read as cluster "<name>.retry", stat "upstream_rq_5xx".
_SUFFIXES = sorted(
    ((f".{name}", index) for index, name in enumerate((*CLUSTER_COUNTERS, CLUSTER_HISTOGRAM))),
    key=lambda suffix: -len(suffix[0]),
)
_HISTOGRAM_INDEX = len(CLUSTER_COUNTERS)


@dataclass(slots=True)
class ClusterDelta:
    """One cluster's change over one or more flushes: the counters in ``CLUSTER_COUNTERS`` order, and buckets."""

    counters: list[int] = field(default_factory=lambda: [0] * len(CLUSTER_COUNTERS))
    buckets: dict[float, int] = field(default_factory=dict)
    """Request time upper bound (ms) → requests that took at most that (cumulative)."""

    def add(self, other: ClusterDelta) -> None:
        self.counters = [mine + theirs for mine, theirs in zip(self.counters, other.counters, strict=True)]
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0) + count

    def is_zero(self) -> bool:
        return not any(self.counters) and not any(self.buckets.values())


def cluster_deltas(families: Iterable[Any]) -> dict[str, ClusterDelta]:
    """Per-cluster deltas from one StreamMetrics message's metric families; other stats are skipped."""
    deltas: dict[str, ClusterDelta] = {}
    for family in families:
        split = _split(family.name)
        if split is None or not family.metric:
            continue
        cluster, index = split
        metric = family.metric[0]  # without labels there is one metric per family
        if index == _HISTOGRAM_INDEX:
            if family.type != MetricType.HISTOGRAM or not metric.histogram.sample_count:
                continue
            buckets = {bucket.upper_bound: bucket.cumulative_count for bucket in metric.histogram.bucket}
            deltas.setdefault(cluster, ClusterDelta()).buckets = buckets
        elif family.type == MetricType.COUNTER and math.isfinite(value := metric.counter.value) and value > 0:
            # Zero deltas come every flush for every counter ever touched; NaN or negative would be a broken proxy.
            deltas.setdefault(cluster, ClusterDelta()).counters[index] = int(value)
    return deltas


def _split(name: str) -> tuple[str, int] | None:
    """``cluster.<cluster>.<stat>`` → (cluster, index of the stat), or None for any other stat."""
    if not name.startswith(_PREFIX):
        return None
    for suffix, index in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(_PREFIX) + len(suffix):
            return name[len(_PREFIX) : -len(suffix)], index
    return None


def to_counts(delta: ClusterDelta) -> Counts:
    """Requests, errors and request-time buckets per attempt (see the module docstring)."""
    counters = delta.counters
    requests = counters[_COMPLETED] + counters[_RETRY]
    unanswered_retries = max(0, counters[_RETRY] - counters[_RETRY_COMPLETED])
    # A retry counted in one flush and its answer in the next can tip a window's edge; a rate above 1 cannot be.
    errors = min(requests, counters[_5XX] + counters[_RETRY_5XX] + unanswered_retries)
    latency = {bound: min(count, requests) for bound, count in sorted(delta.buckets.items())}
    return Counts(requests=requests, errors=errors, latency=MappingProxyType(latency))
