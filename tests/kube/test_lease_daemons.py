"""Two ``reconciler run --leader-elect`` processes on one git repo and a real kube-apiserver.

The leader serves a real Envoy gateway (whose xDS cluster lists both daemons: a follower's xDS
port is closed, so the gateway connects to whichever leads); ``kill -9`` the leader mid-rollout,
and the follower takes the Lease once it expired and goes on with the rollout's step from the
state the leader left in the cluster. A clean stop releases the Lease (taken at once); a leader
whose Lease is taken steps down, and so does one cut off from its API server (a private cluster
whose API server the test stops and restarts).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kube_cluster import KubeCluster, started_cluster
from prometheus_client.parser import text_string_to_metric_families

from reconciler.cli.exitcode import ExitCode
from reconciler.engine.cluster_state import DATA_KEY, configmap_path
from reconciler.harness.envoy import EnvoyProcess
from reconciler.kube.lease import lease_path
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

# The daemon end-to-end fixtures (a mesh repo, upstreams, daemon processes), loaded as tests/e2e_faults does.
_E2E_DAEMON = Path(__file__).resolve().parent.parent / "e2e_daemon"
sys.path.insert(0, str(_E2E_DAEMON))
_spec = importlib.util.spec_from_file_location("e2e_daemon_fixtures_for_kube", _E2E_DAEMON / "conftest.py")
assert _spec is not None
assert _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
mesh = _fixtures.mesh
daemons = _fixtures.daemons
gateway = _fixtures.gateway

from daemon_harness import CLI, HOST, Daemon, Mesh, measure, run_command  # noqa: E402
from rollout_yaml import policy_yaml  # noqa: E402
from test_daemon_rollout import origin_change, steady_traffic  # noqa: E402
from test_daemon_rollout_restart import logged_since_start  # noqa: E402
from waiting import wait_for  # noqa: E402

from reconciler.harness.traffic import send_requests  # noqa: E402

pytestmark = [
    pytest.mark.git,
    pytest.mark.envoy,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.xdist_group("kube"),
]

#: Short durations so a takeover happens within a test (the defaults are 15 s / 10 s / 2 s).
LEASE_SECONDS, RENEW_SECONDS, RETRY_SECONDS = 4.0, 3.0, 0.5
#: One step at 50%, held without traffic (minRequests), so the leader can be killed inside it.
POLICY = policy_yaml(steps="50", interval="10s", min_requests=20, max_interval="5m").decode()


def elected(
    daemons: Callable[..., Daemon],
    mesh: Mesh,
    kube: KubeCluster,
    namespace: str,
    *,
    http_port: int,
    xds_port: int,
    lease: float = LEASE_SECONDS,
    renew: float = RENEW_SECONDS,
) -> Daemon:
    """A daemon (not started) that elects a leader over the Lease ``namespace/reconciler``."""
    daemon = daemons(
        repo=mesh.repo.url,
        xds_port=xds_port,
        extra_args=[
            # After the harness's own --http-address: a follower logs no daemon.started to read its port from.
            f"--http-address=127.0.0.1:{http_port}",
            f"--kubeconfig={kube.kubeconfig}",
            "--leader-elect",
            f"--leader-elect-resource-namespace={namespace}",
            f"--leader-elect-lease-duration={lease:g}s",
            f"--leader-elect-renew-deadline={renew:g}s",
            f"--leader-elect-retry-period={RETRY_SECONDS:g}s",
        ],
    )
    daemon.http_port = http_port
    return daemon


def identity(daemon: Daemon) -> str:
    return f"{socket.gethostname()}_{daemon.pid}"


def lease(kube: KubeCluster, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = kube.request("GET", lease_path(namespace, "reconciler"))["spec"]
    return spec


def readyz(daemon: Daemon) -> tuple[int, Any]:
    return daemon.request("GET", "/readyz")


def wait_follower(daemon: Daemon, *, leader: Daemon) -> None:
    """Until ``daemon`` answers its probe as a follower of ``leader``."""

    def following() -> bool:
        code, body = readyz(daemon)
        return code == 503 and body["reason"] == "Follower" and identity(leader) in body["message"]

    wait_for("the second daemon to answer /readyz as a follower", following, timeout=30)


def stored_rollouts(kube: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    found = kube.request("GET", configmap_path(namespace, "reconciler-rollouts"))
    rollouts: list[dict[str, Any]] = json.loads(found["data"][DATA_KEY])["rollouts"]
    return rollouts


def walk_to_the_first_step(leader: Daemon, mesh: Mesh, kube: KubeCluster, namespace: str) -> str:
    """Commit :data:`POLICY`, then git's 0/100: the rollout's first step ACKed and stored; the commit's sha."""
    with_policy = mesh.repo.commit({"mesh/policy.yaml": POLICY}, "reviews: walk weight changes")
    leader.sync()
    leader.wait_synced(with_policy, proxies=1, timeout=45)
    sha: str = mesh.repo.commit(mesh.files(v1=0, v2=100), "reviews: all to v2")
    leader.sync()
    leader.wait_status(
        "the first step to be ACKed", lambda s: origin_change(s) == "rollout-step" and s["synced"], timeout=30
    )
    wait_for(
        "the step stored in the cluster",
        lambda: [(r["sha"], r["state"]["phase"]) for r in stored_rollouts(kube, namespace)] == [(sha, "Progressing")],
    )
    return sha


