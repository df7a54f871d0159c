"""The daemon's Prometheus metrics, served at ``/metrics``.

Named like other controllers' (``*_total``, ``*_seconds``). Rollouts' phase and step are read from the
controller at each scrape, like kube-state-metrics' phase gauges: one series per phase, 1 for the current.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.engine.rollouts import DecisionRecord, RolloutController
from reconciler.rollout.decide import Action, Phase
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
        self.rollout_rollbacks = Counter(
            "reconciler_rollout_rollbacks_total",
            "Rollouts rolled back by their analysis or a NACK (RolledBack; not a user's abort).",
            ["namespace", "policy"],
            registry=self.registry,
        )
        self.rollout_promotions = Counter(
            "reconciler_rollout_promotions_total",
            "Rollouts promoted to git's weights: every proxy ACKed them (Succeeded).",
            ["namespace", "policy"],
            registry=self.registry,
        )
        self.rollout_decisions = Counter(
            "reconciler_rollout_decisions_total",
            "Rollout decisions that changed something, by action (holds that change nothing are not counted).",
            ["namespace", "policy", "action"],
            registry=self.registry,
        )
        proxies = Gauge("reconciler_proxies_connected", "Proxies with an open ADS stream.", registry=self.registry)
        proxies.set_function(lambda: len(cache.statuses()))
        cache.add_listener(self._on_xds_event)

    def _on_xds_event(self, event: XdsEvent) -> None:
        if event.kind in (EventKind.PUSH, EventKind.ACK, EventKind.NACK):
            self.xds_events.labels(SHORT_NAMES.get(event.type_url, event.type_url), event.kind.value).inc()

    def watch_rollouts(self, controller: RolloutController) -> None:
        """Count ``controller``'s decisions, and show its rollouts' phase and step at every scrape."""
        controller.add_listener(self._on_decision)
        self.registry.register(_RolloutCollector(controller))

    def watch_drift(self, drifted: Callable[[], Mapping[str, bool]]) -> None:
        """Show ``reconciler_drift_detected{node_id}`` at every scrape: 1 for a proxy drifted now, else 0."""
        self.registry.register(_DriftCollector(drifted))

    def watch_leader(self, *, is_leader: Callable[[], bool], transitions: Callable[[], int]) -> None:
        """With leader election: ``reconciler_leader`` (1 on the replica holding the Lease, else 0) and
        ``reconciler_leader_transitions_total`` (the Lease's ``leaseTransitions``: changes of holder, cluster-wide)."""
        self.registry.register(_LeaderCollector(is_leader=is_leader, transitions=transitions))

    def _on_decision(self, entry: DecisionRecord) -> None:
        namespace, name = _split(entry.policy)
        record = entry.record
        self.rollout_decisions.labels(namespace, name, record.action.value).inc()
        if record.action is Action.ROLL_BACK and record.phase is Phase.ROLLED_BACK:
            self.rollout_rollbacks.labels(namespace, name).inc()
        elif record.phase is Phase.SUCCEEDED:
            self.rollout_promotions.labels(namespace, name).inc()


class _RolloutCollector(Collector):
    """``reconciler_rollout_phase`` and ``reconciler_rollout_step`` of the head revision's rollouts."""

    def __init__(self, controller: RolloutController) -> None:
        self._controller = controller

    def collect(self) -> Iterator[GaugeMetricFamily]:
        phase = GaugeMetricFamily(
            "reconciler_rollout_phase",
            "The rollout's phase: 1 for the current one, 0 for every other.",
            labels=["namespace", "policy", "phase"],
        )
        step = GaugeMetricFamily(
            "reconciler_rollout_step",
            "The rollout's step, 0-based; the number of steps means git's weights.",
            labels=["namespace", "policy"],
        )
        for view in self._controller.views():
            namespace, name = _split(view.policy)
            for each in Phase:
                phase.add_metric([namespace, name, each.value], 1.0 if each is view.state.phase else 0.0)
            step.add_metric([namespace, name], float(view.state.step))
        yield phase
        yield step


class _DriftCollector(Collector):
    """``reconciler_drift_detected`` per connected proxy its drift check has seen."""

    def __init__(self, drifted: Callable[[], Mapping[str, bool]]) -> None:
        self._drifted = drifted

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "reconciler_drift_detected",
            "1 while the proxy runs other than it ACKed (its latest drift check), else 0.",
            labels=["node_id"],
        )
        for node_id, drifted in sorted(self._drifted().items()):
            gauge.add_metric([node_id], 1.0 if drifted else 0.0)
        yield gauge


class _LeaderCollector(Collector):
    """Read from the elector at each scrape, like client-go's ``leader_election_master_status``."""

    def __init__(self, *, is_leader: Callable[[], bool], transitions: Callable[[], int]) -> None:
        self._is_leader = is_leader
        self._transitions = transitions

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily(
            "reconciler_leader", "1 while this replica holds the leader Lease, else 0.", value=float(self._is_leader())
        )
        yield CounterMetricFamily(
            "reconciler_leader_transitions",
            "Changes of the Lease's holder (its leaseTransitions), as this replica last read it.",
            value=float(self._transitions()),
        )


def _split(policy: str) -> tuple[str, str]:
    namespace, _, name = policy.partition("/")
    return namespace, name
