"""The rollout controller walks weights step by step on counts from a fake provider, by a manual clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from memsource import GATEWAY, EngineFactory, MemorySource, ack_all, mesh_files
from rollout_yaml import policy_yaml
from test_engine_nack import CANNOT_BIND, nack_listeners

from reconciler.api.document import RolloutCounts
from reconciler.engine.origin import Change
from reconciler.engine.reconcile import Engine
from reconciler.engine.rollouts import RolloutController
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.engine.state import RolloutStore
from reconciler.engine.status import Reason
from reconciler.errors import TranslationError
from reconciler.model.virtualservice import Destination
from reconciler.rollout.analysis import Counts, sum_counts
from reconciler.rollout.decide import Action, Command, Phase
from reconciler.rollout.plan import RouteRef
from reconciler.rollout.routes import weights_of
from reconciler.translate.names import cluster_name
from reconciler.translate.proxy import ProxyIdentity
from reconciler.xds import cache as cache_module
from reconciler.xds.cache import ProxyConnection, SnapshotCache

Run = Callable[..., Any]

V1, V2 = Destination("reviews.example.com", "v1"), Destination("reviews.example.com", "v2")
DEFAULT = RouteRef("default/reviews", 1)
POLICY = "default/reviews"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeMetrics:
    """Counts per cluster, each served at a time of the manual clock."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self._served: list[tuple[float, str, Counts]] = []

    def serve(self, destination: Destination, *, requests: int, errors: int = 0) -> None:
        cluster = cluster_name(host=destination.host, port=80, subset=destination.subset)
        self._served.append((self._clock.now, cluster, Counts(requests=requests, errors=errors)))

    def counts(self, clusters: Iterable[str], *, since: float) -> Mapping[str, Counts]:
        return {
            name: sum_counts(counts for at, cluster, counts in self._served if cluster == name and at >= since)
            for name in clusters
        }


@dataclass
class Mesh:
    source: MemorySource
    engine: Engine
    controller: RolloutController
    gateway: ProxyConnection
    clock: ManualClock
    metrics: FakeMetrics
    run: Run

    def commit(self, *, v1: int, v2: int, policy: bytes) -> None:
        self.source.commit({**mesh_files(v1=v1, v2=v2), "policy.yaml": policy}, f"reviews {v1}/{v2}")
        assert self.run(self.engine.reconcile(trigger="test")).ok

    def served(self) -> dict[Destination, int]:
        config = self.engine.served_config
        assert config is not None
        return {d: w for d, w in weights_of(config.config, {POLICY})[DEFAULT].items() if w}

    def phase(self) -> Phase:
        [view] = self.controller.views()
        return view.state.phase

    def later(self, seconds: float, *, canary: tuple[int, int] = (0, 0), stable: int = 0) -> None:
        """Time passes while the canary (v2) serves ``canary`` (requests, errors) and the stable (v1) ``stable``."""
        self.clock.now += 1
        self.metrics.serve(V2, requests=canary[0], errors=canary[1])
        self.metrics.serve(V1, requests=stable)
        self.clock.now += seconds - 1
        self.controller.tick()


def mesh_of(
    source: MemorySource,
    make_engine: EngineFactory,
    run: Run,
    *,
    store: RolloutStore | None = None,
    now: float = 1_000.0,
) -> tuple[Mesh, SnapshotCache]:
    """An engine and a rollout controller as the daemon wires them (``store``: where rollouts are kept)."""
    cache = SnapshotCache()
    gateway = cache.connect(GATEWAY, on_change=lambda: None)
    engine = make_engine(source, cache)
    clock = ManualClock()
    clock.now = now
    metrics = FakeMetrics(clock)
    controller = RolloutController(engine=engine, cache=cache, metrics=metrics, clock=clock, store=store)
    return Mesh(source, engine, controller, gateway, clock, metrics, run), cache


@pytest.fixture
def mesh(source: MemorySource, make_engine: EngineFactory, run: Run) -> Mesh:
    return mesh_of(source, make_engine, run)[0]