def test_the_follower_takes_the_lease_of_a_leader_killed_mid_rollout_and_goes_on_with_its_step(  # noqa: PLR0917
    kube: KubeCluster,
    namespace: str,
    mesh: Mesh,
    daemons: Callable[..., Daemon],
    envoy: Callable[..., EnvoyProcess],
    free_port: Callable[[], int],
) -> None:
    first = elected(daemons, mesh, kube, namespace, http_port=free_port(), xds_port=free_port()).start()
    second = elected(daemons, mesh, kube, namespace, http_port=free_port(), xds_port=free_port())
    second.launch()
    wait_follower(second, leader=first)
    assert lease(kube, namespace)["holderIdentity"] == identity(first)

    # One gateway knowing both daemons: the follower's xDS port is closed, so it connects to the leader.
    proxy = ProxyIdentity(node_id="ingress-1", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)
    bootstrap = build_bootstrap(proxy=proxy, xds_host="127.0.0.1", xds_port=first.xds_port, admin_port=0)
    [xds_cluster] = bootstrap["static_resources"]["clusters"]
    endpoints = xds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    endpoints.append(
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": second.xds_port}}}}
    )
    envoy(bootstrap)
    first.wait_synced(mesh.initial_sha, proxies=1, timeout=45)
    sha = walk_to_the_first_step(first, mesh, kube, namespace)

    first.kill9()
    killed_at = time.time()
    renewed_by_first = datetime.fromisoformat(lease(kube, namespace)["renewTime"])
    wait_for(
        "the follower to take the Lease",
        lambda: lease(kube, namespace)["holderIdentity"] == identity(second),
        timeout=60,
    )
    taken = lease(kube, namespace)
    acquired = datetime.fromisoformat(taken["acquireTime"])
    print(
        f"takeover: Lease acquired {acquired.timestamp() - killed_at:.2f} s after kill -9 (lease {LEASE_SECONDS:g} s)"
    )
    # Never before the dead leader's Lease expired (counted from when the follower saw its last renewal).
    assert (acquired - renewed_by_first).total_seconds() >= LEASE_SECONDS
    assert taken["leaseTransitions"] == 1

    # The new leader serves the step's weights from the rollout state it read, not git's 0/100.
    [resumed] = wait_for("the rollout resumed", lambda: logged_since_start(second, "rollout.resumed"), timeout=60)
    assert (resumed["phase"], resumed["step"], resumed["sha"]) == ("Progressing", 0, sha[:12])
    second.wait_synced(sha, proxies=1, timeout=60)
    wait_for(
        "the gateway to route through the new leader's config",
        lambda: send_requests(port=mesh.gateway_port, count=5, authority=HOST, workers=1).by_version,
    )
    assert measure(mesh, count=200).share("v2") == pytest.approx(50, abs=15)
    code, rollout = second.request("GET", "/api/v1/rollouts/default/reviews")
    assert code == 200, rollout
    assert (rollout["phase"], rollout["step"], rollout["sha"]) == ("Progressing", 0, sha)

    with steady_traffic(mesh):
        second.wait_status(
            "the resumed step to pass and the rollout to finish",
            lambda s: any(e["phase"] == "Succeeded" for e in logged_since_start(second, "rollout.decision")),
            timeout=120,
        )
    moves = [(e["action"], e["step"]) for e in logged_since_start(second, "rollout.decision")]
    assert ("finish", 1) in moves
    assert ("advance", 0) not in moves  # the step went on; no new rollout started
    assert measure(mesh, count=200).share("v2") == 100.0
    assert [r["state"]["phase"] for r in stored_rollouts(kube, namespace)] == ["Succeeded"]


