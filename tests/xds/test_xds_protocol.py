"""State-of-the-world ADS protocol, with a real grpc.aio client against the real server."""

from __future__ import annotations

import contextlib

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from reconciler.errors import XdsError
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, Snapshot
from reconciler.xds.cache import EventKind, Nack, SyncState, XdsEvent
from reconciler.xds.server import start_server

pytestmark = pytest.mark.timeout(20)


def cluster(name: str, *, timeout_ms: int = 1000) -> cluster_pb2.Cluster:
    result = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    result.connect_timeout.FromMilliseconds(timeout_ms)
    result.eds_cluster_config.eds_config.ads.SetInParent()
    return result


def assignment(name: str, *, port: int = 8080) -> endpoint_pb2.ClusterLoadAssignment:
    result = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    endpoint = result.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.socket_address.CopyFrom(address_pb2.SocketAddress(address="127.0.0.1", port_value=port))
    return result


def listener(name: str, *, route_name: str, port: int = 10000) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    manager.rds.route_config_name = route_name
    manager.rds.config_source.ads.SetInParent()
    result = listener_pb2.Listener(name=name)
    result.address.socket_address.CopyFrom(address_pb2.SocketAddress(address="0.0.0.0", port_value=port))
    result.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(
        manager
    )
    return result


def route(name: str, *, weights: dict[str, int], domain: str = "*") -> route_pb2.RouteConfiguration:
    result = route_pb2.RouteConfiguration(name=name)
    action = result.virtual_hosts.add(name="all", domains=[domain]).routes.add().route
    for cluster_name, weight in weights.items():
        action.weighted_clusters.clusters.add(name=cluster_name).weight.value = weight
    return result


def full_snapshot(*, weights: dict[str, int], revision: int = 0) -> Snapshot:
    """All four types, consistent; a different ``revision`` changes every one of them."""
    return Snapshot.build(
        clusters=[cluster(name, timeout_ms=1000 + revision) for name in weights],
        endpoints=[assignment(name, port=8080 + revision) for name in weights],
        listeners=[listener("http", route_name="main", port=10000 + revision)],
        routes=[route("main", weights=weights, domain=f"rev{revision}.example")],
    )


def names_in(response: discovery_pb2.DiscoveryResponse) -> set[str]:
    names = set()
    for packed in response.resources:
        if packed.type_url == ENDPOINT:
            message = endpoint_pb2.ClusterLoadAssignment()
            packed.Unpack(message)
            names.add(message.cluster_name)
        else:
            message_type = {
                CLUSTER: cluster_pb2.Cluster,
                LISTENER: listener_pb2.Listener,
                ROUTE: route_pb2.RouteConfiguration,
            }
            message = message_type[packed.type_url]()
            packed.Unpack(message)
            names.add(message.name)
    return names


def test_first_response_carries_all_clusters(ads) -> None:
    snapshot = Snapshot.build(clusters=[cluster("a"), cluster("b"), cluster("c")])

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with env.stream() as stream:
            response = await stream.request(CLUSTER)
        assert response.type_url == CLUSTER
        assert response.version_info == snapshot.version_of(CLUSTER)
        assert response.nonce
        assert names_in(response) == {"a", "b", "c"}

    ads.run(scenario)


def test_every_response_has_a_fresh_nonce(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(clusters=[cluster("a")]))
        async with env.stream() as stream:
            first = await stream.request(CLUSTER)
            env.publish(Snapshot.build(clusters=[cluster("b")]))
            second = await stream.recv()
        assert first.nonce != second.nonce

    ads.run(scenario)


def test_ack_of_current_version_gets_no_response(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(clusters=[cluster("a")]))
        async with env.stream() as stream:
            first = await stream.request(CLUSTER)
            await stream.ack(first)
            await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.SYNCED)
            changed = Snapshot.build(clusters=[cluster("b")])
            env.publish(changed)
            # Responses on a stream are ordered: an answer to the ACK would arrive before this push.
            following = await stream.recv()
        assert following.version_info == changed.version_of(CLUSTER)

    ads.run(scenario)