def start_v2_rollout(mesh: Mesh, policy: bytes) -> None:
    """v1 served and ACKed, then a commit moving everything to v2 under ``policy``."""
    mesh.commit(v1=100, v2=0, policy=policy)
    ack_all(mesh.gateway)
    mesh.commit(v1=0, v2=100, policy=policy)


def test_the_first_revision_is_served_as_committed_and_a_change_under_a_policy_starts_at_its_first_step(
    mesh: Mesh,
) -> None:
    policy = policy_yaml(steps="10, 50")
    mesh.commit(v1=0, v2=100, policy=policy)
    assert mesh.served() == {V2: 100}
    assert mesh.controller.views() == ()
    ack_all(mesh.gateway)

    mesh.commit(v1=100, v2=0, policy=policy)

    assert mesh.served() == {V1: 10, V2: 90}
    assert mesh.engine.status.origin is not None
    assert (mesh.engine.status.origin.change, mesh.engine.status.origin.step) == (Change.ROLLOUT_STEP, "step 1 (10%)")
    assert mesh.phase() is Phase.PROGRESSING


def test_a_virtual_service_under_no_policy_changes_at_once(mesh: Mesh) -> None:
    mesh.source.commit(mesh_files(v1=100, v2=0), "v1")
    mesh.run(mesh.engine.reconcile(trigger="test"))
    ack_all(mesh.gateway)
    mesh.source.commit(mesh_files(v1=0, v2=100), "v2")
    mesh.run(mesh.engine.reconcile(trigger="test"))

    assert mesh.served() == {V2: 100}
    assert mesh.controller.views() == ()


def test_a_healthy_canary_is_promoted_through_every_step_judging_only_traffic_after_each_ack(mesh: Mesh) -> None:
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", interval="30s", min_requests=100))
    assert mesh.served() == {V1: 90, V2: 10}
    # Errors before every proxy ACKed the step are not the step's: the window opens at the ACK.
    mesh.later(5, canary=(50, 50))
    assert mesh.phase() is Phase.PROGRESSING

    for weights in ({V1: 50, V2: 50}, {V2: 100}):
        ack_all(mesh.gateway)
        mesh.later(31, canary=(200, 0), stable=1_000)
        assert mesh.served() == weights

    ack_all(mesh.gateway)
    assert mesh.phase() is Phase.SUCCEEDED
    assert mesh.engine.status.origin is not None
    assert mesh.engine.status.origin.as_committed
    moves = [
        entry for entry in mesh.controller.records(POLICY) if entry.record.action in (Action.ADVANCE, Action.FINISH)
    ]
    assert [entry.record.step for entry in moves] == [0, 1, 2]
    for judged in moves[1:]:
        assert judged.record.counts[V2] == Counts(requests=200)
        assert judged.acked_at is not None
        assert judged.acked_at < judged.record.time
    generations = [entry.generation for entry in moves]
    assert generations == sorted(set(generations))


def test_a_canary_failing_30_percent_is_rolled_back_in_the_first_step_and_the_pass_does_not_undo_it(
    mesh: Mesh,
) -> None:
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", min_requests=20, interval="2s"))
    ack_all(mesh.gateway)

    mesh.later(3, canary=(100, 30), stable=900)

    assert mesh.phase() is Phase.ROLLED_BACK
    assert mesh.served() == {V1: 100}
    origin = mesh.engine.status.origin
    assert origin is not None
    assert origin.change is Change.ROLLBACK
    [view] = mesh.controller.views()
    assert {d: w for d, w in view.goal[DEFAULT].items() if w} == {V2: 100}
    assert view.last is not None
    assert "30/100" in view.last.record.reason
    [document] = mesh.controller.documents()
    assert (document.phase, document.step, document.steps) == ("RolledBack", 0, 2)
    assert document.served["default/reviews#1"] == {"reviews.example.com:v1": 100, "reviews.example.com:v2": 0}
    assert document.goal["default/reviews#1"] == {"reviews.example.com:v1": 0, "reviews.example.com:v2": 100}
    assert (document.canary, document.stable) == (
        RolloutCounts(requests=100, errors=30),
        RolloutCounts(requests=900, errors=0),
    )
    ack_all(mesh.gateway)
    generation = mesh.engine.status.generation

    assert mesh.run(mesh.engine.reconcile(trigger="poll")).reason is Reason.UP_TO_DATE
    mesh.source.forget()  # the next pass sees the rolled-back commit again, as after a restart
    mesh.run(mesh.engine.reconcile(trigger="poll"))

    assert mesh.served() == {V1: 100}
    assert mesh.engine.status.generation == generation
    assert mesh.phase() is Phase.ROLLED_BACK


