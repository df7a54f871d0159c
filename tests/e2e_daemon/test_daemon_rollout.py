"""Weights under a RolloutPolicy walk on real traffic: a failing canary is rolled back, a healthy one promoted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from daemon_harness import HOST, Daemon, Mesh, measure
from rollout_yaml import policy_yaml
from test_daemon_traffic import logged

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]

#: Short steps and few requests so a step is judged within seconds of steady traffic.
POLICY = policy_yaml(steps="10, 50", interval="2s", min_requests=20, max_interval="1m").decode()


@contextmanager
def steady_traffic(mesh: Mesh, *, port: int | None = None, count: int = 20, pause: float = 0.1) -> Iterator[None]:
    """``count`` requests through the gateway (or the proxy on ``port``) every ``pause`` s, until the block ends."""
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            send_requests(
                port=port or mesh.gateway_port, count=count, authority=HOST, workers=min(count, 2), deadline=30
            )
            stop.wait(pause)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(timeout=60)


def start_rollout_to_v2(
    mesh: Mesh,
    daemon: Daemon,
    *,
    policy: str = POLICY,
    proxies: int = 1,
    fault: Callable[[], None] = lambda: None,
    sidecars: bool = False,
) -> str:
    """The policy first (nothing to walk: served at once), then ``fault`` (v2 breaking), then a commit moving to v2.

    ``sidecars``: the VirtualService is bound to sidecars (``mesh``) too, from the policy's commit on.
    """
    to_v2 = mesh.files(v1=0, v2=100)  # before the fault: a stopped upstream has no port to read
    before: dict[str, str] = {}
    if sidecars:
        before = {"mesh/virtualservice.yaml": with_mesh(mesh.files(v1=100, v2=0)["mesh/virtualservice.yaml"])}
        to_v2["mesh/virtualservice.yaml"] = with_mesh(to_v2["mesh/virtualservice.yaml"])
    with_policy = mesh.repo.commit({**before, "mesh/policy.yaml": policy}, "reviews: walk weight changes")
    daemon.sync()
    daemon.wait_synced(with_policy, proxies=proxies)
    fault()
    sha = mesh.repo.commit(to_v2, "reviews: all to v2")
    daemon.sync()
    return sha


def with_mesh(virtualservice: str) -> str:
    """The template's VirtualService bound to the sidecars (``mesh``) as well as to the ingress gateway."""
    bound = virtualservice.replace("  - ingress ", "  - mesh\n  - ingress ", 1)
    assert bound != virtualservice
    return bound


def origin_change(status: dict[str, Any]) -> str | None:
    return (status.get("origin") or {}).get("change")


def test_a_canary_failing_30_percent_is_rolled_back_and_the_gateway_serves_v1_only_again(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon = daemons(repo=mesh.repo.url).start()
    gateway(daemon, mesh)
    daemon.wait_synced(mesh.initial_sha, proxies=1)
    mesh.v2.fail(fraction=0.3)

    with steady_traffic(mesh):
        sha = start_rollout_to_v2(mesh, daemon)
        status = daemon.wait_status("the rollout rolled back", lambda s: origin_change(s) == "rollback", timeout=90)

    assert status["served"]["sha"] == sha
    [first, *_, last] = [entry for entry in logged(daemon, "rollout.decision") if entry["sha"] == sha[:12]]
    assert (first["action"], first["step"]) == ("advance", 0)
    assert (last["phase"], last["action"], last["step"]) == ("RolledBack", "roll_back", 0)
    assert last["counts"]["reviews.example.com:v2"][1] > 0
    code, rollout = daemon.request("GET", "/api/v1/rollouts/default/reviews")
    assert code == 200, rollout
    assert (rollout["phase"], rollout["sha"]) == ("RolledBack", sha)
    assert rollout["goal"]["default/reviews#1"]["reviews.example.com:v2"] == 100
    assert rollout["served"]["default/reviews#1"] == {"reviews.example.com:v1": 100, "reviews.example.com:v2": 0}
    daemon.wait_synced(sha, proxies=1)
    after = measure(mesh, count=200)
    assert after.share("v1") == 100.0


def test_a_healthy_canary_is_promoted_to_gits_weights(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon = daemons(repo=mesh.repo.url).start()
    gateway(daemon, mesh)
    daemon.wait_synced(mesh.initial_sha, proxies=1)

    with steady_traffic(mesh):
        sha = start_rollout_to_v2(mesh, daemon)
        daemon.wait_status(
            "the rollout to finish",
            lambda s: any(e["phase"] == "Succeeded" for e in logged(daemon, "rollout.decision")),
            timeout=120,
        )

    steps = [(e["action"], e["step"]) for e in logged(daemon, "rollout.decision") if e["sha"] == sha[:12]]
    assert [move for move in steps if move[0] in ("advance", "finish")] == [
        ("advance", 0),
        ("advance", 1),
        ("finish", 2),
    ]
    daemon.wait_synced(sha, proxies=1)
    assert measure(mesh, count=200).share("v2") == 100.0
