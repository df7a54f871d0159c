"""Rollouts over several real Envoy proxies (gateways, and a sidecar): each step is judged only once the last one
ACKed it, and a gateway connecting mid-step is served the step's weights."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from daemon_harness import HOST, Daemon, Mesh
from test_daemon_rollout import origin_change, start_rollout_to_v2, steady_traffic
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]

GATEWAYS = ("ingress-1", "ingress-2")


def log_entries(daemon: Daemon) -> list[dict[str, Any]]:
    entries = []
    for line in daemon.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def logged_at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def ack_times(entries: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """(proxy, generation) → when the proxy ACKed the last resource pushed to it for that generation.

    A push belongs to the generation last published before it (pushes go out after the publish, on the
    loop); its ACK is logged before the daemon counts it, so this time is at most the moment it was counted.
    """
    generation = 0
    pushed: dict[tuple[str, str, str], int] = {}
    acked: dict[tuple[str, int], float] = {}
    for entry in entries:
        event = entry["event"]
        if event == "engine.published":
            generation = entry["generation"]
        elif event in ("xds.push", "xds.ack"):
            resource = (entry["node_id"], entry["type"], entry["version"])
            if event == "xds.push":
                pushed[resource] = generation
            elif resource in pushed:
                key = (entry["node_id"], pushed[resource])
                acked[key] = max(acked.get(key, 0.0), logged_at(entry))
    return acked


def windows_opened_after_every_ack(
    entries: list[dict[str, Any]], *, sha: str, proxies: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Assert that the windows of steps 0 and 1 opened (on a recorded decision carrying the step's generation and
    ACK time) after every one of ``proxies`` ACKed the step; the rollout's decisions."""
    acked = ack_times(entries)
    decisions = [e for e in entries if e["event"] == "rollout.decision" and e["sha"] == sha[:12]]
    opened = {e["step"]: e for e in decisions if "analysis window opens" in e["reason"]}
    assert sorted(opened) == [0, 1]
    for step, decision in opened.items():
        last_ack = max(acked[(node_id, decision["generation"])] for node_id in proxies)
        assert decision["acked_at"] >= last_ack, f"step {step} judged before every one of {proxies} ACKed it"
    return decisions


