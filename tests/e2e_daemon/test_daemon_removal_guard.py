"""The removal guard end to end: real git, the daemon process, a real Envoy gateway taking traffic."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from daemon_harness import HOST, Daemon, Mesh
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests

pytestmark = [pytest.mark.git, pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_commit_deleting_every_yaml_file_is_refused_and_traffic_keeps_flowing_until_the_marker_opts_in(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[[Daemon, Mesh], EnvoyProcess]
) -> None:
    daemon = daemons(repo=mesh.repo.url).start()
    daemon.wait_synced(mesh.initial_sha)
    gateway(daemon, mesh)
    removed: dict[str, str | None] = dict.fromkeys(mesh.files(v1=100, v2=0), None)

    emptied = mesh.repo.commit({**removed, "mesh/README.md": "# moved to another repo\n"}, "mesh: clean up")
    daemon.sync()
    status = daemon.wait_status("the emptying commit refused", lambda s: s["headSha"] == emptied and s["lastError"])

    assert status["reason"] == "RemovalRefused"
    assert "would remove all 4 served resources" in status["message"]
    assert status["served"]["sha"] == mesh.initial_sha
    assert send_requests(port=mesh.gateway_port, count=20, authority=HOST, workers=2).by_version == {"v1": 20}

    opted_in = mesh.repo.commit({"mesh/reconciler-allow-removal": ""}, "mesh: yes, remove all routing")
    daemon.sync()
    status = daemon.wait_status("the opted-in commit served", lambda s: (s["served"] or {}).get("sha") == opted_in)

    assert status["reason"] == "Applied"
    wait_for(
        "the gateway to lose its listener",
        lambda: not send_requests(port=mesh.gateway_port, count=5, authority=HOST, workers=1).by_version,
    )
