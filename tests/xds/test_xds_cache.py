"""The snapshot cache on its own: publication, per-proxy status, waiting, events."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from reconciler.errors import TranslationError
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import CLUSTER, Snapshot
from reconciler.xds.cache import EventKind, SnapshotCache, SyncState, XdsEvent

pytestmark = pytest.mark.timeout(10)


def clusters(*names: str) -> Snapshot:
    return Snapshot.build(clusters=[cluster_pb2.Cluster(name=name) for name in names])


class PerNode:
    """Snapshots by node id; a node mapped to an exception fails translation."""

    def __init__(self, by_node: dict[str, Snapshot | Exception]) -> None:
        self.by_node = by_node

    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
        result = self.by_node[proxy.node_id]
        if isinstance(result, Exception):
            raise result
        return result


class Changes:
    """Counts on_change calls, as the server's stream would receive them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_connected_since_comes_from_the_clock() -> None:
    cache = SnapshotCache(clock=lambda: 1234.5)
    cache.connect(ProxyIdentity(node_id="a", labels={"app": "web"}), on_change=Changes())
    (status,) = cache.statuses()
    assert status.connected_since == 1234.5
    assert status.labels == {"app": "web"}


def test_publish_signals_only_proxies_whose_snapshot_changed() -> None:
    cache = SnapshotCache()
    cache.publish(PerNode({"a": clusters("x"), "b": clusters("y")}))
    a_changes, b_changes = Changes(), Changes()
    a = cache.connect(ProxyIdentity(node_id="a"), on_change=a_changes)
    cache.connect(ProxyIdentity(node_id="b"), on_change=b_changes)
    before = (a_changes.count, b_changes.count)
    cache.publish(PerNode({"a": clusters("x", "z"), "b": clusters("y")}))
    assert (a_changes.count - before[0], b_changes.count - before[1]) == (1, 0)
    assert a.snapshot == clusters("x", "z")


@pytest.mark.parametrize("failure", [TranslationError("no route for b"), KeyError("a bug in translation")])
def test_publish_that_cannot_build_every_snapshot_changes_nothing(failure: Exception) -> None:
    cache = SnapshotCache()
    first = cache.publish(PerNode({"a": clusters("x"), "b": clusters("y")}))
    a = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
    cache.connect(ProxyIdentity(node_id="b"), on_change=Changes())

    with pytest.raises(TranslationError):
        cache.publish(PerNode({"a": clusters("x", "new"), "b": failure}))

    assert cache.generation == first
    assert a.snapshot == clusters("x")
    assert [status.generation for status in cache.statuses()] == [first, first]
    late = cache.connect(ProxyIdentity(node_id="c"), on_change=Changes())
    assert late.snapshot is None  # the refused source was never made current


def test_proxy_connecting_on_a_running_loop_gets_its_snapshot_built_in_a_worker_thread() -> None:
    threads: list[str] = []

    class Recording(PerNode):
        def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
            threads.append(threading.current_thread().name)
            return super().snapshot_for(proxy)

    async def scenario() -> None:
        cache = SnapshotCache()
        cache.publish(Recording({"a": clusters("x")}))
        changes = Changes()
        connection = cache.connect(ProxyIdentity(node_id="a"), on_change=changes)
        await ready(connection)
        assert connection.snapshot == clusters("x")
        assert changes.count == 1

    asyncio.run(scenario())
    assert threads
    assert threading.main_thread().name not in threads


async def ready(connection: Any) -> None:
    """Wait (bounded) until a connection's first snapshot has been built off the loop."""
    for _ in range(500):
        if connection.snapshot is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the snapshot was never built")


def test_full_ack_is_tracked_by_generation_and_carries_over_unchanged_content() -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        first = cache.publish(PerNode({"a": clusters("x")}))
        connection = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
        await ready(connection)
        assert not await cache.wait_for_acks(first, timeout=0.05)
        connection.record_snapshot_acked(clusters("x").version)
        assert await cache.wait_for_acks(first, timeout=1)
        # A new publication that leaves this proxy's snapshot as it was needs no new ACK.
        second = cache.publish(PerNode({"a": clusters("x")}))
        assert await cache.wait_for_acks(second, timeout=1)
        third = cache.publish(PerNode({"a": clusters("y")}))
        assert not await cache.wait_for_acks(third, timeout=0.05)

    asyncio.run(scenario())


def test_wait_for_acks_wakes_when_the_ack_arrives() -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        generation = cache.publish(PerNode({"a": clusters("x")}))
        connection = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
        await ready(connection)
        waiting = asyncio.create_task(cache.wait_for_acks(generation, timeout=5))
        await asyncio.sleep(0)  # let the waiter start before the ACK it waits for
        connection.record_snapshot_acked(clusters("x").version)
        assert await waiting

    asyncio.run(scenario())