def test_a_new_commit_after_a_rollback_starts_a_new_rollout(mesh: Mesh) -> None:
    policy = policy_yaml(steps="10, 50", min_requests=20, interval="2s")
    start_v2_rollout(mesh, policy)
    ack_all(mesh.gateway)
    mesh.later(3, canary=(100, 30))
    assert mesh.phase() is Phase.ROLLED_BACK

    mesh.commit(v1=20, v2=80, policy=policy)

    assert mesh.served() == {V1: 92, V2: 8}
    assert mesh.phase() is Phase.PROGRESSING


def test_too_little_traffic_holds_the_step_and_reports_stalled(mesh: Mesh) -> None:
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", interval="30s", max_interval="1m", min_requests=100))
    ack_all(mesh.gateway)

    mesh.later(61, canary=(5, 0), stable=45)

    assert mesh.phase() is Phase.STALLED
    assert mesh.served() == {V1: 90, V2: 10}


def test_a_revert_mid_rollout_ends_it_reverted_serving_the_stable_weights_in_one_push(mesh: Mesh) -> None:
    policy = policy_yaml(steps="10, 50")
    start_v2_rollout(mesh, policy)
    generation = mesh.engine.status.generation

    mesh.commit(v1=100, v2=0, policy=policy)

    assert mesh.phase() is Phase.REVERTED
    assert mesh.served() == {V1: 100}
    assert mesh.engine.status.generation == generation + 1
    assert mesh.engine.status.origin is not None
    assert mesh.engine.status.origin.as_committed


def test_a_new_goal_mid_rollout_supersedes_it_and_walks_from_the_weights_served(mesh: Mesh) -> None:
    policy = policy_yaml(steps="10, 50")
    start_v2_rollout(mesh, policy)

    mesh.commit(v1=50, v2=50, policy=policy)

    [view] = mesh.controller.views()
    assert view.state.phase is Phase.PROGRESSING
    assert {d: w for d, w in view.state.pre_rollout[DEFAULT].items() if w} == {V1: 90, V2: 10}
    assert mesh.served() == {V1: 86, V2: 14}
    assert mesh.controller.records(POLICY)[0].record.phase is Phase.SUPERSEDED


def test_a_nacked_first_step_rolls_back_to_the_commit_before_without_offering_the_refused_commit_again(
    mesh: Mesh,
) -> None:
    start_v2_rollout(mesh, policy_yaml(steps="10, 50"))
    stepped = mesh.engine.status.generation

    nack_listeners(mesh.gateway)

    assert mesh.phase() is Phase.ROLLED_BACK
    assert mesh.served() == {V1: 100}
    last = mesh.controller.records(POLICY)[-1]
    assert last.record.reason == (
        f"a proxy NACKed the weights of step 0: proxy {GATEWAY.node_id} rejected it: {CANNOT_BIND}"
    )
    # The engine's NACK rollback serves the commit before (its weights the pre-rollout ones); nothing else is pushed.
    status = mesh.engine.status
    assert (status.reason, status.generation, last.generation) == (Reason.REJECTED, stepped + 1, stepped + 1)
    assert status.origin is not None
    assert status.origin.change is Change.NACK_ROLLBACK