def test_status_is_stale_until_acked_then_synced(ads) -> None:
    snapshot = Snapshot.build(clusters=[cluster("a")])

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with env.stream() as stream:
            response = await stream.request(CLUSTER)
            stale = await env.status_where("node-1", lambda s: CLUSTER in s.types)
            await stream.ack(response)
            synced = await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.SYNCED)
        assert stale.types[CLUSTER].state is SyncState.STALE
        assert stale.types[CLUSTER].version_sent == snapshot.version_of(CLUSTER)
        assert stale.types[CLUSTER].version_acked is None
        assert synced.types[CLUSTER].version_acked == snapshot.version_of(CLUSTER)

    ads.run(scenario)


def test_nack_is_recorded_with_message_per_type(ads) -> None:
    snapshot = full_snapshot(weights={"a": 100})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with env.stream() as stream:
            clusters = await stream.request(CLUSTER)
            listeners = await stream.request(LISTENER)
            await stream.nack(clusters, message="cluster a: bad connect_timeout")
            await stream.ack(listeners)
            status = await env.status_where(
                "node-1",
                lambda s: s.types[CLUSTER].state is SyncState.NACKED and s.types[LISTENER].state is SyncState.SYNCED,
            )
        assert status.types[CLUSTER].last_nack == Nack(
            version=snapshot.version_of(CLUSTER), message="cluster a: bad connect_timeout"
        )
        assert status.types[CLUSTER].version_acked is None
        assert status.types[LISTENER].last_nack is None
        assert status.nacked

    ads.run(scenario)


def test_nacked_snapshot_is_not_resent(ads) -> None:
    async def scenario(env) -> None:
        env.publish(full_snapshot(weights={"a": 100}))
        async with env.stream() as stream:
            clusters = await stream.request(CLUSTER)
            await stream.ack(await stream.request(LISTENER))
            await stream.nack(clusters, message="rejected")
            await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.NACKED)
            same_clusters = full_snapshot(weights={"a": 100})
            env.publish(
                Snapshot.build(
                    clusters=same_clusters.resources(CLUSTER).values(),
                    listeners=[listener("http", route_name="main", port=10001)],
                )
            )
            # Only LDS changed since the NACK; a CDS resend would have come first on the ordered stream.
            following = await stream.recv()
        assert following.type_url == LISTENER

    ads.run(scenario)


def test_new_content_after_nack_is_sent(ads) -> None:
    fixed = Snapshot.build(clusters=[cluster("a", timeout_ms=2000)])

    async def scenario(env) -> None:
        env.publish(Snapshot.build(clusters=[cluster("a", timeout_ms=1)]))
        async with env.stream() as stream:
            rejected = await stream.request(CLUSTER)
            await stream.nack(rejected, message="timeout too short")
            await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.NACKED)
            env.publish(fixed)
            resent = await stream.recv()
            await stream.ack(resent)
            status = await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.SYNCED)
        assert resent.version_info == fixed.version_of(CLUSTER) != rejected.version_info
        assert resent.nonce != rejected.nonce
        assert status.types[CLUSTER].last_nack is not None  # the history stays visible

    ads.run(scenario)


def test_a_nacked_response_is_not_sent_again_when_the_proxy_asks_with_its_nonce_but_a_new_update_is(ads) -> None:
    rejected = full_snapshot(weights={"a": 100})
    fixed = full_snapshot(weights={"a": 100}, revision=1)

    async def scenario(env) -> None:
        env.publish(rejected)
        async with env.stream() as stream:
            clusters = await stream.request(CLUSTER)
            await stream.nack(clusters, message="cluster a: bad connect_timeout")
            await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.NACKED)
            # Envoy asks again with the nonce it rejected (a subscription change, a warming cluster):
            # answering with the same clusters would only be NACKed again, and again.
            await stream.send(CLUSTER, nonce=clusters.nonce)
            # Responses are ordered: a CDS resend would arrive before the answer to this request.
            listeners = await stream.request(LISTENER)
            env.publish(fixed)
            update = await stream.recv()
        assert listeners.type_url == LISTENER
        assert update.type_url == CLUSTER
        assert update.version_info == fixed.version_of(CLUSTER)

    ads.run(scenario)


def test_stale_nonce_is_ignored(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(clusters=[cluster("a")]))
        async with env.stream() as stream:
            old = await stream.request(CLUSTER)
            env.publish(Snapshot.build(clusters=[cluster("b")]))
            current = await stream.recv()
            await stream.nack(old, message="about the old response")
            await stream.ack(current)
            # Requests are handled in order, so once the ACK is recorded the stale NACK was seen.
            status = await env.status_where("node-1", lambda s: s.types[CLUSTER].state is SyncState.SYNCED)
        assert status.types[CLUSTER].last_nack is None
        assert status.types[CLUSTER].version_acked == current.version_info

    ads.run(scenario)


