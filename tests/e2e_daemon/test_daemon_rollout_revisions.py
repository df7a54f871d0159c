"""A rollout meets new commits and too little traffic, through real git and a real Envoy gateway:
a revert ends it at once, a new goal restarts the walk from what is served, low traffic (none, or a trickle below
``minRequests``) follows ``onLowTraffic`` at ``maxInterval``."""

from __future__ import annotations

import pytest
from daemon_harness import Daemon, Mesh, measure
from rollout_yaml import policy_yaml
from test_daemon_rollout import origin_change, start_rollout_to_v2, steady_traffic
from test_daemon_rollout_proxies import logged_at, rollout, rollout_phase, route_weights
from test_daemon_traffic import logged
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]

#: Step 0 (10% of the way) is held for minutes: nothing is judged while the test commits again.
HELD = policy_yaml(steps="10, 50", interval="2m", min_requests=20, max_interval="5m").decode()
#: The log's times are to the microsecond, the controller's clock finer.
LOG_RESOLUTION = 1e-6


def low_traffic(on_low_traffic: str) -> str:
    """A policy whose steps, without any traffic, run out of ``maxInterval`` (2 s) after their ACK."""
    return policy_yaml(
        steps="10, 50", interval="1s", min_requests=20, max_interval="2s", on_low_traffic=on_low_traffic
    ).decode()


def held_at_step_0(mesh: Mesh, daemon: Daemon, *, policy: str = HELD) -> str:
    """A rollout of reviews to v2 whose step 0 (90/10) every proxy ACKed; its sha."""
    sha = start_rollout_to_v2(mesh, daemon, policy=policy)
    daemon.wait_status("step 0 ACKed", lambda s: s["synced"] and origin_change(s) == "rollout-step")
    return sha


def test_a_git_revert_mid_rollout_ends_it_reverted_and_serves_the_stable_weights_in_one_push(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, _ = served
    sha = held_at_step_0(mesh, daemon)

    reverted = mesh.repo.revert(sha)
    daemon.sync()
    daemon.wait_synced(reverted, proxies=1)

    assert (rollout(daemon)["phase"], rollout(daemon)["sha"]) == ("Reverted", sha)
    [decision] = [e for e in logged(daemon, "rollout.decision") if e["phase"] == "Reverted"]
    assert decision["action"] == "roll_back"
    assert decision["weights"]["default/reviews#1"] == {"reviews.example.com:v1": 100, "reviews.example.com:v2": 0}
    # One push serves the revert's (stable) weights: no step, no analysis.
    [published] = [e for e in logged(daemon, "engine.published") if e["sha"] == reverted[:12]]
    assert published["change"] == "commit"
    assert measure(mesh, count=200).share("v1") == 100.0


def test_a_new_goal_mid_rollout_supersedes_it_and_walks_from_the_weights_served_at_the_step(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, proxy = served
    sha = held_at_step_0(mesh, daemon)
    assert route_weights(proxy) == {"v1": 90, "v2": 10}

    halfway = mesh.push_weights(50, 50)
    daemon.sync()
    daemon.wait_synced(halfway, proxies=1)

    [superseded] = [e for e in logged(daemon, "rollout.decision") if e["phase"] == "Superseded"]
    assert (superseded["sha"], superseded["step"]) == (sha[:12], 0)
    walking = rollout(daemon)
    assert (walking["phase"], walking["step"], walking["sha"]) == ("Progressing", 0, halfway)
    assert walking["goal"]["default/reviews#1"] == {"reviews.example.com:v1": 50, "reviews.example.com:v2": 50}
    # 10% of the way from the 90/10 served at the old step to 50/50, not from 100/0 (pre-rollout) again.
    assert walking["served"]["default/reviews#1"] == {"reviews.example.com:v1": 86, "reviews.example.com:v2": 14}
    assert route_weights(proxy) == {"v1": 86, "v2": 14}


def test_a_step_without_traffic_is_stalled_at_max_interval_when_the_policy_says_hold(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, proxy = served
    held_at_step_0(mesh, daemon, policy=low_traffic("hold"))

    daemon.wait_status("the rollout to stall", lambda _: rollout_phase(daemon) == "Stalled", timeout=60)

    [stalled] = [e for e in logged(daemon, "rollout.decision") if e["phase"] == "Stalled"]
    assert (stalled["action"], stalled["step"]) == ("hold", 0)
    assert "too few requests within 2s" in stalled["reason"]
    # maxInterval after the step's ACK, not before.
    assert logged_at(stalled) - stalled["acked_at"] >= 2.0 - LOG_RESOLUTION
    assert route_weights(proxy) == {"v1": 90, "v2": 10}  # held at the step


def test_steps_without_traffic_are_promoted_at_max_interval_when_the_policy_says_promote(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess]
) -> None:
    daemon, _ = served
    sha = held_at_step_0(mesh, daemon, policy=low_traffic("promote"))

    daemon.wait_status("the rollout to succeed", lambda _: rollout_phase(daemon) == "Succeeded", timeout=60)

    promoted = [e for e in logged(daemon, "rollout.decision") if "promoting as the policy says" in e["reason"]]
    assert [(e["action"], e["step"]) for e in promoted] == [("advance", 1), ("finish", 2)]
    assert all(logged_at(e) - e["acked_at"] >= 2.0 - LOG_RESOLUTION for e in promoted)
    daemon.wait_synced(sha, proxies=1)
    assert measure(mesh, count=200).share("v2") == 100.0


#: Half the way at once, so a trickle reaches the canary; 100 canary requests are far off within 4 s.
TRICKLE_MIN_REQUESTS = 100


@pytest.mark.parametrize(("on_low_traffic", "phase"), [("hold", "Stalled"), ("rollback", "RolledBack")])
def test_a_step_with_a_trickle_below_min_requests_does_what_on_low_traffic_says_at_max_interval(
    mesh: Mesh, served: tuple[Daemon, EnvoyProcess], on_low_traffic: str, phase: str
) -> None:
    daemon, proxy = served
    policy = policy_yaml(
        steps="50", interval="1s", min_requests=TRICKLE_MIN_REQUESTS, max_interval="4s", on_low_traffic=on_low_traffic
    ).decode()

    with steady_traffic(mesh, count=1, pause=0.2):  # a trickle
        held_at_step_0(mesh, daemon, policy=policy)
        # A move's decision is logged once its push is published (translated off the loop): wait for the log.
        [decided] = wait_for(
            f"the rollout {phase}",
            lambda: [e for e in logged(daemon, "rollout.decision") if e["phase"] == phase],
            timeout=60,
        )
    assert (decided["action"], decided["step"]) == ({"hold": "hold", "rollback": "roll_back"}[on_low_traffic], 0)
    assert "too few requests within 4s" in decided["reason"]
    canary, _errors = decided["counts"]["reviews.example.com:v2"]
    assert 0 < canary < TRICKLE_MIN_REQUESTS  # traffic, not none: too little of it
    assert logged_at(decided) - decided["acked_at"] >= 4.0 - LOG_RESOLUTION
    if phase == "Stalled":
        assert route_weights(proxy) == {"v1": 50, "v2": 50}  # held at the step
    else:
        daemon.wait_status("the rollback ACKed", lambda s: s["synced"] and origin_change(s) == "rollback")
        assert measure(mesh, count=200).share("v1") == 100.0
