"""kill -9 mid-rollout: the restarted daemon serves the step's weights at once and goes on with that step."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from daemon_harness import Daemon, Mesh, measure
from memsource import stored_sha
from rollout_yaml import policy_yaml
from test_daemon_rollout import origin_change, steady_traffic
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]

#: One step at 50%, long enough to kill the daemon inside it and measure the split after the restart.
POLICY = policy_yaml(steps="50", interval="15s", min_requests=20, max_interval="2m").decode()


def logged_since_start(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    """This run's JSON log entries named ``event``, oldest first."""
    entries = []
    for line in daemon.log_since_start().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == event:
                entries.append(entry)
    return entries


def test_a_daemon_killed_mid_rollout_serves_the_steps_weights_at_once_after_a_restart_and_finishes_the_step(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess], free_port: Callable[[], int]
) -> None:
    # Not port 0: the restart rebinds the same port, and one from the ephemeral range may be taken meanwhile.
    daemon = daemons(repo=mesh.repo.url, xds_port=free_port()).start()
    gateway(daemon, mesh)
    daemon.wait_synced(mesh.initial_sha, proxies=1)
    with_policy = mesh.repo.commit({"mesh/policy.yaml": POLICY}, "reviews: walk weight changes")
    daemon.sync()
    daemon.wait_synced(with_policy, proxies=1)
    sha = mesh.repo.commit(mesh.files(v1=0, v2=100), "reviews: all to v2")
    daemon.sync()
    daemon.wait_status(
        "the first step to be ACKed", lambda s: origin_change(s) == "rollout-step" and s["synced"], timeout=30
    )
    # Every proxy ACKed the step, so its commit becomes the stored last good: saved off the loop, a moment later.
    # A kill before that restores the commit before until the first pass resumes the step (docs/rollouts.md).
    wait_for("the step's commit stored as last good", lambda: stored_sha(daemon.state_dir) == sha)
    daemon.kill9()

    daemon.start()

    [first_published, *_] = logged_since_start(daemon, "engine.published")
    assert (first_published["sha"], first_published["change"]) == (sha[:12], "rollout-step")
    [resumed] = logged_since_start(daemon, "rollout.resumed")
    assert (resumed["phase"], resumed["step"]) == ("Progressing", 0)
    daemon.wait_synced(sha, proxies=1, timeout=45)
    assert measure(mesh, count=200).share("v2") == pytest.approx(50, abs=15)
    code, rollout = daemon.request("GET", "/api/v1/rollouts/default/reviews")
    assert code == 200, rollout
    assert (rollout["phase"], rollout["step"], rollout["sha"]) == ("Progressing", 0, sha)

    with steady_traffic(mesh):
        daemon.wait_status(
            "the resumed step to pass and the rollout to finish",
            lambda s: any(e["phase"] == "Succeeded" for e in logged_since_start(daemon, "rollout.decision")),
            timeout=120,
        )

    moves = [(e["action"], e["step"]) for e in logged_since_start(daemon, "rollout.decision")]
    assert ("finish", 1) in moves
    assert ("advance", 0) not in moves  # the step went on; no new rollout started
    daemon.wait_synced(sha, proxies=1)
    assert measure(mesh, count=200).share("v2") == 100.0