def test_a_nack_judged_by_a_tick_queued_before_the_engines_nack_rollback_does_not_offer_the_refused_commit_again(
    mesh: Mesh,
) -> None:
    start_v2_rollout(mesh, policy_yaml(steps="10, 50"))
    stepped = mesh.engine.status.generation

    async def a_tick_queued_before_the_nack() -> None:
        # An earlier ACK's tick, queued before the NACK: it judges the NACK before the engine refuses the commit.
        asyncio.get_running_loop().call_soon(mesh.controller.tick)
        nack_listeners(mesh.gateway)
        for _ in range(1000):
            if mesh.controller.records(POLICY)[-1].record.action is Action.ROLL_BACK:
                return
            await asyncio.sleep(0.01)

    mesh.run(a_tick_queued_before_the_nack())

    assert mesh.phase() is Phase.ROLLED_BACK
    assert mesh.served() == {V1: 100}
    status = mesh.engine.status
    assert status.origin is not None
    assert (status.origin.change, status.reason, status.generation) == (
        Change.NACK_ROLLBACK,
        Reason.REJECTED,
        stepped + 1,
    )
    assert mesh.controller.records(POLICY)[-1].generation == stepped + 1


def test_a_step_whose_config_the_engine_refuses_ends_the_rollout_rolled_back_to_the_pre_rollout_weights(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", interval="30s", min_requests=100))
    ack_all(mesh.gateway)
    generation = mesh.engine.status.generation
    build = cache_module._build
    refusals = []

    def refuse_once(source: Any, proxy: Any) -> Any:
        if not refusals:
            refusals.append(proxy.node_id)
            raise TranslationError(f"cannot build the snapshot for proxy {proxy.node_id!r}: a bug")
        return build(source, proxy)

    monkeypatch.setattr(cache_module, "_build", refuse_once)

    mesh.later(31, canary=(200, 0), stable=1_000)  # step 0 passes: step 1 (50/50) is refused

    assert refusals == [GATEWAY.node_id]
    assert mesh.phase() is Phase.ROLLED_BACK
    assert mesh.served() == {V1: 100}
    assert mesh.engine.status.generation == generation + 1  # the rollback's push; the refused one published nothing
    origin = mesh.engine.status.origin
    assert origin is not None
    assert origin.change is Change.ROLLBACK
    [*_, advance, refused] = mesh.controller.records(POLICY)
    assert (advance.record.action, advance.record.step) == (Action.ADVANCE, 1)
    assert (refused.record.action, refused.record.phase, refused.record.step) == (
        Action.ROLL_BACK,
        Phase.ROLLED_BACK,
        1,
    )
    assert "the weights of step 1 could not be served" in refused.record.reason
    assert "a bug" in refused.record.reason
    assert refused.generation == generation + 1


def test_on_the_event_loop_a_steps_config_is_translated_in_a_worker_thread_and_its_move_recorded_once_served(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_v2_rollout(mesh, policy_yaml(steps="10, 50", interval="30s", min_requests=100))
    ack_all(mesh.gateway)
    mesh.later(5)  # the window opens
    generation = mesh.engine.status.generation
    translated_in: list[threading.Thread] = []
    translate_all = ConfigSnapshots.translate_all

    def recording(self: ConfigSnapshots, proxies: Iterable[ProxyIdentity]) -> None:
        translated_in.append(threading.current_thread())
        translate_all(self, proxies)

    monkeypatch.setattr(ConfigSnapshots, "translate_all", recording)
    mesh.clock.now += 1
    mesh.metrics.serve(V2, requests=200)
    mesh.clock.now += 30

    async def tick_on_the_loop() -> threading.Thread:
        mesh.controller.tick()
        waiting = mesh.controller.records(POLICY)[-1].record.action  # the move is recorded once served
        while mesh.engine.status.generation == generation:
            await asyncio.sleep(0.01)
        assert waiting is not Action.ADVANCE
        return threading.current_thread()

    loop_thread = mesh.run(tick_on_the_loop())

    assert translated_in
    assert loop_thread not in translated_in
    assert mesh.served() == {V1: 50, V2: 50}
    advanced = mesh.controller.records(POLICY)[-1]
    assert (advanced.record.action, advanced.record.step) == (Action.ADVANCE, 1)
    assert advanced.generation == mesh.engine.status.generation == generation + 1


def test_a_commits_first_step_is_translated_in_a_worker_thread_while_the_loop_runs_other_coroutines(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = policy_yaml(steps="10, 50")
    mesh.commit(v1=100, v2=0, policy=policy)
    ack_all(mesh.gateway)
    mesh.source.commit({**mesh_files(v1=0, v2=100), "policy.yaml": policy}, "reviews 0/100")
    translating, loop_ran = threading.Event(), threading.Event()
    step_translated: list[tuple[threading.Thread, bool]] = []
    snapshot_for = ConfigSnapshots.snapshot_for

    def first_step_waits_for_the_loop(self: ConfigSnapshots, proxy: ProxyIdentity) -> Any:
        if weights_of(self.config, {POLICY})[DEFAULT].get(V2) == 10 and not translating.is_set():
            translating.set()
            # Returns True only if a coroutine ran meanwhile: on the loop's own thread it could not.
            step_translated.append((threading.current_thread(), loop_ran.wait(timeout=30)))
        return snapshot_for(self, proxy)

    monkeypatch.setattr(ConfigSnapshots, "snapshot_for", first_step_waits_for_the_loop)

    async def a_pass_beside_another_coroutine() -> tuple[bool, threading.Thread]:
        async def another() -> None:
            while not translating.is_set():
                await asyncio.sleep(0.01)
            loop_ran.set()

        other = asyncio.create_task(another())
        result = await mesh.engine.reconcile(trigger="test")
        other.cancel()
        return result.ok, threading.current_thread()

    ok, loop_thread = mesh.run(a_pass_beside_another_coroutine())

    assert ok
    assert [(thread is loop_thread, coroutine_ran) for thread, coroutine_ran in step_translated] == [(False, True)]
    assert mesh.served() == {V1: 90, V2: 10}
    assert mesh.phase() is Phase.PROGRESSING


def test_a_command_taken_while_a_commits_step_translates_is_kept_by_the_commit(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = policy_yaml(steps="10, 50")
    start_v2_rollout(mesh, policy)  # step 1 (v2 at 10%) served
    ack_all(mesh.gateway)
    # The same goal in a new tree: the walk goes on with the new commit, its step translated again.
    mesh.source.commit({**mesh_files(v1=0, v2=100), "policy.yaml": policy + b"# touched\n"}, "touch the policy")
    translating, commanded = threading.Event(), threading.Event()
    snapshot_for = ConfigSnapshots.snapshot_for

    def step_waits_for_the_command(self: ConfigSnapshots, proxy: ProxyIdentity) -> Any:
        if weights_of(self.config, {POLICY})[DEFAULT].get(V2) == 10 and not translating.is_set():
            translating.set()
            commanded.wait(timeout=30)
        return snapshot_for(self, proxy)

    monkeypatch.setattr(ConfigSnapshots, "snapshot_for", step_waits_for_the_command)

    async def a_pause_during_the_pass() -> bool:
        async def pause() -> None:
            while not translating.is_set():
                await asyncio.sleep(0.01)
            mesh.controller.command(POLICY, Command.PAUSE)
            commanded.set()

        pausing = asyncio.create_task(pause())
        result = await mesh.engine.reconcile(trigger="test")
        await pausing
        return result.ok

    assert mesh.run(a_pause_during_the_pass())
    assert commanded.is_set()
    assert mesh.phase() is Phase.PAUSED
    assert mesh.served() == {V1: 90, V2: 10}
    [view] = mesh.controller.views()
    assert view.last is not None
    assert view.last.record.phase is Phase.PAUSED
