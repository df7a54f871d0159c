"""CRD mode's hook into the engine: every served config handed to the cluster (``--sink kubernetes``).

:class:`KubernetesSink` is a :class:`~reconciler.engine.reconcile.ConfigSink`: for each config the
engine serves (a commit, a rollout step, a rollback, a restore) it submits the Istio objects the
config's revision holds, with the served weights, to an :class:`~reconciler.kube.apply.IstioApplier`;
the same config served again with new endpoints (``Engine.update_cluster``) changes no object
and is not submitted. A served generation is acknowledged (:meth:`KubernetesSink.all_acked`, what a
rollout step waits for and what makes it synced) once the API server accepted every write of the
submission that holds its objects; the engine hears of each acceptance (:meth:`KubernetesSink.add_listener`).
It reads the applier's state for status (one ``drift`` entry with source ``cluster``) and for
``/metrics`` (``reconciler_cluster_drift_detected{kind,namespace,name}``, beside the proxies'
``reconciler_drift_detected{node_id}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.api.document import API_SERVER, DriftDocument, DriftItem
from reconciler.engine.origin import Origin
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.kube.apply import IstioApplier
from reconciler.kube.istio import desired_objects
from reconciler.model.config import MeshConfig

__all__ = ["ClusterDriftCollector", "KubernetesSink"]


class KubernetesSink:
    """Submits each served config's Istio objects to ``applier``; reports its drift for status and metrics."""

    target = API_SERVER

    def __init__(self, applier: IstioApplier, *, default_namespace: str) -> None:
        self._applier = applier
        self._namespace = default_namespace
        self._last: tuple[MeshConfig, str] | None = None
        self._submitted = 0  # the generation of the latest submission: later ones until the next hold its objects

    def served(self, config: ConfigSnapshots, origin: Origin, *, generation: int) -> None:
        mesh, files = config.config, origin.revision.files
        if self._last is not None and self._last[0] is mesh and self._last[1] == origin.revision.config_tree:
            return  # the same config served again with the cluster's new endpoints: no object changes
        self._last = (mesh, origin.revision.config_tree)
        self._submitted = generation
        namespace = self._namespace
        self._applier.submit(
            lambda: desired_objects(mesh, files, default_namespace=namespace),
            label=origin.describe(),
            generation=generation,
        )

    def all_acked(self, generation: int) -> bool:
        """The API server accepted every write of ``generation``'s objects (or of a later config's).

        A generation served without a submission (new endpoints only) holds the objects of the
        latest submission, so that one's success acknowledges it.
        """
        applied = self._applier.applied_generation
        return applied > 0 and applied >= min(generation, self._submitted)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` each time the API server accepted a submission in full (:meth:`all_acked` may change)."""
        self._applier.add_listener(listener)

    def documents(self) -> tuple[DriftDocument, ...]:
        """The cluster's entry of the status document's ``drift`` list."""
        report = self._applier.report()
        items = tuple(
            DriftItem(
                type=item.ref.kind.value,
                name=f"{item.ref.namespace}/{item.ref.name}",
                kind=item.kind.value,
                detail=item.describe(),
            )
            for item in report.drift
        )
        version = self._applier.api_version
        return (
            DriftDocument(
                node_id="",
                source="cluster",
                state=report.state,
                message=report.message,
                live=f"watched ({version})" if version else "not watched yet",
                checked_at=report.checked_at,
                items=items,
                total=report.total,
                repushed_at=report.healed_at,
            ),
        )


class ClusterDriftCollector(Collector):
    """``reconciler_cluster_drift_detected{kind,namespace,name}``: 1 per applied object the cluster holds otherwise."""

    def __init__(self, applier: IstioApplier) -> None:
        self._applier = applier

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "reconciler_cluster_drift_detected",
            "1 while the cluster holds the Istio object other than git says (changed or deleted outside git), else 0.",
            labels=["kind", "namespace", "name"],
        )
        for ref, drifted in self._applier.drifted().items():
            gauge.add_metric([ref.kind.value, ref.namespace, ref.name], 1.0 if drifted else 0.0)
        yield gauge
