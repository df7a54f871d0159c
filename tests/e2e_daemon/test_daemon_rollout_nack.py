"""A real Envoy that NACKs a rollout's step fails the step: the rollout ends RolledBack with Envoy's word as its
reason, and every gateway routes by the weights from before the rollout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from daemon_harness import HOST, Daemon, Mesh, measure
from test_daemon_nack import busy_port  # noqa: F401 - the fixture
from test_daemon_rollout import POLICY
from test_daemon_rollout_proxies import rollout, rollout_phase, route_weights
from test_daemon_traffic import logged
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]


#: A second Gateway only ``ingress-2`` (label ``edge: "2"``) is selected by.
EDGE_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
spec:
  selector:
    edge: "2"
  servers:
  - port: {{number: {port}, name: http-edge, protocol: HTTP}}
    hosts: ["*"]
"""


def test_a_step_one_gateway_nacks_rolls_the_rollout_back_with_envoys_reason_and_every_gateway_routes_to_v1(
    mesh: Mesh,
    daemons: Callable[..., Daemon],
    gateway: Callable[..., EnvoyProcess],
    envoy: Callable[..., EnvoyProcess],
    busy_port: int,  # noqa: F811 - the fixture imported above
) -> None:
    daemon = daemons(repo=mesh.repo.url).start()
    first = gateway(daemon, mesh)  # ingress-1
    edge = ProxyIdentity(node_id="ingress-2", labels={"istio": "ingressgateway", "edge": "2"}, role=ProxyRole.GATEWAY)
    second = envoy(build_bootstrap(proxy=edge, xds_host="127.0.0.1", xds_port=daemon.xds_port, admin_port=0))
    daemon.wait_synced(mesh.initial_sha, proxies=2)
    with_policy = mesh.repo.commit({"mesh/policy.yaml": POLICY}, "reviews: walk weight changes")
    daemon.sync()
    daemon.wait_synced(with_policy, proxies=2)

    # All to v2, and a server on the edge gateway that ingress-2 cannot bind (the port is taken): it NACKs step 0.
    files = {**mesh.files(v1=0, v2=100), "mesh/edge.yaml": EDGE_GATEWAY.format(port=busy_port)}
    sha = mesh.repo.commit(files, "reviews: all to v2; an edge server")
    daemon.sync()
    wait_for("the rollout to roll back", lambda: rollout_phase(daemon) == "RolledBack", timeout=60)
    status = daemon.wait_status("every gateway on the last config both ACKed", lambda s: s["synced"], timeout=60)

    document = rollout(daemon)
    assert (document["sha"], document["step"]) == (sha, 0)
    assert document["message"].startswith("a proxy NACKed the weights of step 0: proxy ingress-2 rejected it: ")
    assert f"0.0.0.0_{busy_port}" in document["message"]
    assert document["served"]["default/reviews#1"] == {"reviews.example.com:v1": 100, "reviews.example.com:v2": 0}
    [decision] = [e for e in logged(daemon, "rollout.decision") if e["phase"] == "RolledBack"]
    assert (decision["action"], decision["sha"]) == ("roll_back", sha[:12])
    # The commit is refused as a whole (Envoy's word is final): the one both gateways ACKed is served again.
    assert status["reason"] == "Rejected"
    assert (status["lastError"]["sha"], status["served"]["sha"]) == (sha, with_policy)
    assert "ingress-2" in status["lastError"]["message"]
    for proxy in (first, second):
        assert route_weights(proxy).get("v2", 0) == 0
    routed = measure(mesh, count=200)
    assert (routed.share("v1"), routed.errors) == (100.0, {})
    assert send_requests(port=mesh.gateway_port, count=5, authority=HOST, workers=1).by_version == {"v1": 5}
