"""Rollouts outlive the process: a second engine and controller over the same store go on where the first stopped."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from memsource import EngineFactory, MemorySource, ack_all, mesh_files, stored_sha
from rollout_yaml import policy_yaml
from structlog.testing import capture_logs
from test_engine_nack import nack_listeners
from test_engine_rollouts import DEFAULT, POLICY, V1, V2, Mesh, Run, mesh_of, start_v2_rollout

from reconciler.engine import state
from reconciler.engine.origin import Change
from reconciler.engine.state import SourceIdentity, SqliteStateStore
from reconciler.engine.status import Reason
from reconciler.rollout.decide import Action, Phase

HEALTHY = policy_yaml(steps="10, 50", interval="30s", min_requests=100)
FRAGILE = policy_yaml(steps="10, 50", min_requests=20, interval="2s")


def daemon(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path, *, now: float = 1_000.0
) -> Mesh:
    """An engine and a rollout controller as the daemon wires them: both over the store in ``state_dir``."""
    return mesh_of(source, make_engine, run, store=SqliteStateStore(state_dir), now=now)[0]


def restarted(before: Mesh, make_engine: EngineFactory, state_dir: Path) -> Mesh:
    """What ``kill -9`` and a restart leave: only what the store holds, and the same source."""
    before.controller.wait_saved()
    before.source.forget()  # the new process has seen no commit yet
    return daemon(before.source, make_engine, before.run, state_dir, now=before.clock.now + 60)


def test_a_restart_mid_rollout_serves_the_steps_weights_at_once_and_goes_on_with_that_step(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path
) -> None:
    first = daemon(source, make_engine, run, state_dir)
    start_v2_rollout(first, HEALTHY)
    ack_all(first.gateway)
    first.later(31, canary=(200, 0), stable=1_000)
    assert first.served() == {V1: 50, V2: 50}
    ack_all(first.gateway)
    decided = first.controller.records(POLICY)

    second = restarted(first, make_engine, state_dir)
    assert second.engine.restore()

    assert second.served() == {V1: 50, V2: 50}
    [view] = second.controller.views()
    assert (view.state.phase, view.state.step, view.state.acked_at) == (Phase.PROGRESSING, 1, None)
    assert [entry.record for entry in second.controller.records(POLICY)] == [entry.record for entry in decided]
    step = f"revision {source.head_sha[:12]} (step 2 (50%))"
    assert (second.engine.status.reason, second.engine.status.message) == (Reason.ROLLOUT_STEP, f"serving {step}")
    # The first pass finds the same commit at the head: nothing new is served, and status still names the step.
    generation = second.engine.status.generation
    assert run(second.engine.reconcile(trigger="start")).ok
    assert second.engine.status.generation == generation
    assert second.served() == {V1: 50, V2: 50}
    assert (second.engine.status.reason, second.engine.status.message) == (
        Reason.ROLLOUT_STEP,
        f"serving {step}; no config change",
    )

    # The step is judged on traffic after the new process saw every proxy ACK it, and passes.
    second.later(20, canary=(500, 0), stable=1_000)
    ack_all(second.gateway)
    assert second.served() == {V1: 50, V2: 50}
    second.later(31, canary=(200, 0), stable=1_000)
    assert second.served() == {V2: 100}
    ack_all(second.gateway)
    assert second.phase() is Phase.SUCCEEDED
    judged = second.controller.records(POLICY)[-2].record
    assert (judged.action, judged.counts[V2].requests) == (Action.FINISH, 200)


def test_a_rolled_back_rollout_is_restored_rolled_back_and_the_first_pass_does_not_serve_gits_weights(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path
) -> None:
    first = daemon(source, make_engine, run, state_dir)
    start_v2_rollout(first, FRAGILE)
    ack_all(first.gateway)
    first.later(3, canary=(100, 30), stable=900)
    assert first.phase() is Phase.ROLLED_BACK
    ack_all(first.gateway)
    assert stored_sha(state_dir) == source.head_sha  # the stored last good is the rolled-back commit

    second = restarted(first, make_engine, state_dir)
    assert second.engine.restore()

    assert second.served() == {V1: 100}
    assert second.phase() is Phase.ROLLED_BACK
    origin = second.engine.status.origin
    assert origin is not None
    assert origin.change is Change.ROLLBACK
    run(second.engine.reconcile(trigger="start"))
    assert second.engine.status.reason is Reason.ROLLOUT_ROLLBACK
    ack_all(second.gateway)
    second.later(60)
    assert second.served() == {V1: 100}
    assert second.phase() is Phase.ROLLED_BACK


def test_a_nacked_rollout_stays_rolled_back_when_the_restart_serves_the_commit_before_and_then_meets_it_again(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path
) -> None:
    first = daemon(source, make_engine, run, state_dir)
    first.commit(v1=100, v2=0, policy=HEALTHY)
    before = source.commit({**mesh_files(v1=100, v2=0), "policy.yaml": HEALTHY}, "unchanged weights")
    run(first.engine.reconcile(trigger="test"))
    ack_all(first.gateway)
    first.commit(v1=0, v2=100, policy=HEALTHY)
    nack_listeners(first.gateway)
    assert first.phase() is Phase.ROLLED_BACK
    # Killed before the rollback's generation was ACKed by every proxy: the store held the commit before.
    first.controller.wait_saved()
    SqliteStateStore(state_dir).save_last_good(
        before, source=SourceIdentity.of(repo="mem://mesh", branch="main", path="mesh")
    )

    second = restarted(first, make_engine, state_dir)
    assert second.engine.restore()
    assert second.engine.status.served is not None
    assert second.engine.status.served.sha == before.sha
    run(second.engine.reconcile(trigger="start"))

    assert second.engine.status.served.sha == source.head_sha
    assert second.served() == {V1: 100}
    assert second.phase() is Phase.ROLLED_BACK


def test_a_rollout_whose_first_step_no_proxy_acked_resumes_that_step_on_the_first_pass_of_its_commit(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path
) -> None:
    first = daemon(source, make_engine, run, state_dir)
    start_v2_rollout(first, HEALTHY)
    assert first.served() == {V1: 90, V2: 10}

    second = restarted(first, make_engine, state_dir)
    assert second.engine.restore()
    assert second.served() == {V1: 100}  # the last good: every proxy ACKed it, none the step yet
    run(second.engine.reconcile(trigger="start"))

    assert second.served() == {V1: 90, V2: 10}
    [view] = second.controller.views()
    assert (view.state.phase, view.state.step) == (Phase.PROGRESSING, 0)


def test_a_new_commit_after_a_restart_is_walked_from_the_resumed_weights(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path
) -> None:
    first = daemon(source, make_engine, run, state_dir)
    start_v2_rollout(first, HEALTHY)
    ack_all(first.gateway)
    second = restarted(first, make_engine, state_dir)
    assert second.engine.restore()
    run(second.engine.reconcile(trigger="start"))

    second.commit(v1=50, v2=50, policy=HEALTHY)

    [view] = second.controller.views()
    assert {d: w for d, w in view.state.pre_rollout[DEFAULT].items() if w} == {V1: 90, V2: 10}
    assert second.phase() is Phase.PROGRESSING
    walking = second.served()
    decided = second.controller.records(POLICY)

    # No step of the new walk was ACKed: the store's last good is the superseded commit, restored with the
    # weights it served last; the first pass of the new commit resumes the new walk.
    third = restarted(second, make_engine, state_dir)
    assert third.engine.restore()
    assert third.served() == {V1: 90, V2: 10}
    run(third.engine.reconcile(trigger="start"))
    assert third.served() == walking
    assert third.phase() is Phase.PROGRESSING
    assert [entry.record for entry in third.controller.records(POLICY)] == [entry.record for entry in decided]


def test_a_store_that_cannot_save_is_logged_and_the_rollout_walks_on(
    source: MemorySource, make_engine: EngineFactory, run: Run, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the state directory should be")
    mesh, _ = mesh_of(source, make_engine, run, store=SqliteStateStore(blocked))

    with capture_logs() as logs:
        start_v2_rollout(mesh, HEALTHY)
        mesh.controller.wait_saved()

    assert mesh.served() == {V1: 90, V2: 10}
    assert any(entry["event"] == "rollout.state_save_failed" for entry in logs)


def test_the_store_keeps_the_last_rollouts_and_their_decisions(
    source: MemorySource, make_engine: EngineFactory, run: Run, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "ROLLOUTS_KEPT", 3)
    mesh = daemon(source, make_engine, run, state_dir)
    mesh.commit(v1=100, v2=0, policy=FRAGILE)
    for _ in range(5):  # a rollout to v2, reverted by the next commit: a new rollout every other commit
        mesh.commit(v1=0, v2=100, policy=FRAGILE)
        mesh.commit(v1=100, v2=0, policy=FRAGILE)
    mesh.controller.wait_saved()

    store = SqliteStateStore(state_dir)
    [latest] = store.load_rollouts()
    [view] = mesh.controller.views()
    assert latest.state == view.state
    assert view.state.phase is Phase.REVERTED
    with contextlib.closing(sqlite3.connect(state_dir / "state.sqlite3")) as db:
        kept = db.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0]
        decided = db.execute("SELECT COUNT(DISTINCT rollout) FROM rollout_decisions").fetchone()[0]
    assert (kept, decided) == (3, 3)
    assert [d.record.phase for d in store.load_decisions(latest.key, last=10)] == [Phase.PROGRESSING, Phase.REVERTED]
