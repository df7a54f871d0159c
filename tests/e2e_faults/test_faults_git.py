"""The git remote failing under steady traffic through a real Envoy: answering errors, history rewritten.

(An unreachable remote is ``tests/e2e_daemon/test_daemon_git.py`` and, across a kill -9,
``test_daemon_restart.py``; a hung one is ``tests/sources/test_git_source.py``.)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
from daemon_harness import HOST, Daemon, Mesh
from steady_traffic import Traffic

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]


def test_a_remote_answering_errors_then_rewriting_history_keeps_serving_says_why_and_recovers_by_itself(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon = daemons(repo=mesh.repo.url, poll_interval="1s").start()
    gateway(daemon, mesh)
    canary = mesh.push_weights(80, 20)
    daemon.wait_synced(canary, proxies=1)

    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    try:
        # The remote's path now holds something that is not a repository: every fetch gets git's error.
        hidden = mesh.repo.bare.with_name("remote-real.git")
        mesh.repo.bare.rename(hidden)
        mesh.repo.bare.mkdir()
        (mesh.repo.bare / "HEAD").write_text("not a ref\n")
        failed = daemon.wait_status("a failed fetch", lambda s: s["reason"] == "FetchFailed")
        assert "not appear to be a git repository" in failed["lastError"]["message"]
        assert failed["served"]["sha"] == canary
        assert failed["ready"] is True
        shutil.rmtree(mesh.repo.bare)
        hidden.rename(mesh.repo.bare)

        # Someone force-pushes history without the canary: the daemon follows the branch as it now is.
        rewritten = mesh.repo.rewrite_to(mesh.initial_sha, mesh.files(v1=50, v2=50), "reviews: 50/50 (rewritten)")
        status = daemon.wait_synced(rewritten, proxies=1, timeout=30)  # the 1 s poll, no restart, no sync call
        traffic.wait_for(traffic.responses + 300)
    finally:
        traffic.stop()

    assert status["lastError"] is None
    assert '"event": "git.history_rewritten"' in daemon.log_since_start()
    assert traffic.errors == {}
    assert traffic.local_replies == {}
    assert set(traffic.by_status) == {200}
    assert daemon.running