def test_push_order_is_cds_eds_lds_rds(ads) -> None:
    async def scenario(env) -> None:
        env.publish(full_snapshot(weights={"a": 100}))
        async with env.stream() as stream:
            for type_url, names in [(CLUSTER, ()), (ENDPOINT, ["a"]), (LISTENER, ()), (ROUTE, ["main"])]:
                await stream.ack(await stream.request(type_url, names=names), names=names)
            await env.status_where("node-1", lambda s: s.acked_generation == 1)
            env.publish(full_snapshot(weights={"a": 100}, revision=1))
            pushed = [await stream.recv() for _ in PUSH_ORDER]
        assert [response.type_url for response in pushed] == list(PUSH_ORDER)

    ads.run(scenario)


def test_removed_cluster_is_kept_until_routes_without_it_are_acked(ads) -> None:
    before = full_snapshot(weights={"v1": 90, "v2": 10})
    after = full_snapshot(weights={"v2": 100}, revision=1)

    async def scenario(env) -> None:
        env.publish(before)
        async with env.stream() as stream:
            await stream.ack(await stream.request(CLUSTER))
            await stream.ack(await stream.request(ROUTE, names=["main"]), names=["main"])
            await env.status_where("node-1", lambda s: s.types[ROUTE].state is SyncState.SYNCED)
            env.publish(after)
            clusters_while_routes_use_v1 = await stream.recv()
            new_routes = await stream.recv()
            await stream.ack(new_routes, names=["main"])
            clusters_after_routes_acked = await stream.recv()
        assert clusters_while_routes_use_v1.type_url == CLUSTER
        assert names_in(clusters_while_routes_use_v1) == {"v1", "v2"}
        assert clusters_while_routes_use_v1.version_info not in {before.version_of(CLUSTER), after.version_of(CLUSTER)}
        assert new_routes.type_url == ROUTE
        assert clusters_after_routes_acked.type_url == CLUSTER
        assert names_in(clusters_after_routes_acked) == {"v2"}
        assert clusters_after_routes_acked.version_info == after.version_of(CLUSTER)

    ads.run(scenario)


def test_endpoints_of_a_kept_cluster_are_still_served(ads) -> None:
    async def scenario(env) -> None:
        env.publish(full_snapshot(weights={"v1": 90, "v2": 10}))
        async with env.stream() as stream:
            await stream.ack(await stream.request(CLUSTER))
            await stream.ack(await stream.request(ENDPOINT, names=["v1", "v2"]), names=["v1", "v2"])
            await stream.ack(await stream.request(ROUTE, names=["main"]), names=["main"])
            await env.status_where("node-1", lambda s: s.types[ROUTE].state is SyncState.SYNCED)
            env.publish(full_snapshot(weights={"v2": 100}, revision=1))
            pushed = {response.type_url: response for response in [await stream.recv() for _ in range(3)]}
        assert names_in(pushed[ENDPOINT]) == {"v1", "v2"}

    ads.run(scenario)


def test_named_eds_request_for_unknown_cluster_is_answered_when_it_appears(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(clusters=[cluster("a")], endpoints=[assignment("a")]))
        async with env.stream() as stream:
            await stream.send(ENDPOINT, names=["b"])
            appeared = Snapshot.build(
                clusters=[cluster("a"), cluster("b")], endpoints=[assignment("a"), assignment("b")]
            )
            # Published only once the request is in, so the push below answers that request.
            await env.status_where("node-1", lambda s: s.snapshot_version is not None)
            env.publish(appeared)
            response = await stream.recv()
        assert response.type_url == ENDPOINT
        assert names_in(response) == {"b"}
        assert response.version_info == appeared.version_of(ENDPOINT)

    ads.run(scenario)


def test_named_response_carries_only_the_requested_resources(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(endpoints=[assignment("a"), assignment("b"), assignment("c")]))
        async with env.stream() as stream:
            response = await stream.request(ENDPOINT, names=["a", "c", "missing"])
        assert names_in(response) == {"a", "c"}

    ads.run(scenario)


