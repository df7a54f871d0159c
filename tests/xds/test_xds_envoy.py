"""A real Envoy against the real ADS server: it ACKs all four types and NACKs a bad cluster."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from reconciler.harness.envoy import free_port
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, Snapshot
from reconciler.xds.cache import EventKind, SnapshotCache, SyncState, XdsEvent
from reconciler.xds.nack import MAX_CAUSE_CHARS
from reconciler.xds.server import start_server

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(40)]

#: Every test runs with state-of-the-world and with incremental (delta) ADS.
both_modes = pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"], ids=["sotw", "delta"])

ENVOY = Path(sys.executable).with_name("envoy")
NODE_ID = "envoy-under-test"
#: Envoy starts in well under a second; this is headroom for a loaded machine.
ENVOY_TIMEOUT = 15.0

BOOTSTRAP = """\
node: {{id: {node_id}, cluster: reconciler-tests}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds_cluster}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}
"""


def _ads_source() -> config_source_pb2.ConfigSource:
    source = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    source.ads.SetInParent()
    return source


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    result = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    result.connect_timeout.FromSeconds(1)
    result.eds_cluster_config.eds_config.CopyFrom(_ads_source())
    return result


def broken_cluster() -> cluster_pb2.Cluster:
    """A ring-hash cluster whose minimum ring is larger than its maximum: Envoy refuses it."""
    result = cluster_pb2.Cluster(
        name="broken", type=cluster_pb2.Cluster.STATIC, lb_policy=cluster_pb2.Cluster.RING_HASH
    )
    result.connect_timeout.FromSeconds(1)
    result.ring_hash_lb_config.minimum_ring_size.value = 1000
    result.ring_hash_lb_config.maximum_ring_size.value = 10
    return result


def snapshot(
    *,
    listen_port: int,
    weights: dict[str, int] | None = None,
    domain: str = "*",
    extra_clusters: tuple[cluster_pb2.Cluster, ...] = (),
) -> Snapshot:
    """A listener whose one route splits traffic over EDS clusters (by default all to "backend")."""
    weights = weights or {"backend": 100}
    assignments = []
    for name in weights:
        assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        assignment.endpoints.add().lb_endpoints.add().endpoint.address.socket_address.CopyFrom(
            address_pb2.SocketAddress(address="127.0.0.1", port_value=9)
        )
        assignments.append(assignment)
    manager = hcm_pb2.HttpConnectionManager(stat_prefix="ingress")
    manager.rds.route_config_name = "main"
    manager.rds.config_source.CopyFrom(_ads_source())
    manager.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(name="http")
    listener.address.socket_address.CopyFrom(address_pb2.SocketAddress(address="127.0.0.1", port_value=listen_port))
    listener.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(
        manager
    )
    routes = route_pb2.RouteConfiguration(name="main")
    only_route = routes.virtual_hosts.add(name="all", domains=[domain]).routes.add()
    only_route.match.prefix = "/"
    for name, weight in weights.items():
        only_route.route.weighted_clusters.clusters.add(name=name).weight.value = weight
    return Snapshot.build(
        clusters=[*(eds_cluster(name) for name in weights), *extra_clusters],
        endpoints=assignments,
        listeners=[listener],
        routes=[routes],
    ).check()


@asynccontextmanager
async def running_envoy(tmp_path: Path, *, xds_port: int, api_type: str) -> AsyncIterator[str]:
    """Start Envoy against the server (``api_type`` GRPC or DELTA_GRPC); yields its admin base URL."""
    bootstrap = tmp_path / "bootstrap.yaml"
    bootstrap.write_text(BOOTSTRAP.format(node_id=NODE_ID, xds_port=xds_port, api_type=api_type))
    admin_file = tmp_path / "admin-address"
    log_file = tmp_path / "envoy.log"
    process = await asyncio.create_subprocess_exec(
        str(ENVOY),
        "-c",
        str(bootstrap),
        "--disable-hot-restart",
        "--admin-address-path",
        str(admin_file),
        "--log-path",
        str(log_file),
        "--concurrency",
        "1",
    )
    try:
        async with asyncio.timeout(10):
            while not admin_file.exists() or not admin_file.read_text().strip():
                assert process.returncode is None, log_file.read_text()
                await asyncio.sleep(0.05)  # polling a file Envoy writes; no event to await
        yield f"http://{admin_file.read_text().strip()}"
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


async def admin_json(base_url: str, path: str) -> dict:
    def fetch() -> dict:
        with urllib.request.urlopen(base_url + path, timeout=5) as reply:
            return json.loads(reply.read())

    return await asyncio.to_thread(fetch)


def dynamic_cluster_names(config_dump: dict) -> set[str]:
    """Names in ``/config_dump?resource=dynamic_active_clusters`` (one DynamicCluster per entry)."""
    return {entry["cluster"]["name"] for entry in config_dump["configs"]}


@pytest.mark.skipif(shutil.which(str(ENVOY)) is None, reason="envoy binary not installed in the venv")
@both_modes
def test_real_envoy_acks_all_types_and_nacks_a_bad_cluster_without_losing_config(
    ads, tmp_path: Path, api_type: str
) -> None:
    listen_port = free_port()
    good = snapshot(listen_port=listen_port)
    bad = snapshot(listen_port=listen_port, extra_clusters=(broken_cluster(),))
    bad_with_new_routes = snapshot(listen_port=listen_port, extra_clusters=(broken_cluster(),), domain="example.com")
    events: list[XdsEvent] = []

    async def scenario(env) -> None:
        env.cache.add_listener(events.append)
        first = env.publish(good)
        async with running_envoy(tmp_path, xds_port=env.server.port, api_type=api_type) as admin:
            # Stop early on a rejection instead of waiting out the timeout.
            settled = await env.cache.wait_until(
                lambda ss: any(s.nacked for s in ss) or any(s.acked_generation >= first for s in ss),
                timeout=ENVOY_TIMEOUT,
            )
            status = env.cache.status(NODE_ID)
            assert settled, status
            assert status is not None
            assert status.acked_generation == first, status
            assert {type_url: status.types[type_url].state for type_url in PUSH_ORDER} == dict.fromkeys(
                PUSH_ORDER, SyncState.SYNCED
            )

            env.publish(bad)
            status = await env.status_where(NODE_ID, lambda s: s.types[CLUSTER].state is SyncState.NACKED)
            assert status.types[CLUSTER].last_nack is not None
            assert status.types[CLUSTER].last_nack.version == bad.version_of(CLUSTER)
            assert "maximum_ring_size" in status.types[CLUSTER].last_nack.message

            # Only the routes change: Envoy must get them, and must not get the rejected clusters again.
            env.publish(bad_with_new_routes)
            await env.status_where(
                NODE_ID, lambda s: s.types[ROUTE].version_acked == bad_with_new_routes.version_of(ROUTE)
            )
            config_dump = await admin_json(admin, "/config_dump?resource=dynamic_active_clusters")

        cluster_pushes = [e for e in events if e.kind is EventKind.PUSH and e.type_url == CLUSTER]
        assert [e.version for e in cluster_pushes] == [good.version_of(CLUSTER), bad.version_of(CLUSTER)]
        assert dynamic_cluster_names(config_dump) == {"backend"}

    ads.run(scenario)


@pytest.mark.skipif(shutil.which(str(ENVOY)) is None, reason="envoy binary not installed in the venv")
@both_modes
def test_real_envoy_drops_a_removed_cluster_only_after_acking_routes_without_it(
    ads, tmp_path: Path, api_type: str
) -> None:
    listen_port = free_port()
    split = snapshot(listen_port=listen_port, weights={"v1": 90, "v2": 10})
    moved = snapshot(listen_port=listen_port, weights={"v2": 100})
    events: list[XdsEvent] = []

    async def scenario(env) -> None:
        first = env.publish(split)
        async with running_envoy(tmp_path, xds_port=env.server.port, api_type=api_type) as admin:
            # wait_for_acks alone would hold at once, before Envoy has even connected.
            await env.status_where(NODE_ID, lambda s: s.acked_generation == first, timeout=ENVOY_TIMEOUT)
            env.cache.add_listener(events.append)
            second = env.publish(moved)
            assert await env.cache.wait_for_acks(second, timeout=ENVOY_TIMEOUT), env.cache.statuses()
            config_dump = await admin_json(admin, "/config_dump?resource=dynamic_active_clusters")

        assert dynamic_cluster_names(config_dump) == {"v2"}
        assert not [e for e in events if e.kind is EventKind.NACK]
        routes_acked = next(
            i for i, e in enumerate(events) if e.kind is EventKind.ACK and e.version == moved.version_of(ROUTE)
        )
        v1_dropped = next(
            i for i, e in enumerate(events) if e.kind is EventKind.PUSH and e.version == moved.version_of(CLUSTER)
        )
        assert routes_acked < v1_dropped

    ads.run(scenario)


def with_route(base: Snapshot, edit: Callable[[route_pb2.RouteConfiguration], None]) -> Snapshot:
    """``base`` with its route configuration changed by ``edit``; nothing else differs."""
    routes = route_pb2.RouteConfiguration()
    routes.CopyFrom(base.resources(ROUTE)["main"])
    edit(routes)
    return Snapshot.build(
        clusters=base.resources(CLUSTER).values(),
        endpoints=base.resources(ENDPOINT).values(),
        listeners=base.resources(LISTENER).values(),
        routes=[routes],
    )


def no_domains(routes: route_pb2.RouteConfiguration) -> None:
    del routes.virtual_hosts[0].domains[:]


def huge_header(routes: route_pb2.RouteConfiguration) -> None:
    added = routes.virtual_hosts[0].request_headers_to_add.add()
    added.header.key = "x-padding"
    added.header.value = "x" * 20_000


@pytest.mark.skipif(shutil.which(str(ENVOY)) is None, reason="envoy binary not installed in the venv")
@both_modes
def test_a_real_nack_is_recorded_as_envoys_cause_without_its_copy_of_the_resource(
    ads, tmp_path: Path, api_type: str
) -> None:
    good = snapshot(listen_port=free_port())
    short_echo = with_route(good, no_domains)
    long_echo = with_route(good, huge_header)

    async def nack_of(env: Any, rejected: Snapshot) -> str:
        env.publish(rejected)
        status = await env.status_where(
            NODE_ID,
            lambda s: (
                ROUTE in s.types
                and s.types[ROUTE].last_nack is not None
                and s.types[ROUTE].last_nack.version == rejected.version_of(ROUTE)
            ),
            timeout=ENVOY_TIMEOUT,
        )
        return str(status.types[ROUTE].last_nack.message)

    async def scenario(env: Any) -> None:
        async with running_envoy(tmp_path, xds_port=env.server.port, api_type=api_type):
            short = await nack_of(env, short_echo)
            long = await nack_of(env, long_echo)
        # Envoy quotes the route configuration before its reason; the quote is replaced by the name.
        for message in (short, long):
            assert "<main>" in message
            assert "virtual_hosts" not in message
            assert len(message) <= MAX_CAUSE_CHARS + 40
        assert "domains" in short.lower()  # the field at fault survives
        # Envoy cut its 4 KB message inside the quote of a 20 KB route: we say the cause is not in it.
        assert "x" * 100 not in long
        assert "4 KB" in long

    ads.run(scenario)


@pytest.mark.skipif(shutil.which(str(ENVOY)) is None, reason="envoy binary not installed in the venv")
@both_modes
def test_a_real_envoy_reconnecting_keeps_a_removed_cluster_until_it_acks_routes_without_it(
    ads, tmp_path: Path, api_type: str
) -> None:
    listen_port = free_port()
    split = snapshot(listen_port=listen_port, weights={"v1": 90, "v2": 10})
    moved = snapshot(listen_port=listen_port, weights={"v2": 100})
    events: list[XdsEvent] = []

    async def scenario(env) -> None:
        first = env.publish(split)
        async with running_envoy(tmp_path, xds_port=env.server.port, api_type=api_type) as admin:
            await env.status_where(NODE_ID, lambda s: s.acked_generation == first, timeout=ENVOY_TIMEOUT)
            address = env.server.address
            await env.server.stop(grace=0)  # the stream drops; Envoy keeps its config and reconnects
            await env.cache.wait_until(lambda statuses: not statuses, timeout=ENVOY_TIMEOUT)
            second = env.publish(moved)  # v1 is gone while the proxy is away; its routes still use it
            env.cache.add_listener(events.append)
            server = await start_server(cache=env.cache, address=address)
            try:
                await env.status_where(NODE_ID, lambda s: s.acked_generation >= second, timeout=ENVOY_TIMEOUT)
                config_dump = await admin_json(admin, "/config_dump?resource=dynamic_active_clusters")
            finally:
                await server.stop(grace=0)

        assert not [e for e in events if e.kind is EventKind.NACK]
        pushes = [e for e in events if e.kind is EventKind.PUSH and e.type_url == CLUSTER]
        assert pushes[0].version != moved.version_of(CLUSTER)  # the new stream's first CDS still has v1
        routes_acked = next(
            i for i, e in enumerate(events) if e.kind is EventKind.ACK and e.version == moved.version_of(ROUTE)
        )
        v1_dropped = next(
            i for i, e in enumerate(events) if e.kind is EventKind.PUSH and e.version == moved.version_of(CLUSTER)
        )
        assert routes_acked < v1_dropped
        assert dynamic_cluster_names(config_dump) == {"v2"}

    ads.run(scenario, cache=SnapshotCache(remember_nodes=10, remember_seconds=60.0))
