"""Real Envoy against the ADS server over TLS and mutual TLS, with bootstraps from ``build_bootstrap``.

Certificates come from ``reconciler certs``' code. A refused proxy is observed from Envoy's side
(its connection attempts to ``xds_cluster`` pile up while it holds no dynamic config) and from
the server's (no status row for its node id).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_xds_envoy import ENVOY_TIMEOUT, snapshot
from waiting import wait_for_async

from reconciler.cli.certs import issue_certificates
from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.translate.bootstrap import XdsClientTls, build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.translate.snapshot import CLUSTER
from reconciler.xds.tls import ServerTls

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(90)]

NAMESPACE = "istio-system"
#: Connection attempts that prove Envoy was refused and kept trying (its xDS retry backoff starts at 0.5 s).
REFUSED_ATTEMPTS = 3


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    issue_certificates(tmp_path / "ca", clients=["gw-1", "gw-2"], namespace=NAMESPACE)
    issue_certificates(tmp_path / "other-ca", clients=["gw-1"], namespace=NAMESPACE)
    return tmp_path


def mutual(pki: Path) -> ServerTls:
    ca = pki / "ca"
    return ServerTls(cert_file=ca / "server.crt", key_file=ca / "server.key", client_ca_file=ca / "ca.crt")


def bootstrap(node_id: str, *, xds_port: int, tls: XdsClientTls) -> dict[str, Any]:
    proxy = ProxyIdentity(
        node_id=node_id, labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY, namespace=NAMESPACE
    )
    result = build_bootstrap(proxy=proxy, xds_host="127.0.0.1", xds_port=xds_port, admin_port=0, xds_tls=tls)
    # Every stat, so the xds_cluster's connection and TLS counters can be read.
    del result["stats_config"]
    return result


def client_tls(pki: Path, node: str | None, *, ca: str = "ca") -> XdsClientTls:
    if node is None:
        return XdsClientTls(ca_file=str(pki / "ca" / "ca.crt"))
    return XdsClientTls(
        ca_file=str(pki / "ca" / "ca.crt"),
        cert_file=str(pki / ca / f"{node}.crt"),
        key_file=str(pki / ca / f"{node}.key"),
    )


async def start(envoy: Callable[..., EnvoyProcess], config: dict[str, Any], *, wait_live: bool = True) -> EnvoyProcess:
    # Envoy's start blocks until LIVE, which needs this loop's server to answer: start it on a thread.
    return await asyncio.to_thread(envoy, config, wait_live=wait_live)


async def assert_served_nothing(proxy: EnvoyProcess, *, failures: str, what: str) -> None:
    """Once Envoy's ``failures`` counter shows it tried again and again: it never took a config.

    Not ``control_plane.connected_state``: a stream refused after it opened (a node-id impostor) reads
    "connected" for a moment on every fast retry.
    """
    # Off the loop: Envoy's admin API blocks, and this loop's server must keep refusing meanwhile.
    await wait_for_async(what, lambda: proxy.stat(failures) >= REFUSED_ATTEMPTS, timeout=ENVOY_TIMEOUT, off_loop=True)
    assert proxy.stat("cluster_manager.cds.update_success") == 0
    assert proxy.stat("listener_manager.lds.update_success") == 0
    assert proxy.config_dump(resource="dynamic_active_clusters").get("configs", []) == []


async def serve_gw1(env: Any, envoy: Callable[..., EnvoyProcess], pki: Path) -> int:
    """Publish a snapshot and start gw-1 with its own certificate; the generation, once it ACKed it."""
    generation: int = env.publish(snapshot(listen_port=free_port()))
    await start(envoy, bootstrap("gw-1", xds_port=env.server.port, tls=client_tls(pki, "gw-1")))
    await env.status_where("gw-1", lambda s: s.acked_generation >= generation, timeout=ENVOY_TIMEOUT)
    return generation


def test_envoy_is_served_and_acks_over_mutual_tls(ads, pki: Path, envoy: Callable[..., EnvoyProcess]) -> None:
    listen_port = free_port()

    async def scenario(env: Any) -> None:
        generation = env.publish(snapshot(listen_port=listen_port))
        proxy = await start(envoy, bootstrap("gw-1", xds_port=env.server.port, tls=client_tls(pki, "gw-1")))
        status = await env.status_where("gw-1", lambda s: s.acked_generation >= generation, timeout=ENVOY_TIMEOUT)
        assert status.types[CLUSTER].version_acked is not None
        assert proxy.stat("cluster.xds_cluster.ssl.handshake") >= 1
        assert proxy.stat("control_plane.connected_state") == 1

    ads.run(scenario, tls=mutual(pki))


@pytest.mark.parametrize(
    ("node", "ca"), [pytest.param(None, "ca", id="no-certificate"), pytest.param("gw-1", "other-ca", id="other-ca")]
)
def test_envoy_without_a_certificate_from_the_ca_is_refused_and_served_nothing(
    ads, pki: Path, envoy: Callable[..., EnvoyProcess], node: str | None, ca: str
) -> None:
    async def scenario(env: Any) -> None:
        env.publish(snapshot(listen_port=free_port()))
        config = bootstrap("gw-1", xds_port=env.server.port, tls=client_tls(pki, node, ca=ca))
        proxy = await start(envoy, config, wait_live=False)
        failures = "cluster.xds_cluster.upstream_cx_total"
        await assert_served_nothing(proxy, failures=failures, what="Envoy to retry its refused xDS connection")
        assert env.cache.status("gw-1") is None

    ads.run(scenario, tls=mutual(pki))


def test_envoy_claiming_another_proxys_node_id_is_refused_while_the_real_one_is_served(
    ads, pki: Path, envoy: Callable[..., EnvoyProcess]
) -> None:
    async def scenario(env: Any) -> None:
        generation = await serve_gw1(env, envoy, pki)
        # gw-2's certificate, gw-1's node id: the impostor must not replace gw-1's row or get its config.
        impostor = await start(
            envoy, bootstrap("gw-1", xds_port=env.server.port, tls=client_tls(pki, "gw-2")), wait_live=False
        )
        failures = "cluster.xds_cluster.upstream_rq_total"  # TLS succeeds; each stream is refused
        await assert_served_nothing(impostor, failures=failures, what="the impostor to be refused again and again")
        assert [status.node_id for status in env.cache.statuses()] == ["gw-1"]
        assert env.cache.status("gw-1").acked_generation >= generation

    ads.run(scenario, tls=mutual(pki))


def test_a_replaced_server_certificate_serves_new_envoys_without_a_restart(
    ads, pki: Path, envoy: Callable[..., EnvoyProcess]
) -> None:
    issue_certificates(pki / "next-ca", clients=["gw-2"], namespace=NAMESPACE)
    ca = pki / "ca"

    async def scenario(env: Any) -> None:
        generation = await serve_gw1(env, envoy, pki)
        # Rotate the server's certificate to one from the next CA (client certificates stay on the old CA).
        for name in ("server.key", "server.crt"):
            shutil.copyfile(pki / "next-ca" / name, ca / f".{name}")
            (ca / f".{name}").replace(ca / name)
        trusts_next = XdsClientTls(
            ca_file=str(pki / "next-ca" / "ca.crt"), cert_file=str(ca / "gw-2.crt"), key_file=str(ca / "gw-2.key")
        )
        await start(envoy, bootstrap("gw-2", xds_port=env.server.port, tls=trusts_next))
        await env.status_where("gw-2", lambda s: s.acked_generation >= generation, timeout=ENVOY_TIMEOUT)
        # One that still trusts only the old CA now fails to verify the server.
        stale = await start(
            envoy, bootstrap("gw-1", xds_port=env.server.port, tls=client_tls(pki, "gw-1")), wait_live=False
        )
        what = "the stale Envoy to fail verifying the new server certificate, again and again"
        await assert_served_nothing(stale, failures="cluster.xds_cluster.ssl.fail_verify_error", what=what)
        # The Envoy connected before the rotation keeps its stream and its config.
        assert env.cache.status("gw-1") is not None

    ads.run(scenario, tls=mutual(pki))


def test_envoy_reaches_a_server_only_tls_port_without_a_client_certificate(
    ads, pki: Path, envoy: Callable[..., EnvoyProcess]
) -> None:
    ca = pki / "ca"
    tls = ServerTls(cert_file=ca / "server.crt", key_file=ca / "server.key")

    async def scenario(env: Any) -> None:
        generation = env.publish(snapshot(listen_port=free_port()))
        await start(envoy, bootstrap("any-name", xds_port=env.server.port, tls=client_tls(pki, None)))
        await env.status_where("any-name", lambda s: s.acked_generation >= generation, timeout=ENVOY_TIMEOUT)

    ads.run(scenario, tls=tls)