def test_newly_requested_name_is_sent_without_a_snapshot_change(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(endpoints=[assignment("a"), assignment("b")]))
        async with env.stream() as stream:
            first = await stream.request(ENDPOINT, names=["a"])
            await stream.ack(first, names=["a", "b"])
            second = await stream.recv()
        assert names_in(second) == {"a", "b"}
        assert second.version_info == first.version_info

    ads.run(scenario)


def test_node_is_cached_from_first_request(ads) -> None:
    async def scenario(env) -> None:
        env.publish(full_snapshot(weights={"a": 100}))
        async with env.stream("gateway-7", labels={"app": "ingress"}) as stream:
            await stream.request(CLUSTER)
            # The stream helper sends the node only once, as Envoy does.
            listeners = await stream.request(LISTENER)
            status = await env.status_where("gateway-7", lambda s: LISTENER in s.types)
        assert names_in(listeners) == {"http"}
        assert status.labels == {"app": "ingress"}

    ads.run(scenario)


def test_each_proxy_gets_its_own_snapshot(ads) -> None:
    async def scenario(env) -> None:
        env.publish(
            Snapshot.build(clusters=[cluster("shared")]),
            per_node={"special": Snapshot.build(clusters=[cluster("special-only")])},
        )
        async with env.stream("plain") as plain, env.stream("special") as special:
            plain_clusters = await plain.request(CLUSTER)
            special_clusters = await special.request(CLUSTER)
        assert names_in(plain_clusters) == {"shared"}
        assert names_in(special_clusters) == {"special-only"}

    ads.run(scenario)


def test_disconnect_removes_proxy_status(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(clusters=[cluster("a")]))
        async with env.stream("leaving") as stream:
            await stream.request(CLUSTER)
            assert [s.node_id for s in env.cache.statuses()] == ["leaving"]
        assert await env.cache.wait_until(lambda statuses: not statuses, timeout=5)

    ads.run(scenario)


def test_first_request_without_node_is_rejected(ads) -> None:
    async def scenario(env) -> None:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(env.channel).StreamAggregatedResources()
        await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert env.cache.statuses() == ()

    ads.run(scenario)


def test_a_delta_stream_whose_first_request_has_no_node_is_rejected(ads) -> None:
    async def scenario(env) -> None:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(env.channel).DeltaAggregatedResources()
        # The server may end the stream before this write lands; then the write fails, not the read.
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER))
            await call.read()
        assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT

    ads.run(scenario)


def test_wait_for_acks_completes_when_every_proxy_acked_every_type(ads) -> None:
    async def scenario(env) -> None:
        generation = env.publish(full_snapshot(weights={"a": 100}))
        async with env.stream("one") as one, env.stream("two") as two:
            for stream in (one, two):
                for type_url, names in [(CLUSTER, ()), (ENDPOINT, ["a"]), (LISTENER, ())]:
                    await stream.ack(await stream.request(type_url, names=names), names=names)
            assert not await env.cache.wait_for_acks(generation, timeout=0.2)  # RDS is still missing
            for stream in (one, two):
                await stream.ack(await stream.request(ROUTE, names=["main"]), names=["main"])
            assert await env.cache.wait_for_acks(generation, timeout=5)

    ads.run(scenario)


def test_listeners_hear_pushes_acks_and_nacks(ads) -> None:
    heard: list[XdsEvent] = []

    async def scenario(env) -> None:
        env.cache.add_listener(heard.append)
        env.publish(full_snapshot(weights={"a": 100}))
        async with env.stream("n") as stream:
            clusters = await stream.request(CLUSTER)
            await stream.nack(clusters, message="no")
            await stream.ack(await stream.request(LISTENER))
            await env.status_where("n", lambda s: s.types.get(LISTENER, None) and s.types[LISTENER].version_acked)
        kinds = [(event.kind, event.type_url) for event in heard if event.kind is not EventKind.DISCONNECT]
        assert kinds == [
            (EventKind.CONNECT, ""),
            (EventKind.PUSH, CLUSTER),
            (EventKind.NACK, CLUSTER),
            (EventKind.PUSH, LISTENER),
            (EventKind.ACK, LISTENER),
        ]
        assert next(event for event in heard if event.kind is EventKind.NACK).message == "no"

    ads.run(scenario)


def test_busy_port_raises_xds_error(ads) -> None:
    async def scenario(env) -> None:
        with pytest.raises(XdsError, match="cannot serve xDS"):
            await start_server(cache=env.cache, address=env.server.address)

    ads.run(scenario)


