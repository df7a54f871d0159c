"""``reconciler run`` over mutual TLS: a gateway whose bootstrap comes from ``reconciler bootstrap``
(certificates from ``reconciler certs``) is served and routes traffic; an Envoy claiming the
gateway's node id with another proxy's certificate is refused, and status shows one gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from daemon_harness import CLI, HOST, Daemon, Mesh, run_command
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests

NAMESPACE = "istio-system"
COMMAND_TIMEOUT = 60.0


def cli(*args: str) -> str:
    result = run_command([*CLI, *args], timeout=COMMAND_TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def gateway_bootstrap(certs: Path, *, node_id: str, cert_of: str, xds_port: int) -> dict[str, Any]:
    """``reconciler bootstrap`` for a gateway named ``node_id`` presenting ``cert_of``'s certificate."""
    text = cli(
        "bootstrap", "--node-id", node_id, "--xds-address", f"127.0.0.1:{xds_port}", "--admin-address", "127.0.0.1:0",
        "--label", "istio=ingressgateway", "--role", "gateway", "--namespace", NAMESPACE,
        "--xds-ca", str(certs / "ca.crt"), "--xds-client-cert", str(certs / f"{cert_of}.crt"),
        "--xds-client-key", str(certs / f"{cert_of}.key"),
    )  # fmt: skip
    bootstrap: dict[str, Any] = yaml.safe_load(text)
    return bootstrap


def test_a_gateway_is_served_over_mutual_tls_and_an_impostor_of_its_node_id_is_refused(
    tmp_path: Path, mesh: Mesh, daemons: Callable[..., Daemon], envoy: Callable[..., EnvoyProcess]
) -> None:
    certs = tmp_path / "certs"
    printed = cli(
        "certs", "--out", str(certs), "--client", "ingress-1", "--client", "ingress-2", "--namespace", NAMESPACE
    )
    assert str(certs / "ingress-1.key") in printed
    assert (certs / "ingress-1.key").stat().st_mode & 0o777 == 0o600
    daemon = daemons(
        repo=str(mesh.repo.bare),
        extra_args=[
            "--xds-tls-cert", str(certs / "server.crt"), "--xds-tls-key", str(certs / "server.key"),
            "--xds-client-ca", str(certs / "ca.crt"),
        ],
    ).start()  # fmt: skip
    daemon.wait_synced(mesh.initial_sha)

    envoy(gateway_bootstrap(certs, node_id="ingress-1", cert_of="ingress-1", xds_port=daemon.xds_port))
    daemon.wait_synced(mesh.initial_sha, proxies=1)
    result = wait_for(
        "the gateway to route over its mutual-TLS config",
        lambda: send_requests(port=mesh.gateway_port, count=5, authority=HOST, workers=1),
    )
    assert result.by_version == {"v1": 5}

    impostor_config = gateway_bootstrap(certs, node_id="ingress-1", cert_of="ingress-2", xds_port=daemon.xds_port)
    del impostor_config["stats_config"]  # every stat, so its xds_cluster's request count can be read
    impostor = envoy(impostor_config, wait_live=False)
    wait_for(
        "the impostor's streams to be refused again and again",
        lambda: impostor.stat("cluster.xds_cluster.upstream_rq_total") >= 3,
        timeout=30.0,
    )
    # Not connected_state: with a fast reconnect backoff a refused stream is "connected" for a moment each time.
    assert impostor.stat("cluster_manager.cds.update_success") == 0
    assert impostor.stat("listener_manager.lds.update_success") == 0
    assert impostor.config_dump(resource="dynamic_active_clusters").get("configs", []) == []
    status = daemon.status()
    assert [proxy["nodeId"] for proxy in status["proxies"]] == ["ingress-1"]
    assert '"event": "xds.refused"' in daemon.log_since_start()
