"""The daemon's git side: push webhooks, an unreachable remote, and a remote over git://."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import Daemon, Mesh
from gitrepo import git, git_daemon, has_git_daemon

pytestmark = [pytest.mark.git, pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_signed_github_push_webhook_syncs_long_before_the_poll_interval_and_a_bad_signature_gets_401(
    mesh: Mesh, daemons: Callable[..., Daemon], webhook_secret: tuple[Path, bytes]
) -> None:
    secret_file, secret = webhook_secret
    daemon = daemons(repo=mesh.repo.url, poll_interval="60s", webhook_secret_file=secret_file).start()
    daemon.wait_synced(mesh.initial_sha)
    canary = mesh.push_weights(80, 20)

    code, body = daemon.push_webhook(after=canary, secret=b"not-the-secret")
    assert code == 401
    assert body["reason"] == "BadSignature"
    assert daemon.status()["headSha"] == mesh.initial_sha

    pushed = time.monotonic()
    code, body = daemon.push_webhook(after=canary, secret=secret)
    assert code == 202
    assert body["accepted"] is True
    daemon.wait_synced(canary, timeout=20)
    assert time.monotonic() - pushed < 20  # the next poll would only come after 60 s


def test_a_push_to_another_branch_is_ignored_and_sigterm_stops_the_daemon_cleanly(
    mesh: Mesh, daemons: Callable[..., Daemon], webhook_secret: tuple[Path, bytes]
) -> None:
    secret_file, secret = webhook_secret
    daemon = daemons(repo=mesh.repo.url, poll_interval="60s", webhook_secret_file=secret_file).start()
    daemon.wait_synced(mesh.initial_sha)
    attempted = daemon.status()["lastAttempt"]

    code, body = daemon.push_webhook(after="0" * 40, secret=secret, ref="refs/heads/feature")

    assert code == 200
    assert body == {"accepted": False, "ref": "refs/heads/feature", "reason": "BranchNotFollowed"}
    assert '"event": "daemon.push_ignored"' in daemon.log_path.read_text()
    assert daemon.status()["lastAttempt"] == attempted
    assert daemon.stop() == 0


def test_serving_continues_while_the_remote_is_unreachable_and_sync_resumes_when_it_returns(
    mesh: Mesh, daemons: Callable[..., Daemon]
) -> None:
    daemon = daemons(repo=mesh.repo.url, poll_interval="1s").start()
    daemon.wait_synced(mesh.initial_sha)
    served = daemon.status()["served"]["sha"]

    hidden = mesh.repo.bare.with_name("remote-away.git")
    mesh.repo.bare.rename(hidden)
    status = daemon.wait_status("a failed fetch", lambda s: s["reason"] == "FetchFailed")
    assert status["lastError"]["reason"] == "FetchFailed"
    assert status["served"]["sha"] == served
    assert status["ready"] is True
    code, ready = daemon.request("GET", "/readyz")
    assert code == 200, ready

    canary = mesh.repo.commit(mesh.files(v1=80, v2=20), "canary while git is down", push=False)
    mesh.repo.push(to=str(hidden))
    hidden.rename(mesh.repo.bare)

    status = daemon.wait_synced(canary, timeout=30)  # the 1 s poll, with backoff capped at the interval
    # "Applied" by the pass that took the canary, or "UpToDate" if the next 1 s poll came before we looked.
    assert status["reason"] in {"Applied", "UpToDate"}


@pytest.mark.skipif(not has_git_daemon(), reason="git daemon is not installed")
def test_the_daemon_follows_a_remote_served_over_the_git_protocol(mesh: Mesh, daemons: Callable[..., Daemon]) -> None:
    with git_daemon(mesh.repo.bare.parent) as port:
        url = f"git://127.0.0.1:{port}/{mesh.repo.bare.name}"
        git("remote", "set-url", "origin", url, cwd=mesh.repo.work)
        daemon = daemons(repo=url).start()
        daemon.wait_synced(mesh.initial_sha)

        canary = mesh.push_weights(80, 20)  # pushed over git:// too (receive-pack is enabled)
        daemon.sync()

        status = daemon.wait_synced(canary)
        assert status["repo"] == url
        assert status["reason"] == "Applied"