def test_proxy_connected_before_the_first_publish_is_served_when_it_comes(ads) -> None:
    async def scenario(env) -> None:
        async with env.stream() as stream:
            await stream.send(CLUSTER)
            await env.status_where("node-1", lambda s: s.snapshot_version is None)
            snapshot = Snapshot.build(clusters=[cluster("a")])
            env.publish(snapshot)
            response = await stream.recv()
        assert response.version_info == snapshot.version_of(CLUSTER)

    ads.run(scenario)


def test_stopping_the_server_disconnects_every_proxy(ads) -> None:
    async def scenario(env) -> None:
        env.publish(Snapshot.build(clusters=[cluster("a")]))
        async with env.stream() as stream:
            await stream.request(CLUSTER)
            await env.server.stop(grace=0)
            assert await env.cache.wait_until(lambda statuses: not statuses, timeout=5)

    ads.run(scenario)


def test_routes_naming_new_clusters_wait_until_those_clusters_are_acked(ads) -> None:
    before = Snapshot.build(
        clusters=[cluster("a")],
        endpoints=[assignment("a")],
        listeners=[listener("http", route_name="main")],
        routes=[route("main", weights={"a": 1})],
    )
    after = Snapshot.build(
        clusters=[cluster("a"), cluster("b")],
        endpoints=[assignment("a"), assignment("b")],
        listeners=[listener("http", route_name="main")],
        routes=[route("main", weights={"a": 1, "b": 1})],
    )

    async def scenario(env) -> None:
        env.publish(before)
        async with env.stream() as stream:
            await stream.ack(await stream.request(CLUSTER))
            endpoints = await stream.request(ENDPOINT, names=["a"])
            await stream.ack(endpoints, names=["a"])
            await stream.ack(await stream.request(LISTENER))
            await stream.ack(await stream.request(ROUTE, names=["main"]), names=["main"])
            await env.status_where("node-1", lambda s: s.acked_snapshot_version == before.version)

            env.publish(after)
            clusters = await stream.recv()
            pushed = await stream.recv()  # the EDS version changed, so the subscribed names come again
            # Like Envoy warming cluster b: ask for its endpoints before ACKing the clusters.
            await stream.ack(pushed, names=["a", "b"])
            warming = await stream.recv()
            held = env.cache.status("node-1")
            await stream.ack(clusters)
            routes = await stream.recv()

        assert [r.type_url for r in (clusters, pushed, warming, routes)] == [CLUSTER, ENDPOINT, ENDPOINT, ROUTE]
        assert names_in(warming) == {"a", "b"}
        assert held is not None
        assert held.types[ROUTE].version_sent == before.version_of(ROUTE)
        assert routes.version_info == after.version_of(ROUTE)

    ads.run(scenario)


def test_request_repeating_an_answered_nonce_is_answered_again(ads) -> None:
    snapshot = full_snapshot(weights={"a": 1})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with env.stream() as stream:
            await stream.ack(await stream.request(CLUSTER))
            endpoints = await stream.request(ENDPOINT, names=["a"])
            await stream.ack(endpoints, names=["a"])
            await env.status_where("node-1", lambda s: s.types[ENDPOINT].state is SyncState.SYNCED)
            # Envoy re-asks with the last nonce when a cluster updated in place warms again.
            await stream.ack(endpoints, names=["a"])
            again = await stream.recv()

        assert again.type_url == ENDPOINT
        assert names_in(again) == {"a"}
        assert again.nonce != endpoints.nonce

    ads.run(scenario)


def test_proxies_sent_the_same_set_share_one_response_and_a_stream_never_sees_a_nonce_twice(ads) -> None:
    snapshot = full_snapshot(weights={"a": 1})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with env.stream("node-1") as first, env.stream("node-2") as second, env.stream("node-3") as third:
            one = await first.request(CLUSTER)
            other = await second.request(CLUSTER)
            # Shared from the second stream on (the first one's copy is not kept: a shape's own sets would stay):
            # the same framed bytes, so the same nonce; each stream's later nonces are new to it.
            assert (await third.request(CLUSTER)).nonce == other.nonce
            assert names_in(other) == names_in(one)
            await first.ack(one)
            endpoints = await first.request(ENDPOINT, names=["a"])
            await first.ack(endpoints, names=["a"])
            await env.status_where("node-1", lambda s: s.types[ENDPOINT].state is SyncState.SYNCED)
            await first.ack(endpoints, names=["a"])  # asks again: same content, and a nonce it has not seen
            again = await first.recv()

        assert again.nonce not in {one.nonce, endpoints.nonce}
        assert names_in(again) == {"a"}

    ads.run(scenario)