def leader_and_follower(
    daemons: Callable[..., Daemon], mesh: Mesh, kube: KubeCluster, namespace: str, *, free_port: Callable[[], int]
) -> tuple[Daemon, Daemon]:
    """Two daemons on a minute-long Lease (no expiry within a test): the first leads, the second follows it."""
    pair = [
        elected(daemons, mesh, kube, namespace, http_port=free_port(), xds_port=free_port(), lease=60, renew=40)
        for _ in range(2)
    ]
    pair[0].start()
    pair[1].launch()
    wait_follower(pair[1], leader=pair[0])
    return pair[0], pair[1]


def leader_metrics(daemon: Daemon) -> tuple[float, float]:
    """``reconciler_leader`` and ``reconciler_leader_transitions_total`` as ``daemon`` serves them now."""
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples = {
        sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples
    }
    return samples["reconciler_leader"], samples["reconciler_leader_transitions_total"]


def test_a_follower_turns_writes_away_with_503_naming_the_leader_and_the_cli_exits_5_saying_so(
    kube: KubeCluster, namespace: str, mesh: Mesh, daemons: Callable[..., Daemon], free_port: Callable[[], int]
) -> None:
    leader, follower = leader_and_follower(daemons, mesh, kube, namespace, free_port=free_port)

    for path in ("/api/v1/rollouts/default/reviews/promote", "/api/v1/sync", "/hooks/git"):
        code, body = follower.request("POST", path)
        assert (code, body["reason"], body["leader"]) == (503, "Follower", identity(leader)), path
        assert identity(leader) in body["error"]
    assert follower.request("GET", "/api/v1/rollouts")[0] == 503  # it holds no rollouts: not an empty list
    assert follower.request("GET", "/api/v1/status")[0] == 200  # reads of its own state stay open
    assert leader.request("POST", "/api/v1/rollouts/default/reviews/promote")[0] == 404  # the leader answers itself
    assert leader.request("POST", "/api/v1/sync")[0] == 202

    for argv in (["rollout", "promote", "reviews"], ["rollout", "status", "reviews"], ["status"]):
        done = run_command([*CLI, *argv, "--server", follower.url], timeout=60)
        assert done.returncode == ExitCode.STANDBY, (argv, done.stdout, done.stderr)
        assert "is a follower" in done.stderr
        assert identity(leader) in done.stderr

    assert leader_metrics(leader) == (1.0, 0.0)
    assert leader_metrics(follower) == (0.0, 0.0)
    assert leader.signal_and_wait(signal.SIGTERM, timeout=30) == 0
    wait_for("the follower to lead", lambda: readyz(follower)[0] == 200, timeout=30)
    assert leader_metrics(follower) == (1.0, 1.0)
    assert follower.request("POST", "/api/v1/sync")[0] == 202


