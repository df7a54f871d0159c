"""Incremental (delta) ADS, with a real grpc.aio client against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest
from ads_client import AdsStream
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from test_xds_protocol import full_snapshot

from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE
from reconciler.xds.cache import SyncState

pytestmark = pytest.mark.timeout(20)


class DeltaStream(AdsStream):
    """One client delta ADS stream; sends the node only on its first request, like Envoy."""

    async def send(  # type: ignore[override]
        self,
        type_url: str,
        *,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        nonce: str = "",
        error: str | None = None,
        initial: dict[str, str] | None = None,
    ) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=initial or {},
        )
        await self._write(request, error=error)

    async def ack(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:  # type: ignore[override]
        await self.send(response.type_url, nonce=response.nonce)

    async def expect_silence(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self._call.read(), 0.3)


@asynccontextmanager
async def delta_stream(env, node_id: str = "node-1") -> AsyncIterator[DeltaStream]:
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(env.channel).DeltaAggregatedResources()
    try:
        yield DeltaStream(call, node=base_pb2.Node(id=node_id))
    finally:
        call.cancel()


def names(response: discovery_pb2.DeltaDiscoveryResponse) -> set[str]:
    return {resource.name for resource in response.resources}


async def sync(stream: DeltaStream, *, endpoints: Iterable[str], routes: Iterable[str] = ("main",)) -> None:
    """Subscribe like Envoy (CDS, EDS, LDS, RDS) and ACK every first response."""
    await stream.send(CLUSTER)
    await stream.ack(await stream.recv())
    await stream.send(ENDPOINT, subscribe=endpoints)
    await stream.ack(await stream.recv())
    await stream.send(LISTENER)
    await stream.ack(await stream.recv())
    await stream.send(ROUTE, subscribe=routes)
    await stream.ack(await stream.recv())


def test_first_delta_response_carries_every_cluster_with_its_own_version(ads) -> None:
    snapshot = full_snapshot(weights={"a": 1, "b": 1})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with delta_stream(env) as stream:
            await stream.send(CLUSTER)
            response = await stream.recv()
        assert response.type_url == CLUSTER
        assert response.system_version_info == snapshot.version_of(CLUSTER)
        assert {resource.name: resource.version for resource in response.resources} == {
            name: item.version for name, item in snapshot.sets[CLUSTER].items.items()
        }
        assert not response.removed_resources

    ads.run(scenario)


def test_a_weight_change_sends_only_the_changed_route_and_its_ack_syncs_the_proxy(ads) -> None:
    before = full_snapshot(weights={"a": 90, "b": 10})
    after = full_snapshot(weights={"a": 80, "b": 20})

    async def scenario(env) -> None:
        env.publish(before)
        async with delta_stream(env) as stream:
            await sync(stream, endpoints=["a", "b"])
            await env.status_where("node-1", lambda s: s.acked_snapshot_version == before.version)
            generation = env.publish(after)
            update = await stream.recv()
            await stream.ack(update)
            status = await env.status_where("node-1", lambda s: s.acked_generation >= generation)
            await stream.expect_silence()
        assert update.type_url == ROUTE
        assert names(update) == {"main"}
        assert status.types[ROUTE].version_acked == after.version_of(ROUTE)

    ads.run(scenario)


def test_a_removed_cluster_is_removed_only_after_routes_without_it_are_acked(ads) -> None:
    before = full_snapshot(weights={"v1": 90, "v2": 10})
    after = full_snapshot(weights={"v2": 100})

    async def scenario(env) -> None:
        env.publish(before)
        async with delta_stream(env) as stream:
            await sync(stream, endpoints=["v1", "v2"])
            await env.status_where("node-1", lambda s: s.acked_snapshot_version == before.version)
            env.publish(after)
            routes = await stream.recv()
            await stream.ack(routes)
            removals = {response.type_url: response for response in [await stream.recv(), await stream.recv()]}
        assert routes.type_url == ROUTE
        assert list(removals[CLUSTER].removed_resources) == ["v1"]
        assert not removals[CLUSTER].resources
        assert list(removals[ENDPOINT].removed_resources) == ["v1"]

    ads.run(scenario)


def test_a_reconnecting_proxy_gets_only_what_differs_from_the_versions_it_holds(ads) -> None:
    before = full_snapshot(weights={"a": 1, "b": 1})
    after = full_snapshot(weights={"a": 1, "c": 1}, revision=1)

    async def scenario(env) -> None:
        env.publish(after)
        held = before.sets[CLUSTER].items
        async with delta_stream(env) as stream:
            # It holds a and b as they were before; a changed (revision 1), b is gone, c is new.
            await stream.send(CLUSTER, initial={name: item.version for name, item in held.items()})
            response = await stream.recv()
        assert names(response) == {"a", "c"}
        assert list(response.removed_resources) == ["b"]

    ads.run(scenario)


def test_a_delta_nack_is_recorded_and_the_rejected_content_is_not_resent(ads) -> None:
    snapshot = full_snapshot(weights={"a": 1})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with delta_stream(env) as stream:
            await stream.send(CLUSTER)
            clusters = await stream.recv()
            await stream.send(CLUSTER, nonce=clusters.nonce, error="cluster a: bad connect_timeout")
            status = await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.NACKED)
            env.publish(snapshot)  # the same content again
            await stream.expect_silence()
        assert status.types[CLUSTER].last_nack is not None
        assert status.types[CLUSTER].last_nack.message == "cluster a: bad connect_timeout"

    ads.run(scenario)


def test_a_name_subscribed_again_is_sent_again_unchanged(ads) -> None:
    snapshot = full_snapshot(weights={"a": 1})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with delta_stream(env) as stream:
            await sync(stream, endpoints=["a"])
            # A cluster updated in place warms and subscribes to its endpoints again.
            await stream.send(ENDPOINT, unsubscribe=["a"])
            await stream.send(ENDPOINT, subscribe=["a"])
            again = await stream.recv()
        assert again.type_url == ENDPOINT
        assert names(again) == {"a"}

    ads.run(scenario)


def test_endpoints_of_a_cluster_updated_in_place_follow_it_unchanged(ads) -> None:
    before = full_snapshot(weights={"a": 1})
    # Only the cluster changes (its connect timeout), not its endpoints: Envoy warms it on a new
    # EDS subscription of the same name and, in delta mode, does not ask for the endpoints again.
    changed = full_snapshot(weights={"a": 1}, revision=1)
    after = type(before).build(
        clusters=changed.resources(CLUSTER).values(),
        endpoints=before.resources(ENDPOINT).values(),
        listeners=before.resources(LISTENER).values(),
        routes=before.resources(ROUTE).values(),
    )

    async def scenario(env) -> None:
        env.publish(before)
        async with delta_stream(env) as stream:
            await sync(stream, endpoints=["a"])
            await env.status_where("node-1", lambda s: s.acked_snapshot_version == before.version)
            env.publish(after)
            clusters = await stream.recv()
            endpoints = await stream.recv()
        assert clusters.type_url == CLUSTER
        assert names(clusters) == {"a"}
        assert endpoints.type_url == ENDPOINT
        assert names(endpoints) == {"a"}
        assert endpoints.system_version_info == before.version_of(ENDPOINT)

    ads.run(scenario)
