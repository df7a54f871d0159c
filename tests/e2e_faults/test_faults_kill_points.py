"""kill -9 at each fault point of a reconcile, under steady traffic through a real Envoy.

The new revision changes clusters (a connect timeout) and routes (weights 100/0 → 80/20), so a
proxy left with half of it would show: ``mid-publish`` kills once the gateway ACKed the new
clusters but not yet the routes. The daemon is started with ``RECONCILER_FAULT=POINT:kill:SHA``
(the new commit only, so the restored revision does not trigger it) and the gateway reconnected
before the commit is pushed; it dies there by itself and is started again without it: the restart
restores the stored revision (the old one, whatever the point: a revision is stored once every
proxy ACKed it, and a save killed mid-transaction is rolled back) and then serves the new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing

import pytest
from daemon_harness import HOST, Daemon, Mesh
from steady_traffic import Traffic, acked_versions

from reconciler.engine.faults import ENV_VAR, FaultPoint
from reconciler.harness.envoy import EnvoyProcess

pytestmark = [pytest.mark.git, pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]


def stored_sha(daemon: Daemon) -> str:
    """The last good revision in the state store, read the way SQLite recovers it (rolling back a hot journal)."""
    with closing(sqlite3.connect(daemon.state_dir / "state.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (sha,) = db.execute("SELECT sha FROM last_good").fetchone()
    return str(sha)


@pytest.mark.parametrize("point", list(FaultPoint), ids=str)
def test_a_kill_9_at_each_point_of_a_reconcile_costs_no_request_and_the_restart_serves_old_then_new_never_a_mix(  # noqa: PLR0917
    point: FaultPoint,
    mesh: Mesh,
    daemons: Callable[..., Daemon],
    gateway: Callable[..., EnvoyProcess],
    free_port: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon = daemons(repo=mesh.repo.url, xds_port=free_port()).start()
    gateway(daemon, mesh)
    old = acked_versions(daemon.wait_synced(mesh.initial_sha, proxies=1), "ingress-1")
    assert old is not None
    files = mesh.files(v1=80, v2=20)
    files["mesh/destinationrule.yaml"] = files["mesh/destinationrule.yaml"].replace(
        "connectTimeout: 1s", "connectTimeout: 2s"
    )
    new = mesh.repo.commit(files, "reviews: 80/20, connect timeout 2s", push=False)  # its sha arms the fault

    traffic = Traffic(mesh.gateway_port, authority=HOST)
    traffic.start()
    try:
        assert daemon.stop() == 0
        monkeypatch.setenv(ENV_VAR, f"{point}:kill:{new[:12]}")
        daemon.start()  # restores the initial commit; the gateway reconnects before the new one arrives
        monkeypatch.delenv(ENV_VAR)
        daemon.wait_status("the gateway to ACK the restored revision", lambda s: acked_versions(s, "ingress-1") == old)
        mesh.repo.push()
        daemon.sync()
        assert daemon.wait_exit(timeout=60) == -9
        assert f'"point": "{point}"' in daemon.log_since_start()
        # A revision is stored once every proxy ACKed it; the save killed mid-transaction is rolled back.
        assert stored_sha(daemon) == mesh.initial_sha
        traffic.wait_for(traffic.responses + 200)  # while the daemon is dead

        daemon.start()
        # Envoy's reconnect backoff has grown while the daemon was dead (seconds under load): wait it out.
        restored = daemon.wait_status(
            "the gateway to ACK the restored revision",
            lambda s: acked_versions(s, "ingress-1") is not None,
            timeout=60,
        )
        assert restored["served"]["sha"] in {mesh.initial_sha, new}
        daemon.sync()
        final = daemon.wait_synced(new, proxies=1, timeout=45)
        traffic.wait_for(traffic.responses + 200)
    finally:
        traffic.stop()

    assert '"event": "engine.restored"' in daemon.log_since_start()
    assert f'"sha": "{mesh.initial_sha[:12]}"' in daemon.log_since_start()
    assert acked_versions(restored, "ingress-1") in (old, acked_versions(final, "ingress-1"))
    assert acked_versions(final, "ingress-1") != old
    assert traffic.errors == {}
    assert traffic.local_replies == {}
    assert set(traffic.by_status) == {200}
    assert set(traffic.by_version) <= {"v1", "v2"}
