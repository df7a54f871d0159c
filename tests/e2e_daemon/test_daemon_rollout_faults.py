"""A canary that is slow, or refuses connections, is rolled back by itself on real traffic through real Envoy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemon_harness import Daemon, Mesh, measure
from rollout_yaml import policy_yaml
from test_daemon_rollout import origin_change, start_rollout_to_v2, steady_traffic
from test_daemon_traffic import logged

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]


def rolled_back(mesh: Mesh, daemon: Daemon, *, policy: str, fault: Callable[[], None]) -> dict[str, Any]:
    """Walk reviews to a faulty v2 under ``policy`` with traffic flowing until it is rolled back; its last decision."""
    with steady_traffic(mesh):
        sha = start_rollout_to_v2(mesh, daemon, policy=policy, fault=fault)
        daemon.wait_status("the rollout rolled back", lambda s: origin_change(s) == "rollback", timeout=90)
    [*_, last] = [entry for entry in logged(daemon, "rollout.decision") if entry["sha"] == sha[:12]]
    assert (last["phase"], last["action"], last["step"]) == ("RolledBack", "roll_back", 0)
    daemon.wait_synced(sha, proxies=1)
    return last


def test_a_canary_500_ms_slower_is_rolled_back_on_its_latency_check(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, _ = served
    policy = policy_yaml(
        steps="10, 50",
        interval="2s",
        min_requests=20,
        max_interval="1m",
        checks=("{metric: latency, percentile: 99, max: 200ms}",),
    ).decode()

    last = rolled_back(mesh, daemon, policy=policy, fault=lambda: mesh.v2.delay(0.5))

    [(metric, outcome, _, threshold)] = last["checks"]
    assert (metric, outcome, threshold) == ("latency", "FAIL", 0.01)  # p99 <= 200ms: at most 1% slower
    assert last["counts"]["reviews.example.com:v2"][1] == 0  # no errors: slowness alone rolled it back
    assert "slower than 200ms" in last["reason"]
    after = measure(mesh, count=200)
    assert after.share("v1") == 100.0


def test_a_canary_refusing_connections_is_rolled_back_and_users_see_v1_only_again(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, _ = served
    policy = policy_yaml(steps="10, 50", interval="2s", min_requests=20, max_interval="1m").decode()

    last = rolled_back(mesh, daemon, policy=policy, fault=mesh.v2.stop)  # its port refuses connections

    requests, errors = last["counts"]["reviews.example.com:v2"]
    assert 0 < errors <= requests
    [(metric, outcome, *_)] = last["checks"]
    assert (metric, outcome) == ("error-rate", "FAIL")
    after = measure(mesh, count=200)
    assert (after.share("v1"), after.status_share(200)) == (100.0, 100.0)