def test_wait_for_acks_holds_with_no_proxy_connected() -> None:
    cache = SnapshotCache()
    generation = cache.publish(PerNode({}))
    assert asyncio.run(cache.wait_for_acks(generation, timeout=0.05))


def test_type_status_moves_from_stale_to_synced_or_nacked() -> None:
    cache = SnapshotCache()
    connection = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
    connection.record_push(CLUSTER, "v1")
    assert cache.statuses()[0].types[CLUSTER].state is SyncState.STALE
    connection.record_ack(CLUSTER, "v1")
    assert cache.statuses()[0].types[CLUSTER].state is SyncState.SYNCED
    connection.record_push(CLUSTER, "v2")
    connection.record_nack(CLUSTER, version="v2", message="bad")
    status = cache.statuses()[0].types[CLUSTER]
    assert (status.state, status.version_sent, status.version_acked) == (SyncState.NACKED, "v2", "v1")


def test_reconnected_node_survives_the_old_stream_closing() -> None:
    cache = SnapshotCache()
    old = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
    new = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
    new.record_push(CLUSTER, "v2")
    old.close()
    (status,) = cache.statuses()
    assert status.types[CLUSTER].version_sent == "v2"
    new.close()
    assert cache.statuses() == ()


def test_a_failing_listener_does_not_stop_recording() -> None:
    cache = SnapshotCache()
    heard: list[XdsEvent] = []

    def broken(event: XdsEvent) -> None:
        raise RuntimeError("observer bug")

    cache.add_listener(broken)
    remove = cache.add_listener(heard.append)
    connection = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
    remove()
    connection.record_push(CLUSTER, "v1")
    assert [event.kind for event in heard] == [EventKind.CONNECT]
    assert cache.statuses()[0].types[CLUSTER].version_sent == "v1"


def test_a_nack_names_the_generation_whose_snapshot_the_rejected_response_carried() -> None:
    cache = SnapshotCache()
    heard: list[XdsEvent] = []
    cache.add_listener(heard.append)
    connection = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
    first = cache.publish(PerNode({"a": clusters("x")}))
    connection.record_push(CLUSTER, clusters("x").version_of(CLUSTER))
    # A newer revision is published while the proxy is still answering the first one.
    cache.publish(PerNode({"a": clusters("y")}))

    connection.record_nack(CLUSTER, version="", message="rejected")

    [nack] = [event for event in heard if event.kind is EventKind.NACK]
    assert nack.generation == first


def test_a_nack_of_content_republished_unchanged_names_the_newest_generation() -> None:
    cache = SnapshotCache()
    heard: list[XdsEvent] = []
    cache.add_listener(heard.append)
    connection = cache.connect(ProxyIdentity(node_id="a"), on_change=Changes())
    cache.publish(PerNode({"a": clusters("x")}))
    connection.record_push(CLUSTER, clusters("x").version_of(CLUSTER))
    # Another revision that translates to the same snapshot: nothing is resent, so the answer is about it too.
    second = cache.publish(PerNode({"a": clusters("x")}))

    connection.record_nack(CLUSTER, version="", message="rejected")

    [nack] = [event for event in heard if event.kind is EventKind.NACK]
    assert nack.generation == second


def test_a_burst_of_publishes_is_pushed_at_once_then_as_one_push_of_the_latest() -> None:
    async def scenario() -> None:
        cache = SnapshotCache(push_debounce=0.3, push_max_delay=5.0)
        cache.publish(PerNode({"a": clusters("x")}))
        changes = Changes()
        connection = cache.connect(ProxyIdentity(node_id="a"), on_change=changes)
        cache.publish(PerNode({"a": clusters("first")}))
        assert changes.count == 1  # the first change after a quiet spell is not delayed
        cache.publish(PerNode({"a": clusters("second")}))
        cache.publish(PerNode({"a": clusters("latest")}))
        assert changes.count == 1
        async with asyncio.timeout(10):
            while changes.count < 2:
                await asyncio.sleep(0.01)
        assert connection.snapshot == clusters("latest")
        await asyncio.sleep(0.5)
        assert changes.count == 2  # the burst became one push

    asyncio.run(scenario())


def test_a_burst_that_does_not_pause_is_pushed_after_the_maximum_delay() -> None:
    async def scenario() -> None:
        # A quiet spell this long never comes within the test: only the maximum delay can push.
        cache = SnapshotCache(push_debounce=60.0, push_max_delay=0.2)
        cache.publish(PerNode({"a": clusters("x")}))
        changes = Changes()
        cache.connect(ProxyIdentity(node_id="a"), on_change=changes)
        cache.publish(PerNode({"a": clusters("first")}))
        cache.publish(PerNode({"a": clusters("second")}))
        async with asyncio.timeout(10):
            while changes.count < 2:
                await asyncio.sleep(0.01)

    asyncio.run(scenario())
