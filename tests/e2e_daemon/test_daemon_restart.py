"""kill -9 the daemon: Envoy keeps routing, and the restarted daemon serves the same versions without git."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from daemon_harness import HOST, Daemon, Mesh

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(120)]


class Traffic(threading.Thread):
    """Requests through the gateway in bursts until stopped; tallies everything that came back."""

    def __init__(self, port: int) -> None:
        super().__init__(name="e2e-traffic", daemon=True)
        self._port = port
        self._stop_requested = threading.Event()
        self.by_status: Counter[int] = Counter()
        self.by_version: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.local_replies: Counter[str] = Counter()

    def run(self) -> None:
        # Bounded: at most 10 minutes of bursts even if nobody stops it (the test timeout is far shorter).
        for _ in range(6000):
            if self._stop_requested.is_set():
                return
            result = send_requests(port=self._port, count=50, authority=HOST, workers=2, deadline=10)
            self.by_status.update(result.by_status)
            self.by_version.update(result.by_version)
            self.errors.update(result.errors)
            self.local_replies.update(result.local_replies)

    def stop(self) -> None:
        self._stop_requested.set()
        self.join(timeout=30)

    @property
    def responses(self) -> int:
        return sum(self.by_status.values())

    def share(self, version: str) -> float:
        return 100.0 * self.by_version[version] / self.responses


def acked_versions(status: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    """What ``node_id`` has ACKed: its snapshot version and each type's version; None if not (yet) synced."""
    proxy = next((p for p in status["proxies"] if p["nodeId"] == node_id), None)
    if proxy is None or any(t["state"] != "SYNCED" for t in proxy["types"].values()):
        return None
    return {"snapshot": proxy["ackedSnapshotVersion"], **{name: t["acked"] for name, t in proxy["types"].items()}}


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

    traffic = Traffic(mesh.gateway_port)
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
        while traffic.responses < 1000 and traffic.is_alive():
            traffic.join(timeout=0.1)
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
