"""Per-cluster request counts summed over every reporting proxy, kept per second for a bounded time.

Each flush a proxy pushes is a delta (counters and the interval's request-time histogram), so
summing needs no per-proxy baseline: what a proxy sent stays counted after its stream ends, and
a proxy that restarts simply starts sending deltas again. Per proxy the store only remembers
that it reports (node id, when it connected, when it last reported), dropped when its stream ends.

Bounded: totals live in one-second slots per cluster, only for seconds in which the cluster
saw requests, and slots older than ``retention`` are dropped; at most (clusters with traffic) times
``retention`` slots whatever the number of proxies. Thread-safe: the gRPC servicer records on
the asyncio loop while the engine may read from another thread.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.errors import UsageError
from reconciler.metrics.envoy_stats import ClusterDelta, to_counts
from reconciler.rollout.analysis import Counts

__all__ = ["DEFAULT_RETENTION_SECONDS", "MetricsStore", "ReportingProxy"]

#: Longer than the longest analysis interval a RolloutPolicy allows by default (``maxInterval`` 10m).
DEFAULT_RETENTION_SECONDS = 900.0
_SWEEP_EVERY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ReportingProxy:
    """A proxy with an open metrics stream."""

    node_id: str
    connected_at: float
    last_report_at: float | None


class _Slot:
    """The deltas of one cluster received in one second, and when the last of them arrived."""

    __slots__ = ("delta", "last_received", "second")

    def __init__(self, second: int) -> None:
        self.second = second
        self.last_received = float(second)
        self.delta = ClusterDelta()

    def add(self, delta: ClusterDelta, *, received: float) -> None:
        self.delta.add(delta)
        self.last_received = received


class MetricsStore:
    """Deltas in, per-cluster :class:`~reconciler.rollout.analysis.Counts` since a time out.

    Implements :class:`~reconciler.metrics.MetricsProvider`. ``clock`` gives seconds
    (``time.time`` by default); ``since`` arguments are on the same clock.
    """

    def __init__(self, *, retention: float = DEFAULT_RETENTION_SECONDS, clock: Callable[[], float] = time.time) -> None:
        if not retention > 0:
            raise UsageError(f"metrics retention must be positive, got {retention!r}")
        self._retention = retention
        self._clock = clock
        self._lock = threading.Lock()
        # Per cluster, oldest first: (second, last receipt in that second, the second's summed deltas).
        self._slots: dict[str, deque[_Slot]] = {}
        self._proxies: dict[int, ReportingProxy] = {}
        self._tokens = itertools.count(1)
        self._last_sweep = clock()

    def connect(self, node_id: str) -> int:
        """A proxy opened a stream; the token names that stream (a proxy may briefly have two)."""
        with self._lock:
            token = next(self._tokens)
            self._proxies[token] = ReportingProxy(node_id=node_id, connected_at=self._clock(), last_report_at=None)
            return token

    def disconnect(self, token: int) -> None:
        """The stream ended: forget the proxy; what it reported stays counted."""
        with self._lock:
            self._proxies.pop(token, None)

    def record(self, token: int, deltas: Mapping[str, ClusterDelta]) -> None:
        """Add one flush's per-cluster deltas, at the current second."""
        now = self._clock()
        second = math.floor(now)
        with self._lock:
            proxy = self._proxies.get(token)
            if proxy is not None:
                self._proxies[token] = ReportingProxy(proxy.node_id, proxy.connected_at, now)
            for cluster, delta in deltas.items():
                slots = self._slots.setdefault(cluster, deque())
                if not slots or slots[-1].second != second:
                    slots.append(_Slot(second))
                slots[-1].add(delta, received=now)
            if now - self._last_sweep >= _SWEEP_EVERY_SECONDS:
                self._sweep(now)

    def counts(self, clusters: Iterable[str], *, since: float) -> Mapping[str, Counts]:
        """Each cluster's counts from flushes received at or after ``since``, summed over proxies.

        Counts are kept per second: a second in which a flush arrived at or after ``since`` counts
        whole, so flushes up to a second before ``since`` may be included, and a flush covers the
        flush interval before it arrived. Clusters nobody reported are all zero.
        """
        result: dict[str, Counts] = {}
        with self._lock:
            for cluster in clusters:
                total = ClusterDelta()
                for slot in reversed(self._slots.get(cluster, ())):
                    if slot.last_received < since:
                        break
                    total.add(slot.delta)
                result[cluster] = to_counts(total)
        return MappingProxyType(result)

    def proxies(self) -> tuple[ReportingProxy, ...]:
        """Proxies with an open metrics stream, by node id."""
        with self._lock:
            return tuple(sorted(self._proxies.values(), key=lambda proxy: (proxy.node_id, proxy.connected_at)))

    def _sweep(self, now: float) -> None:
        oldest = math.floor(now - self._retention)
        for cluster in list(self._slots):
            slots = self._slots[cluster]
            while slots and slots[0].second < oldest:
                slots.popleft()
            if not slots:
                del self._slots[cluster]
        self._last_sweep = now