def test_a_fresh_proxy_gets_its_routes_after_nacking_one_of_its_clusters(ads) -> None:
    snapshot = full_snapshot(weights={"a": 1, "b": 1})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with env.stream() as stream:
            clusters = await stream.request(CLUSTER)
            # Envoy rejects the update for one bad cluster but keeps the valid ones it carried.
            await stream.nack(clusters, message="cluster b: bad ring size")
            await stream.ack(await stream.request(LISTENER))
            routes = await stream.request(ROUTE, names=["main"])

        assert routes.type_url == ROUTE
        assert routes.version_info == snapshot.version_of(ROUTE)

    ads.run(scenario)


def test_a_cluster_kept_for_old_routes_goes_once_the_proxy_unsubscribes_from_them(ads) -> None:
    before = full_snapshot(weights={"a": 1, "b": 1})
    # The listener and its routes are gone, and cluster a with them.
    after = Snapshot.build(clusters=[cluster("b")], endpoints=[assignment("b")])

    async def scenario(env) -> None:
        env.publish(before)
        async with env.stream() as stream:
            await stream.ack(await stream.request(CLUSTER))
            await stream.ack(await stream.request(ENDPOINT, names=["a", "b"]), names=["a", "b"])
            await stream.ack(await stream.request(LISTENER))
            routes = await stream.request(ROUTE, names=["main"])
            await stream.ack(routes, names=["main"])
            await env.status_where("node-1", lambda s: s.acked_snapshot_version == before.version)

            generation = env.publish(after)
            no_listeners = await stream.recv()
            await stream.ack(no_listeners)
            draining = env.cache.status("node-1")  # routes "main" still use cluster a while the listener drains
            # Drained: Envoy drops its subscription to the routes.
            await stream.send(ROUTE, names=[], version=routes.version_info, nonce=routes.nonce)
            released = await stream.recv()
            await stream.ack(released)
            endpoints = await stream.recv()
            await stream.ack(endpoints, names=["b"])
            status = await env.status_where("node-1", lambda s: s.acked_generation >= generation)

        assert no_listeners.type_url == LISTENER
        assert names_in(no_listeners) == set()
        assert draining is not None
        assert draining.types[CLUSTER].version_sent == before.version_of(CLUSTER)
        assert released.type_url == CLUSTER
        assert names_in(released) == {"b"}
        assert released.version_info == after.version_of(CLUSTER)
        assert names_in(endpoints) == {"b"}
        assert status.acked_snapshot_version == after.version

    ads.run(scenario)


def test_synced_ignores_an_older_stream_of_the_same_node_id(ads) -> None:
    snapshot = Snapshot.build(clusters=[cluster("a")])

    async def scenario(env) -> None:
        generation = env.publish(snapshot)
        async with env.stream("n1") as dying, env.stream("n1") as current:
            await dying.request(CLUSTER)  # never answered: its peer is gone without a FIN
            await current.ack(await current.request(CLUSTER))
            status = await env.status_where("n1", lambda s: s.acked_generation >= generation)
            assert env.cache.all_acked(generation)
        assert status.node_id == "n1"

    ads.run(scenario)


def test_a_request_repeating_a_nacked_eds_nonce_is_answered_so_a_warming_cluster_gets_endpoints(ads) -> None:
    snapshot = full_snapshot(weights={"a": 1, "b": 1})

    async def scenario(env) -> None:
        env.publish(snapshot)
        async with env.stream() as stream:
            await stream.ack(await stream.request(CLUSTER))
            endpoints = await stream.request(ENDPOINT, names=["a", "b"])
            await stream.nack(endpoints, message="endpoints of a: bad port", names=["a", "b"])
            await env.status_where("node-1", lambda s: s.types[ENDPOINT].state is SyncState.NACKED)
            # Cluster b updated in place warms and asks for its endpoints with the nonce Envoy last saw.
            await stream.send(ENDPOINT, names=["a", "b"], nonce=endpoints.nonce)
            again = await stream.recv()
        assert again.type_url == ENDPOINT
        assert names_in(again) == {"a", "b"}
        assert again.nonce != endpoints.nonce

    ads.run(scenario)
