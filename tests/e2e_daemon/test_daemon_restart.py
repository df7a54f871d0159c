"""kill -9 the daemon: Envoy keeps routing, and the restarted daemon serves the same versions without git."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from daemon_harness import HOST, Daemon, Mesh
from steady_traffic import Traffic, acked_versions

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(120)]


def test_envoy_keeps_routing_through_a_kill_9_and_the_restarted_daemon_serves_the_same_versions_before_git_answers(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess], free_port: Callable[[], int]
) -> None:
    # Not port 0: the restart rebinds the same port, and one from the ephemeral range may be taken meanwhile.
    daemon = daemons(repo=mesh.repo.url, poll_interval="60s", xds_port=free_port()).start()
    daemon.wait_synced(mesh.initial_sha)
    gateway(daemon, mesh)
    canary = mesh.push_weights(80, 20)
    daemon.sync()
    synced = daemon.wait_synced(canary, proxies=1)
    before = acked_versions(synced, "ingress-1")
    assert before is not None

    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    try:
        daemon.kill9()
        away = mesh.repo.bare.with_name("remote-away.git")
        mesh.repo.bare.rename(away)  # git is unreachable from here on
        daemon.start()  # same state dir, same xDS port

        status = daemon.wait_status(
            "the gateway to reconnect and ACK the restored snapshot",
            lambda s: acked_versions(s, "ingress-1") is not None,
            timeout=45,
        )
        assert acked_versions(status, "ingress-1") == before
        assert status["served"]["sha"] == canary
        status = daemon.wait_status("the fetch to fail", lambda s: s["reason"] == "FetchFailed")
        assert status["served"]["sha"] == canary
        assert status["lastError"]["reason"] == "FetchFailed"
        assert acked_versions(status, "ingress-1") == before
        # At least a thousand requests in all, spanning the outage and the reconnect.
        traffic.wait_for(1000)
    finally:
        traffic.stop()

    assert traffic.errors == {}
    assert traffic.local_replies == {}
    assert set(traffic.by_status) == {200}
    assert traffic.share("v2") == pytest.approx(20, abs=5)

    away.rename(mesh.repo.bare)
    daemon.sync()
    status = daemon.wait_synced(canary, proxies=1)
    assert status["reason"] == "UpToDate"
    assert acked_versions(status, "ingress-1") == before
