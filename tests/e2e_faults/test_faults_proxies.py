"""Proxies reconnecting: twenty at once after a daemon crash, one on an old version, a restarted Envoy.

Twenty simulated proxies (``simulated_proxies``: Envoy's SotW subscription over a real gRPC stream, with the
real gateway's node metadata) and one real Envoy gateway under steady traffic. Each must get the
whole snapshot the real gateway runs, at once and consistent (the four xDS types of one revision),
with no failed request through the real gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from daemon_harness import HOST, Daemon, Mesh, measure
from simulated_proxies import fetch_snapshot
from steady_traffic import Traffic, acked_versions

from reconciler.harness.envoy import EnvoyProcess
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]

SIMULATED = 20


def type_versions(status: dict[str, Any], node_id: str) -> dict[str, str]:
    versions = acked_versions(status, node_id)
    assert versions is not None, f"{node_id} is not synced"
    return {name: version for name, version in versions.items() if name != "snapshot"}


def gateway_node() -> dict[str, Any]:
    identity = ProxyIdentity(node_id="sim", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)
    node: dict[str, Any] = build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=1)["node"]
    return node


async def reconnect_all(daemon: Daemon, *, count: int, initial: dict[str, str] | None = None) -> list[dict[str, str]]:
    node = gateway_node()
    return await asyncio.gather(
        *(
            fetch_snapshot(f"127.0.0.1:{daemon.xds_port}", node_id=f"sim-{index}", bootstrap_node=node, initial=initial)
            for index in range(count)
        )
    )


def test_twenty_proxies_and_a_real_envoy_reconnecting_at_once_after_a_crash_each_get_the_whole_snapshot(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess], free_port: Callable[[], int]
) -> None:
    daemon = daemons(repo=mesh.repo.url, xds_port=free_port()).start()
    gateway(daemon, mesh)
    old = type_versions(daemon.wait_synced(mesh.initial_sha, proxies=1), "ingress-1")
    canary = mesh.push_weights(80, 20)
    daemon.sync()
    current = type_versions(daemon.wait_synced(canary, proxies=1), "ingress-1")
    assert [got == current for got in asyncio.run(reconnect_all(daemon, count=SIMULATED))] == [True] * SIMULATED

    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    try:
        daemon.kill9()
        daemon.start()
        # All at once, while the real gateway reconnects by itself; each says what it runs, as Envoy does.
        got = asyncio.run(reconnect_all(daemon, count=SIMULATED, initial=current))
        status = daemon.wait_status(
            "the real gateway to ACK the restored snapshot", lambda s: acked_versions(s, "ingress-1") is not None
        )
        # A proxy that ran the previous revision when the daemon died.
        [stale] = asyncio.run(reconnect_all(daemon, count=1, initial=old))
        traffic.wait_for(traffic.responses + 500)
    finally:
        traffic.stop()

    assert [versions == current for versions in got] == [True] * SIMULATED
    assert type_versions(status, "ingress-1") == current
    assert stale == current
    assert traffic.errors == {}
    assert traffic.local_replies == {}
    assert set(traffic.by_status) == {200}
    assert traffic.share("v2") == pytest.approx(20, abs=5)


def test_a_restarted_envoy_gets_the_served_snapshot_at_once_and_answers_no_5xx(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon, proxy = served
    canary = mesh.push_weights(80, 20)
    daemon.sync()
    before = type_versions(daemon.wait_synced(canary, proxies=1), "ingress-1")

    proxy.stop()
    gateway(daemon, mesh)  # the same node id and labels: a restarted Envoy, once it routes again
    after = daemon.wait_status("the restarted gateway to ACK", lambda s: acked_versions(s, "ingress-1") is not None)
    first = measure(mesh, count=500)

    assert type_versions(after, "ingress-1") == before
    assert first.errors == {}
    assert set(first.by_status) == {200}
    assert first.share("v2") == pytest.approx(20, abs=6)
