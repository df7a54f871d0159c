"""A config Envoy rejects: NACKed, recorded with Envoy's reason, never resent, and traffic carries on.

Translation never produces a cluster Envoy refuses, so the test publishes a
SnapshotSource that hands out a doctored snapshot for one step: the translated one with
the v1 cluster turned into a ring-hash cluster whose minimum ring is larger than its
maximum. Then the good config comes back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import mesh_config, running_proxy, running_upstreams, running_xds
from envoy.config.cluster.v3 import cluster_pb2

from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.harness.envoy import free_port
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot
from reconciler.xds.cache import EventKind, SyncState

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(60)]

V1_CLUSTER = "outbound|80|v1|app.e2e.internal"


class WithBrokenCluster:
    """A SnapshotSource: the good snapshot, except that one cluster has settings Envoy refuses."""

    def __init__(self, good: ConfigSnapshots, cluster: str) -> None:
        self._good = good
        self._cluster = cluster

    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
        snapshot = self._good.snapshot_for(proxy)
        clusters = dict(snapshot.resources(CLUSTER))
        broken = cluster_pb2.Cluster()
        broken.CopyFrom(clusters[self._cluster])
        broken.lb_policy = cluster_pb2.Cluster.RING_HASH
        broken.ring_hash_lb_config.minimum_ring_size.value = 1000
        broken.ring_hash_lb_config.maximum_ring_size.value = 10
        clusters[self._cluster] = broken
        return Snapshot.build(
            clusters=clusters.values(),
            endpoints=snapshot.resources(ENDPOINT).values(),
            listeners=snapshot.resources(LISTENER).values(),
            routes=snapshot.resources(ROUTE).values(),
        ).check()


@pytest.mark.parametrize(
    ("role", "delta"),
    [(ProxyRole.GATEWAY, False), (ProxyRole.SIDECAR, False), (ProxyRole.SIDECAR, True)],
    ids=["gateway", "sidecar", "sidecar-delta"],
)
def test_a_config_envoy_rejects_is_nacked_recorded_not_resent_and_traffic_carries_on(
    role: ProxyRole, delta: bool, tmp_path: Path
) -> None:
    gateway_port = free_port()
    with running_upstreams() as upstreams, running_xds() as xds:
        good = ConfigSnapshots(
            config=mesh_config(["routing.yaml"], role=role, upstreams=upstreams, gateway_port=gateway_port)
        )
        first = xds.publish(good)
        with running_proxy(
            xds, role, generation=first, workdir=tmp_path / "envoy", gateway_port=gateway_port,
            serving_authority="v1only.e2e.test", delta=delta,
        ) as proxy:  # fmt: skip
            before = proxy.send(authority="split.e2e.test", count=200)
            good_clusters = good.snapshot_for(proxy.identity).version_of(CLUSTER)
            bad_source = WithBrokenCluster(good, V1_CLUSTER)
            bad_clusters = bad_source.snapshot_for(proxy.identity).version_of(CLUSTER)

            xds.publish(bad_source)
            rejected = xds.wait_for_node(proxy.node_id, lambda s: s.types[CLUSTER].state is SyncState.NACKED)
            # The same rejected content published again is not sent again.
            xds.publish(WithBrokenCluster(good, V1_CLUSTER))
            during = proxy.send(authority="split.e2e.test", count=200)
            v1_only = proxy.send(authority="v1only.e2e.test", count=50)
            dump = proxy.envoy.config_dump(resource="dynamic_active_clusters")
            cds_rejections = proxy.envoy.stat("cluster_manager.cds.update_rejected")

            last = xds.publish(good)
            # Well below Envoy's 15 s initial fetch timeout: a cluster waiting for endpoints the
            # server never resends would pass late instead of failing.
            recovered = xds.wait_acked(proxy.node_id, last, stop_on_nack=False, timeout=5.0)
            after = proxy.send(authority="v1only.e2e.test", count=50)

    nack = rejected.types[CLUSTER].last_nack
    assert nack is not None
    assert nack.version == bad_clusters
    assert "ring" in nack.message.lower(), f"Envoy's own reason is recorded: {nack.message!r}"
    assert rejected.acked_generation == first, "the proxy still runs the first generation"
    assert rejected.types[CLUSTER].version_acked == good_clusters
    assert cds_rejections >= 1

    cluster_pushes = [e.version for e in xds.events if e.kind is EventKind.PUSH and e.type_url == CLUSTER]
    assert cluster_pushes.count(bad_clusters) == 1, cluster_pushes
    assert [e.version for e in xds.events if e.kind is EventKind.NACK] == [bad_clusters]

    # Envoy kept the clusters it had: v1 still balances by least request, as translated.
    v1 = next(entry["cluster"] for entry in dump["configs"] if entry["cluster"]["name"] == V1_CLUSTER)
    assert v1.get("lb_policy") == "LEAST_REQUEST", v1

    # Traffic is answered as before the rejection, and after the good config is back.
    for result in (before, during):
        assert result.by_status == {200: 200}, result
        assert set(result.by_version) == {"v1", "v2"}
    assert v1_only.by_version == {"v1": 50}
    assert after.by_version == {"v1": 50}
    assert recovered.types[CLUSTER].state is SyncState.SYNCED
    assert recovered.types[CLUSTER].version_acked == good_clusters
