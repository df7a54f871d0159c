"""The git remote failing under steady traffic through a real Envoy: answering errors, history rewritten, hanging.

(An unreachable remote is ``tests/e2e_daemon/test_daemon_git.py`` and, across a kill -9,
``test_daemon_restart.py``; a clone from a hung remote is ``tests/sources/test_git_source.py``.)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
from daemon_harness import HOST, Daemon, Mesh
from gitrepo import git_daemon, has_git_daemon
from stalling_remote import StallingRemote
from steady_traffic import Traffic
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]


def _serving_canary_under_traffic(
    daemon: Daemon, mesh: Mesh, gateway: Callable[..., EnvoyProcess]
) -> tuple[str, Traffic]:
    """A gateway fed by ``daemon`` serving an 80/20 commit, and steady traffic through it (started)."""
    gateway(daemon, mesh)
    canary = mesh.push_weights(80, 20)
    daemon.wait_synced(canary, proxies=1)
    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    return canary, traffic


def _assert_no_request_failed(traffic: Traffic, daemon: Daemon) -> None:
    assert traffic.errors == {}
    assert traffic.local_replies == {}
    assert set(traffic.by_status) == {200}
    assert daemon.running


def test_a_remote_answering_errors_then_rewriting_history_keeps_serving_says_why_and_recovers_by_itself(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess]
) -> None:
    daemon = daemons(repo=mesh.repo.url, poll_interval="1s").start()
    canary, traffic = _serving_canary_under_traffic(daemon, mesh, gateway)
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
    _assert_no_request_failed(traffic, daemon)


@pytest.mark.skipif(not has_git_daemon(), reason="git daemon is not installed")
def test_a_remote_that_accepts_and_never_answers_times_out_keeps_serving_retries_and_recovers_by_itself(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[..., EnvoyProcess]
) -> None:
    with git_daemon(mesh.repo.bare.parent) as port, StallingRemote(port) as front:
        url = f"git://127.0.0.1:{front.port}/{mesh.repo.bare.name}"
        daemon = daemons(repo=url, poll_interval="1s", extra_args=["--git-timeout", "2s"]).start()
        canary, traffic = _serving_canary_under_traffic(daemon, mesh, gateway)
        try:
            # The remote now takes connections and says nothing; a commit waits there meanwhile.
            front.stall()
            half = mesh.push_weights(50, 50)
            hung = daemon.wait_status("a timed-out fetch", lambda s: s["reason"] == "FetchFailed", timeout=60)
            # Each later poll tries again (and hangs again) rather than giving up on the remote.
            wait_for("a retry after the timeout", lambda: front.stalled >= 2, timeout=60)
            during = daemon.status()
            front.answer()
            recovered = daemon.wait_synced(half, proxies=1, timeout=60)  # no restart, no sync call
            traffic.wait_for(traffic.responses + 300)
        finally:
            traffic.stop()

    assert hung["lastError"]["message"].startswith("FetchTimedOut: git fetch of git://127.0.0.1:")
    assert "did not finish within 2 s (--git-timeout)" in hung["lastError"]["message"]
    for status in (hung, during):
        assert status["served"]["sha"] == canary
        assert status["ready"] is True
    assert recovered["lastError"] is None
    assert '"reason": "FetchTimedOut"' in daemon.log_since_start()
    _assert_no_request_failed(traffic, daemon)