def test_each_step_over_two_gateways_is_judged_only_after_the_last_gateway_acked_it(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon = daemons(repo=mesh.repo.url).start()
    for node_id in GATEWAYS:  # one listener port, shared (SO_REUSEPORT): traffic reaches both
        gateway(daemon, mesh, node_id=node_id)
    daemon.wait_synced(mesh.initial_sha, proxies=len(GATEWAYS))

    with steady_traffic(mesh):
        sha = start_rollout_to_v2(mesh, daemon, proxies=len(GATEWAYS))
        daemon.wait_status(
            "the rollout to finish",
            lambda _: rollout_phase(daemon) == "Succeeded",
            timeout=120,
        )

    entries = log_entries(daemon)
    acked = ack_times(entries)
    decisions = windows_opened_after_every_ack(entries, sha=sha, proxies=GATEWAYS)
    # Git's weights: Succeeded only once both gateways ACKed them.
    [succeeded] = [e for e in decisions if e["phase"] == "Succeeded"]
    assert logged_at(succeeded) >= max(acked[(node_id, succeeded["generation"])] for node_id in GATEWAYS)
    # And every step's weights were ACKed by both: the ACK status over proxies agrees.
    status = daemon.wait_synced(sha, proxies=len(GATEWAYS))
    assert sorted(p["nodeId"] for p in status["proxies"]) == list(GATEWAYS)


def test_a_step_is_not_judged_while_one_gateway_has_not_acked_it_and_is_once_it_has(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon, _ = served
    frozen = gateway(daemon, mesh, node_id=GATEWAYS[1])
    daemon.wait_synced(mesh.initial_sha, proxies=2)
    try:
        # Still connected, but stopped: it cannot ACK the step.
        start_rollout_to_v2(mesh, daemon, proxies=2, fault=lambda: os.kill(frozen.pid, signal.SIGSTOP))
        status = daemon.wait_status(
            "ingress-1 to ACK step 0", lambda s: origin_change(s) == "rollout-step" and acked(s, GATEWAYS[0])
        )
        one_acked = time.time()
        waiting = wait_for("a decision after ingress-1's ACK", lambda: after(rollout(daemon), one_acked))
        assert waiting["message"] == "waiting for every proxy to ACK step 0"
        assert (waiting["phase"], waiting["ackedAt"]) == ("Progressing", None)
        assert not acked(daemon.status(), GATEWAYS[1])
    finally:
        thawed = time.time()
        os.kill(frozen.pid, signal.SIGCONT)

    opened = wait_for("the step's window to open", lambda: rollout(daemon)["ackedAt"])
    assert opened >= thawed
    assert opened >= ack_times(log_entries(daemon))[(GATEWAYS[1], status["generation"])]


def acked(status: dict[str, Any], node_id: str) -> bool:
    """Whether ``node_id`` ACKed the served generation."""
    [proxy] = [p for p in status["proxies"] if p["nodeId"] == node_id]
    return bool(proxy["ackedGeneration"] >= status["generation"])


def after(document: dict[str, Any], moment: float) -> dict[str, Any] | None:
    """The rollout document if its latest decision (holds included) was made after ``moment``."""
    return document if document["decidedAt"] > moment else None


def rollout(daemon: Daemon) -> dict[str, Any]:
    code, document = daemon.request("GET", "/api/v1/rollouts/default/reviews")
    assert code == 200, document
    assert isinstance(document, dict)
    return document


def rollout_phase(daemon: Daemon) -> str | None:
    code, rollout = daemon.request("GET", "/api/v1/rollouts/default/reviews")
    return rollout["phase"] if code == 200 else None


def route_weights(proxy: EnvoyProcess) -> dict[str, int]:
    """The weighted clusters of the gateway's route to reviews, by subset (``v1``, ``v2``), from its config_dump."""
    dump = proxy.config_dump(resource="dynamic_route_configs")
    for config in dump["configs"]:
        for host in config["route_config"].get("virtual_hosts", []):
            for route in host.get("routes", []):
                clusters = route.get("route", {}).get("weighted_clusters", {}).get("clusters", [])
                if clusters:
                    return {c["name"].split("|")[2]: c.get("weight", 0) for c in clusters}
    return {}


def test_a_gateway_connecting_while_a_step_is_held_is_served_the_steps_weights(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon, first = served  # GATEWAYS[0]
    sha = start_rollout_to_v2(mesh, daemon)
    daemon.wait_status("step 0 ACKed", lambda s: s["synced"] and origin_change(s) == "rollout-step")
    code, paused = daemon.request("POST", "/api/v1/rollouts/default/reviews/pause")
    assert code == 200, paused
    assert (paused["phase"], paused["step"]) == ("Paused", 0)
    step = wait_for("the first gateway to route by step 0", lambda: route_weights(first).get("v2"))

    second = gateway(daemon, mesh, node_id=GATEWAYS[1])
    status = daemon.wait_synced(sha, proxies=2)

    assert 0 < step < 100
    assert route_weights(second) == route_weights(first) == {"v1": 100 - step, "v2": step}
    assert all(p["ackedGeneration"] == status["generation"] for p in status["proxies"])
    code, rollout = daemon.request("GET", "/api/v1/rollouts/default/reviews")
    assert code == 200, rollout
    assert (rollout["phase"], rollout["step"], rollout["served"]) == ("Paused", 0, paused["served"])


def test_each_step_over_a_gateway_and_a_sidecar_carrying_traffic_is_judged_only_after_both_acked_it(
    mesh: Mesh,
    served: tuple[Daemon, EnvoyProcess],
    envoy: Callable[..., EnvoyProcess],
    free_port: Callable[[], int],
) -> None:
    daemon, _ = served  # GATEWAYS[0]
    outbound = free_port()
    identity = ProxyIdentity(
        node_id="sidecar-1", labels={"app": "reviews-client"}, role=ProxyRole.SIDECAR, outbound_port=outbound
    )
    envoy(build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=daemon.xds_port, admin_port=0))
    proxies = (GATEWAYS[0], identity.node_id)

    with steady_traffic(mesh), steady_traffic(mesh, port=outbound):
        sha = start_rollout_to_v2(mesh, daemon, proxies=2, sidecars=True)
        daemon.wait_status("the rollout to finish", lambda _: rollout_phase(daemon) == "Succeeded", timeout=120)

    # The sidecar carries the route too: its ACK of each step is one the window waited for.
    windows_opened_after_every_ack(log_entries(daemon), sha=sha, proxies=proxies)
    daemon.wait_synced(sha, proxies=2)
    through_sidecar = send_requests(port=outbound, count=100, authority=HOST, workers=4, deadline=60)
    assert through_sidecar.share("v2") == 100.0
