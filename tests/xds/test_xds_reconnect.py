"""A proxy that reconnects keeps what it holds: its new stream starts from what it last ACKed."""

from __future__ import annotations

import pytest
from test_xds_protocol import full_snapshot, names_in

from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE
from reconciler.xds.cache import SnapshotCache, SyncState

pytestmark = pytest.mark.timeout(20)


def remembering(clock: list[float] | None = None, *, nodes: int = 100) -> SnapshotCache:
    now = clock if clock is not None else [0.0]
    return SnapshotCache(clock=lambda: now[0], remember_nodes=nodes, remember_seconds=60.0)


async def _sync_and_leave(env, node_id: str = "node-1") -> None:
    """A stream that ACKs clusters, endpoints and routes of the current snapshot, then ends (LDS unasked)."""
    async with env.stream(node_id) as stream:
        await stream.ack(await stream.request(CLUSTER))
        await stream.ack(await stream.request(ENDPOINT, names=["v1", "v2"]), names=["v1", "v2"])
        await stream.ack(await stream.request(ROUTE, names=["main"]), names=["main"])
        await env.status_where(node_id, lambda s: s.types[ROUTE].state is SyncState.SYNCED)
    await env.cache.wait_until(lambda statuses: not statuses, timeout=5.0)


def test_first_clusters_after_a_reconnect_keep_those_the_routes_the_proxy_holds_still_use(ads) -> None:
    before = full_snapshot(weights={"v1": 90, "v2": 10})
    after = full_snapshot(weights={"v2": 100}, revision=1)

    async def scenario(env) -> None:
        env.publish(before)
        await _sync_and_leave(env)
        env.publish(after)  # while the proxy is away: v1 is gone, but its routes still send 90% there
        async with env.stream() as stream:
            clusters = await stream.request(CLUSTER)
            endpoints = await stream.request(ENDPOINT, names=["v1", "v2"])
            await stream.ack(clusters)
            await stream.ack(endpoints, names=["v1", "v2"])
            routes = await stream.request(ROUTE, names=["main"])
            await stream.ack(routes, names=["main"])
            clusters_after_routes_acked = await stream.recv()
        assert names_in(clusters) == {"v1", "v2"}
        assert names_in(endpoints) == {"v1", "v2"}
        assert names_in(clusters_after_routes_acked) == {"v2"}
        assert clusters_after_routes_acked.version_info == after.version_of(CLUSTER)

    ads.run(scenario, cache=remembering())


def test_a_new_stream_of_a_forgotten_node_starts_from_the_snapshot_alone(ads) -> None:
    clock = [0.0]
    before = full_snapshot(weights={"v1": 90, "v2": 10})
    after = full_snapshot(weights={"v2": 100}, revision=1)

    async def scenario(env) -> None:
        env.publish(before)
        await _sync_and_leave(env)
        clock[0] += 61.0  # past remember_seconds
        env.publish(after)
        async with env.stream() as stream:
            clusters = await stream.request(CLUSTER)
        assert names_in(clusters) == {"v2"}

    ads.run(scenario, cache=remembering(clock))


def test_memory_of_acked_config_is_bounded_oldest_node_forgotten_first(ads) -> None:
    before = full_snapshot(weights={"v1": 90, "v2": 10})
    after = full_snapshot(weights={"v2": 100}, revision=1)

    async def scenario(env) -> None:
        env.publish(before)
        await _sync_and_leave(env, "old")
        await _sync_and_leave(env, "new")
        env.publish(after)
        async with env.stream("old") as stream:
            forgotten = await stream.request(CLUSTER)
        async with env.stream("new") as stream:
            remembered = await stream.request(CLUSTER)
        assert names_in(forgotten) == {"v2"}
        assert names_in(remembered) == {"v1", "v2"}

    ads.run(scenario, cache=remembering(nodes=1))


def test_a_reconnected_proxy_is_synced_only_once_it_acks_on_its_new_stream(ads) -> None:
    snapshot = full_snapshot(weights={"v1": 90, "v2": 10})

    async def scenario(env) -> None:
        generation = env.publish(snapshot)
        await _sync_and_leave(env)
        async with env.stream() as stream:
            clusters = await stream.request(CLUSTER)
            status = await env.status_where("node-1", lambda s: CLUSTER in s.types)
            assert status.acked_generation == 0  # a restarted Envoy with the same id holds nothing
            await stream.ack(clusters)
            await stream.ack(await stream.request(ENDPOINT, names=["v1", "v2"]), names=["v1", "v2"])
            await stream.ack(await stream.request(LISTENER))
            await stream.ack(await stream.request(ROUTE, names=["main"]), names=["main"])
            await env.status_where("node-1", lambda s: s.acked_generation == generation)

    ads.run(scenario, cache=remembering())
