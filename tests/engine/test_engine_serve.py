"""The engine serves any config with its origin: a rollout step, a rollback, not only a commit.

Generation, synced tracking and status follow the served origin; the store keeps commits only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from memsource import GATEWAY, EngineFactory, MemorySource, ack_all, config_of, mesh_files, push_all, stored_sha

from reconciler.engine.origin import Change, Origin
from reconciler.engine.reconcile import Engine
from reconciler.engine.state import SqliteStateStore
from reconciler.engine.status import Reason
from reconciler.errors import FetchError, PathNotFoundError, UsageError
from reconciler.sources.revision import Revision
from reconciler.translate.snapshot import LISTENER
from reconciler.xds.cache import ProxyConnection, SnapshotCache

Run = Callable[..., Any]

COMMITTED = mesh_files(v1=100, v2=0)
STEP_WEIGHTS = mesh_files(v1=50, v2=50)


@dataclass
class Serving:
    """An engine serving ``commit`` to one gateway that ACKed it, and the gateway's snapshot version then."""

    engine: Engine
    gateway: ProxyConnection
    commit: Revision
    committed_version: str

    def serve_step(self, step: str = "step 1") -> bool:
        """Serve the commit's config with other weights, as a rollout step."""
        return self.engine.serve(config_of(STEP_WEIGHTS), origin=Origin(self.commit, Change.ROLLOUT_STEP, step=step))

    def version(self) -> str | None:
        return self.gateway.snapshot.version if self.gateway.snapshot else None


@pytest.fixture
def serving(source: MemorySource, make_engine: EngineFactory, run: Run) -> Serving:
    cache = SnapshotCache()
    gateway = cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    commit = source.commit(COMMITTED, "reviews on v1")
    run(engine.reconcile(trigger="test"))
    ack_all(gateway)
    assert gateway.snapshot is not None
    return Serving(engine, gateway, commit, gateway.snapshot.version)


def test_a_rollout_step_is_served_as_a_new_generation_synced_once_acked_and_shown_with_its_origin(
    serving: Serving, state_dir: Path
) -> None:
    commit = serving.commit

    assert serving.serve_step("step 1 of 2: v2 at 50%") is True

    status = serving.engine.status.to_json()
    assert (status["generation"], status["synced"]) == (2, False)
    assert status["origin"] == {"change": "rollout-step", "sha": commit.sha, "step": "step 1 of 2: v2 at 50%"}
    assert status["served"]["sha"] == commit.sha
    assert status["reason"] == Reason.ROLLOUT_STEP
    assert status["message"] == f"serving revision {commit.short_sha} (step 1 of 2: v2 at 50%)"
    assert serving.version() != serving.committed_version

    ack_all(serving.gateway)

    assert serving.engine.status.to_json()["synced"] is True
    stored = SqliteStateStore(state_dir).load_last_good()
    assert stored is not None  # the commit the step belongs to, as committed: never the step's weights
    assert (stored.revision.sha, dict(stored.revision.files)) == (commit.sha, dict(commit.files))


def test_a_rollback_serves_the_previous_config_again_as_a_new_generation_with_its_own_origin(
    serving: Serving, state_dir: Path
) -> None:
    serving.serve_step()
    ack_all(serving.gateway)

    assert serving.engine.serve(config_of(COMMITTED), origin=Origin(serving.commit, Change.ROLLBACK)) is True

    status = serving.engine.status.to_json()
    assert (status["generation"], status["synced"]) == (3, False)
    assert status["origin"] == {"change": "rollback", "sha": serving.commit.sha, "step": None}
    assert serving.version() == serving.committed_version  # the same config: the same content-hash versions
    ack_all(serving.gateway)
    assert serving.engine.status.to_json()["synced"] is True
    assert stored_sha(state_dir) == serving.commit.sha


def test_a_nacked_rollout_step_is_rolled_back_to_the_config_every_proxy_acked(serving: Serving) -> None:
    serving.serve_step()
    snapshot = serving.gateway.snapshot
    assert snapshot is not None

    push_all(serving.gateway)
    serving.gateway.record_nack(LISTENER, version=snapshot.version_of(LISTENER), message="no")

    status = serving.engine.status.to_json()
    assert status["reason"] == Reason.REJECTED
    assert status["origin"] == {"change": "nack-rollback", "sha": serving.commit.sha, "step": None}
    assert status["generation"] == 3
    assert f"rejected the LDS of revision {serving.commit.short_sha} (step 1)" in status["lastError"]["message"]
    assert serving.version() == serving.committed_version


def test_a_commit_with_the_committed_tree_is_applied_while_a_rollout_step_is_served(
    serving: Serving, source: MemorySource, run: Run
) -> None:
    source.commit(mesh_files(subset_v2="v3"), "a subset nobody defined")
    run(serving.engine.reconcile(trigger="test"))
    serving.serve_step()
    ack_all(serving.gateway)

    revert = source.commit(COMMITTED, "Revert: a subset nobody defined")
    assert run(serving.engine.reconcile(trigger="test")).ok is True

    status = serving.engine.status.to_json()
    # What is served is the step's config, not the commit's tree: a new generation, not "has the served config".
    assert (status["reason"], status["generation"]) == (Reason.APPLIED, 3)
    assert status["origin"] == {"change": "commit", "sha": revert.sha, "step": None}


def test_a_restart_after_a_rollout_step_serves_the_commit_it_belongs_to_as_committed(
    serving: Serving, make_engine: EngineFactory
) -> None:
    serving.serve_step()
    ack_all(serving.gateway)

    cache = SnapshotCache()
    restarted = make_engine(MemorySource(), cache)
    assert restarted.restore() is True

    assert restarted.status.to_json()["origin"] == {"change": "restore", "sha": serving.commit.sha, "step": None}
    connection = cache.connect(GATEWAY, on_change=lambda: None)
    assert connection.snapshot is not None
    assert connection.snapshot.version == serving.committed_version


def test_a_failed_fetch_asks_the_loop_to_retry_and_a_refused_head_does_not(
    source: MemorySource, make_engine: EngineFactory, run: Run
) -> None:
    engine = make_engine(source, SnapshotCache())
    source.commit(mesh_files(), "mesh")

    source.fail_with("could not read from remote repository", failure=FetchError)
    fetch = run(engine.reconcile(trigger="test"))
    source.fail_with("config path 'mesh' is not a directory", failure=PathNotFoundError)
    missing = run(engine.reconcile(trigger="test"))
    source.recover()
    source.commit(mesh_files(subset_v2="v3"), "a subset nobody defined")
    invalid = run(engine.reconcile(trigger="test"))

    assert (fetch.ok, fetch.reason, fetch.retry) == (False, Reason.FETCH_FAILED, True)
    assert (missing.ok, missing.reason, missing.retry) == (False, Reason.PATH_NOT_FOUND, False)
    assert (invalid.ok, invalid.reason, invalid.retry) == (False, Reason.VALIDATION_FAILED, False)


def test_a_rollout_step_origin_must_name_its_step() -> None:
    commit = MemorySource().commit(mesh_files(), "mesh")

    with pytest.raises(UsageError):
        Origin(commit, Change.ROLLOUT_STEP)