def test_a_leader_stopped_cleanly_releases_the_lease_and_the_follower_leads_at_once(
    kube: KubeCluster, namespace: str, mesh: Mesh, daemons: Callable[..., Daemon], free_port: Callable[[], int]
) -> None:
    # A minute-long Lease: the follower leading within the wait below can only be the release.
    first, second = leader_and_follower(daemons, mesh, kube, namespace, free_port=free_port)

    assert first.signal_and_wait(signal.SIGTERM, timeout=30) == 0
    assert logged_since_start(first, "leader.released")
    wait_for("the follower to lead", lambda: readyz(second)[0] == 200, timeout=30)
    spec = lease(kube, namespace)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == (identity(second), 1)
    assert logged_since_start(second, "daemon.started")


def test_a_leader_whose_lease_is_taken_steps_down_and_exits(
    kube: KubeCluster, namespace: str, mesh: Mesh, daemons: Callable[..., Daemon], free_port: Callable[[], int]
) -> None:
    leader = elected(daemons, mesh, kube, namespace, http_port=free_port(), xds_port=free_port(), lease=60, renew=40)
    leader.start()
    taken = kube.request("GET", lease_path(namespace, "reconciler"))
    taken["spec"]["holderIdentity"] = "intruder"
    kube.request("PUT", lease_path(namespace, "reconciler"), taken)

    # Within a retry period or two, not after the renew deadline: another holder means another leader now.
    assert leader.wait_exit(timeout=30) == 1
    [lost] = logged_since_start(leader, "leader.lost")
    assert "intruder" in lost["reason"]
    assert not logged_since_start(leader, "leader.released")  # not its Lease to release
    assert lease(kube, namespace)["holderIdentity"] == "intruder"


@pytest.fixture
def own_kube() -> Iterator[KubeCluster]:
    """A cluster of this test's own: its API server is stopped mid-test, which the session's must not be."""
    cluster = started_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def events(daemon: Daemon) -> list[str]:
    """The event names this run logged, in order."""
    names = []
    for line in daemon.log_since_start().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("event"), str):
            names.append(entry["event"])
    return names


def test_a_leader_cut_off_from_the_api_server_steps_down_moves_no_rollout_and_leads_again_after_the_outage(
    own_kube: KubeCluster,
    mesh: Mesh,
    daemons: Callable[..., Daemon],
    gateway: Callable[..., EnvoyProcess],
    free_port: Callable[[], int],
) -> None:
    kube, namespace = own_kube, "mesh-system"
    kube.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    leader = elected(daemons, mesh, kube, namespace, http_port=free_port(), xds_port=free_port()).start()
    gateway(leader, mesh)
    sha = walk_to_the_first_step(leader, mesh, kube, namespace)

    # Traffic through the outage: a leader that went on judging would pass the step after its 10 s interval.
    with steady_traffic(mesh):
        kube.stop_apiserver()  # etcd stays: the API server alone is gone (stopping etcd first would hang it)
        stopped = time.monotonic()
        assert leader.wait_exit(timeout=60) == 1
        print(f"outage: the leader exited {time.monotonic() - stopped:.2f} s after its API server stopped")
    [lost] = logged_since_start(leader, "leader.lost")
    assert lost["reason"] == f"not renewed for {RENEW_SECONDS:g}s"
    after = events(leader)[events(leader).index("leader.lost") :]
    assert "rollout.decision" not in after
    assert "leader.released" not in after  # the API server is gone; the Lease expires instead

    kube.restart_apiserver()
    assert [(r["sha"], r["state"]["phase"], r["state"]["step"]) for r in stored_rollouts(kube, namespace)] == [
        (sha, "Progressing", 0)
    ]
    leader.start()  # a new process, a new identity: it waits for the old Lease to expire, then leads
    assert readyz(leader)[0] == 200
    spec = lease(kube, namespace)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == (identity(leader), 1)
    [resumed] = wait_for("the rollout resumed", lambda: logged_since_start(leader, "rollout.resumed"), timeout=60)
    assert (resumed["phase"], resumed["step"], resumed["sha"]) == ("Progressing", 0, sha[:12])
