"""Envoy's word is final: a revision a proxy NACKs is refused and the last ACKed one is served again."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from memsource import GATEWAY, EngineFactory, MemorySource, ack_all, line_of, mesh_files, push_all, stored_sha

from reconciler.engine.reconcile import Engine
from reconciler.engine.status import Reason
from reconciler.sources import Revision
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import LISTENER
from reconciler.xds.cache import ProxyConnection, SnapshotCache

Run = Callable[..., Any]

#: What Envoy says when a gateway's port is taken on its host (the template's gateway listens on 8080).
CANNOT_BIND = "Error adding/updating listener(s) 0.0.0.0_8080: cannot bind '0.0.0.0:8080': Address already in use"


def nack_listeners(connection: ProxyConnection, message: str = CANNOT_BIND) -> None:
    """What an ADS stream reports when its proxy got its current snapshot and rejected the listeners."""
    snapshot = connection.snapshot
    assert snapshot is not None
    push_all(connection)
    connection.record_nack(LISTENER, version=snapshot.version_of(LISTENER), message=message)


@dataclass(frozen=True)
class Acked:
    """An engine whose gateway ACKed its first revision, ``good``: reviews on v1."""

    source: MemorySource
    cache: SnapshotCache
    gateway: ProxyConnection
    engine: Engine
    good: Revision
    run: Run

    def commit(self, files: Mapping[str, bytes], message: str) -> Revision:
        """Commit ``files`` and reconcile them (pushed to the gateway, not yet answered)."""
        revision = self.source.commit(files, message)
        self.run(self.engine.reconcile(trigger="test"))
        return revision


@pytest.fixture
def acked(source: MemorySource, make_engine: EngineFactory, run: Run) -> Callable[..., Acked]:
    """``acked(**make_engine options)``: an engine serving reviews on v1 to a gateway that ACKed it."""

    def make(**options: Any) -> Acked:
        cache = SnapshotCache()
        gateway = cache.connect(GATEWAY, on_change=lambda: None)
        engine = make_engine(source, cache, **options)
        good = source.commit(mesh_files(v1=100, v2=0), "reviews on v1")
        run(engine.reconcile(trigger="test"))
        ack_all(gateway)
        return Acked(source=source, cache=cache, gateway=gateway, engine=engine, good=good, run=run)

    return make


def test_a_nacked_revision_is_rejected_with_envoys_cause_and_the_acked_one_is_served_again(
    acked: Callable[..., Acked], state_dir: Path
) -> None:
    setup = acked()
    engine, gateway, good = setup.engine, setup.gateway, setup.good
    acked_version = gateway.snapshot.version if gateway.snapshot else None
    files = mesh_files(v1=80, v2=20)
    bad = setup.commit(files, "canary")
    assert gateway.snapshot is not None
    assert gateway.snapshot.version != acked_version

    nack_listeners(gateway)

    status = engine.status.to_json()
    assert status["reason"] == "Rejected"
    assert status["served"]["sha"] == good.sha
    assert status["headSha"] == bad.sha
    assert status["generation"] == 3  # good, bad, good again
    assert status["ready"] is True  # every proxy is being given a config it accepted
    error = status["lastError"]
    assert (error["reason"], error["sha"]) == ("Rejected", bad.sha)
    assert "ingress-1" in error["message"]
    assert "cannot bind '0.0.0.0:8080'" in error["message"]
    [finding] = error["findings"]
    assert (finding["file"], finding["line"], finding["code"], finding["path"]) == (
        "mesh/gateway.yaml",
        line_of(files["gateway.yaml"], "number: 8080"),
        "RC0301",
        "spec.servers[0].port.number",
    )
    assert gateway.snapshot.version == acked_version
    assert stored_sha(state_dir) == good.sha


def test_a_rejected_commit_stays_refused_until_a_new_commit_which_is_applied_normally(
    acked: Callable[..., Acked], source: MemorySource, run: Run, state_dir: Path
) -> None:
    setup = acked()
    engine, gateway = setup.engine, setup.gateway
    bad = setup.commit(mesh_files(v1=80, v2=20), "canary")
    nack_listeners(gateway)

    assert run(engine.reconcile(trigger="poll")).ok is False
    assert engine.status.reason is Reason.REJECTED
    assert engine.status.last_error is not None
    assert engine.status.last_error.sha == bad.sha
    assert engine.status.generation == 3  # not tried again

    fixed = source.commit(mesh_files(v1=50, v2=50), "half and half")
    assert run(engine.reconcile(trigger="poll")).ok is True
    assert engine.status.reason is Reason.APPLIED
    assert engine.status.last_error is None
    assert engine.status.served is not None
    assert engine.status.served.sha == fixed.sha
    ack_all(gateway)
    assert engine.status.synced is True
    assert stored_sha(state_dir) == fixed.sha


def test_without_rollback_the_rejected_revision_keeps_serving_and_the_daemon_is_not_ready(
    acked: Callable[..., Acked], state_dir: Path
) -> None:
    setup = acked(rollback_on_nack=False)
    engine, gateway, good = setup.engine, setup.gateway, setup.good
    bad = setup.commit(mesh_files(v1=80, v2=20), "canary")
    bad_version = gateway.snapshot.version if gateway.snapshot else None

    nack_listeners(gateway)

    status = engine.status.to_json()
    assert (status["reason"], status["ready"]) == ("Rejected", False)
    assert status["served"]["sha"] == bad.sha
    assert status["generation"] == 2
    assert gateway.snapshot is not None
    assert gateway.snapshot.version == bad_version
    assert stored_sha(state_dir) == good.sha  # a restart resumes from what Envoy accepted


def test_a_revision_saved_while_no_proxy_was_connected_is_forgotten_when_the_first_proxy_nacks_it(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path
) -> None:
    cache = SnapshotCache()
    engine = make_engine(source, cache)
    unproven = source.commit(mesh_files(v1=80, v2=20), "canary")
    run(engine.reconcile(trigger="test"))
    assert stored_sha(state_dir) == unproven.sha  # nothing could ACK it: saved as today

    nack_listeners(cache.connect(GATEWAY, on_change=lambda: None))

    assert engine.status.reason is Reason.REJECTED
    assert engine.status.to_json()["ready"] is False  # nothing any proxy accepted to fall back to
    assert stored_sha(state_dir) is None
    assert make_engine(MemorySource(), SnapshotCache()).restore() is False


def test_a_revision_saved_while_no_proxy_was_connected_is_rolled_back_to_the_acked_one_after_a_restart(
    acked: Callable[..., Acked], make_engine: EngineFactory, state_dir: Path
) -> None:
    setup = acked()
    engine, good = setup.engine, setup.good
    setup.gateway.close()
    setup.commit(mesh_files(v1=80, v2=20), "canary")

    nack_listeners(setup.cache.connect(GATEWAY, on_change=lambda: None))

    assert engine.status.served is not None
    assert engine.status.served.sha == good.sha
    assert stored_sha(state_dir) == good.sha
    restarted = make_engine(MemorySource(), SnapshotCache())
    assert restarted.restore() is True
    assert restarted.status.served is not None
    assert restarted.status.served.sha == good.sha


def test_a_proxy_joining_later_that_nacks_a_revision_every_other_proxy_acked_rolls_nothing_back(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path
) -> None:
    cache = SnapshotCache()
    first = cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    source.commit(mesh_files(v1=100, v2=0), "reviews on v1")
    run(engine.reconcile(trigger="test"))
    synced = source.commit(mesh_files(v1=80, v2=20), "canary")
    run(engine.reconcile(trigger="test"))
    ack_all(first)
    later = ProxyIdentity(node_id="ingress-2", labels=GATEWAY.labels, role=GATEWAY.role)

    nack_listeners(cache.connect(later, on_change=lambda: None))

    assert engine.status.reason is Reason.APPLIED
    assert engine.status.last_error is None
    assert engine.status.generation == 2
    assert engine.status.served is not None
    assert engine.status.served.sha == synced.sha
    assert engine.status.synced is False
    [nacked] = [status for status in cache.statuses() if status.nacked]
    assert nacked.node_id == "ingress-2"
    assert stored_sha(state_dir) == synced.sha


def test_a_nack_of_a_revision_already_replaced_changes_nothing(acked: Callable[..., Acked]) -> None:
    setup = acked()
    engine, gateway = setup.engine, setup.gateway
    setup.commit(mesh_files(v1=80, v2=20), "canary")
    push_all(gateway)
    newer = setup.commit(mesh_files(v1=50, v2=50), "half and half")
    status = setup.cache.status(GATEWAY.node_id)
    assert status is not None
    old = status.types[LISTENER].version_sent

    gateway.record_nack(LISTENER, version=old, message=CANNOT_BIND)  # the answer to the canary's push

    assert engine.status.reason is Reason.APPLIED
    assert engine.status.served is not None
    assert engine.status.served.sha == newer.sha
    assert engine.status.generation == 3
