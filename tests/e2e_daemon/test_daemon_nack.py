"""Envoy's word is final: a commit the gateway NACKs is Rejected and the gateway routes the old way again."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from daemon_harness import CLI, Daemon, Mesh, line_of, measure, run_command

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(150)]

#: 1,000 requests at p = 0.5 have a standard deviation of 1.6 points; 6 points is ~4 of them.
TOLERANCE = 6.0


@pytest.fixture
def busy_port(free_port: Callable[[], int]) -> Iterator[int]:
    """A port another process holds on every address (no SO_REUSEPORT): Envoy cannot bind it."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("0.0.0.0", port))
        holder.listen()
        yield port


def with_server_on(gateway_yaml: str, port: int) -> str:
    """The template Gateway with a second plain-HTTP server on ``port``."""
    return gateway_yaml + (
        f'  - port:\n      number: {port}\n      name: http-extra\n      protocol: HTTP\n    hosts:\n    - "*"\n'
    )


def test_a_commit_the_gateway_nacks_is_rejected_rolled_back_and_a_later_commit_applies(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess], busy_port: int
) -> None:
    daemon = daemons(repo=mesh.repo.url).start()
    gateway(daemon, mesh)
    daemon.wait_synced(mesh.initial_sha, proxies=1)

    # Valid Istio config, and a weight change, but the new port is taken on the gateway's host.
    files = mesh.files(v1=50, v2=50)
    files["mesh/gateway.yaml"] = with_server_on(files["mesh/gateway.yaml"], busy_port)
    rejected = mesh.repo.commit(files, "gateway: second port; reviews 50/50")
    daemon.sync()
    status = daemon.wait_status(
        "the NACKed commit rejected and the first one ACKed again",
        lambda s: (s["lastError"] or {}).get("sha") == rejected and s["synced"],
        timeout=40,
    )

    assert status["reason"] == "Rejected"
    assert status["headSha"] == rejected
    assert status["served"]["sha"] == mesh.initial_sha
    assert "ingress-1" in status["lastError"]["message"]
    assert f"0.0.0.0_{busy_port}" in status["lastError"]["message"]
    [finding] = status["lastError"]["findings"]
    assert (finding["file"], finding["line"], finding["code"]) == (
        "mesh/gateway.yaml",
        line_of(files["mesh/gateway.yaml"], f"number: {busy_port}"),
        "RC0301",
    )
    code, ready = daemon.request("GET", "/readyz")
    assert (code, ready["reason"]) == (200, "Rejected")  # every proxy runs a config it accepted
    routed = measure(mesh)
    assert routed.share("v1") == 100.0
    assert routed.errors == {}
    shown = run_command([*CLI, "status", "--server", daemon.url], timeout=30)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"ERROR    Rejected at {rejected[:12]}" in shown.stdout

    # Not retried on a poll; a new commit is tried normally.
    split = mesh.push_weights(50, 50)
    daemon.sync()
    status = daemon.wait_synced(split, proxies=1, timeout=40)
    assert status["reason"] == "Applied"
    assert measure(mesh).share("v2") == pytest.approx(50, abs=TOLERANCE)
    shown = run_command([*CLI, "status", "--server", daemon.url], timeout=30)
    assert shown.returncode == 0, shown.stdout + shown.stderr
