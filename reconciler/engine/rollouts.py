"""The rollout controller: walks the weights of VirtualServices under a RolloutPolicy on live traffic.

The imperative shell around :mod:`reconciler.rollout` (which decides): it reads the clock and
the metrics provider, serves each step through :meth:`Engine.serve`, and keeps every decision.

* **A commit** reaches the proxies through :meth:`RolloutController.serve_revision` (the
  engine's :class:`~reconciler.engine.reconcile.RevisionGate`). Per policy, git's weights are
  compared with the weights served: equal, or nothing served yet (the first revision), and
  git's are served; different, and a rollout starts from the served weights. Everything else
  in the commit is served in the same push, with each rollout's weights for its routes. A new
  commit's (:meth:`RolloutController.serve_revision_off_loop`) is translated in a worker thread;
  the decisions are made on the loop, again if a rollout changed while it translated.
* **A running rollout** is judged by :meth:`RolloutController.tick` (periodically, and on every
  ACK or NACK): whether every target acknowledged the step's generation (each of ``acks``, by default
  the engine's :attr:`~reconciler.engine.reconcile.Engine.acknowledgers`: the proxies' cache, every
  proxy ACKed it; in CRD mode the kubernetes sink, the API server accepted its apply; the records
  say which), the NACK of it, and the counts
  of canary and stable clusters since the analysis window opened go to ``decide``; its answer
  is served (advance, finish, roll back) and recorded. The moves of one tick go out in one push,
  translated in a worker thread (:meth:`RolloutController._push_pending`); a push the engine
  refuses ends the moved walks ``RolledBack``.
* **A user's command** (:meth:`RolloutController.command`: pause, resume, promote, abort) is
  ``decide``'s too, acted on at once like a tick's decision; one that does not apply to the
  rollout's phase is refused before it reaches ``decide`` (``refusal``).
* **A rollout is tied to its commit's config tree.** A rolled-back rollout keeps serving the
  pre-rollout weights for that tree, so a pass that sees the same tree again serves nothing
  new (the engine adopts the served config: ``Engine._already_served``), and only a new
  config tree is compared with the served weights again.
* **A rollout outlives the process** (with a :class:`~reconciler.engine.state.RolloutStore`): its
  state and weights are saved on every recorded decision, in order, on a writer thread. At start
  each policy's latest stored rollout may be resumed: the first serve of its config tree (the
  restore of the stored last good, or the first pass of that commit) serves its weights and goes
  on with its step (:func:`~reconciler.rollout.codec.restarted`), instead of git's weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import structlog

from reconciler.api.document import RolloutCounts, RolloutDocument
from reconciler.engine.origin import Change, Origin
from reconciler.engine.reconcile import Acknowledger, Engine
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.engine.state import RolloutStore, StoredDecision, StoredRollout
from reconciler.errors import ReconcilerError, RolloutCommandError, RolloutNotFoundError, StateError
from reconciler.metrics import MetricsProvider
from reconciler.model.config import MeshConfig
from reconciler.model.hosts import resolve_host
from reconciler.model.text import MESSAGE_CHARS, excerpt
from reconciler.model.virtualservice import Destination
from reconciler.rollout.analysis import Counts, sum_counts
from reconciler.rollout.codec import restarted
from reconciler.rollout.decide import (
    Acknowledgement,
    Action,
    Command,
    Decision,
    Observation,
    Phase,
    Record,
    RolloutState,
    decide,
    refusal,
    start,
)
from reconciler.rollout.decide import Revision as RolloutRevision
from reconciler.rollout.plan import RouteRef, Split, WeightTable, plan, same_traffic
from reconciler.rollout.routes import Governed, governed, weights_of, with_weights
from reconciler.sources.revision import Revision
from reconciler.translate import ServiceRegistry
from reconciler.translate.memo import TranslationCache
from reconciler.translate.names import cluster_name
from reconciler.translate.proxy import ProxyIdentity
from reconciler.xds.cache import EventKind, SnapshotCache, XdsEvent

__all__ = ["Clock", "DecisionRecord", "RolloutController", "RolloutView"]

log = structlog.get_logger("reconciler.rollouts")

#: Decisions kept per rollout for status; the store keeps them all.
RECORDS_KEPT = 100
#: Actions that change what is served.
_MOVES = frozenset({Action.ADVANCE, Action.FINISH, Action.ROLL_BACK})
#: Times a commit's decisions are made again when a rollout changed while its config translated; then on the loop.
_REPLAN_ROUNDS = 3


class Clock(Protocol):
    """Seconds on the metrics provider's clock (``time.time`` for the built-in store)."""

    def __call__(self) -> float: ...


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision as status shows it: ``decide``'s record, the generation serving its weights, when ACKed."""

    policy: str
    record: Record
    generation: int
    """The xDS generation serving the decision's weights (for a hold: the step's)."""
    acked_at: float | None
    """When every target had acknowledged the step (the analysis window's start), ``None`` before."""


@dataclass(frozen=True, slots=True)
class RolloutView:
    """A rollout as status shows it."""

    policy: str
    virtual_services: tuple[str, ...]
    state: RolloutState
    steps: tuple[float, ...]
    served: WeightTable
    goal: WeightTable
    last: DecisionRecord | None
    """The latest decision, holds included: its counts are the step's so far."""
    interval: float
    max_interval: float


@dataclass(slots=True)
class _Rollout:
    governed: Governed
    revision: Revision
    state: RolloutState
    weights: WeightTable
    """What is served for its routes: the latest decision's weights."""
    clusters: Mapping[Destination, tuple[str, ...]]
    generation: int = 0
    nack: str | None = None
    """The NACK of the step's generation (proxy and Envoy's message), until a tick judges it."""
    last: DecisionRecord | None = None
    records: deque[DecisionRecord] = field(default_factory=lambda: deque(maxlen=RECORDS_KEPT))
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    """The rollout's identity in the store."""


class RolloutController:
    """Serves commits through rollouts and walks them; ``tick`` judges every running one."""

    def __init__(
        self,
        *,
        engine: Engine,
        cache: SnapshotCache,
        metrics: MetricsProvider,
        clock: Clock,
        store: RolloutStore | None = None,
        acks: Sequence[Acknowledger] | None = None,
    ) -> None:
        """``acks``: the targets whose acknowledgement of a step opens its analysis window (default: the engine's)."""
        self._engine = engine
        self._cache = cache
        self._acks: tuple[Acknowledger, ...] = tuple(acks) if acks is not None else engine.acknowledgers
        if not self._acks:
            raise ValueError("a rollout needs a target to acknowledge its steps")
        # The records name who acknowledged: every target but the proxies' cache is the kubernetes sink.
        self._acknowledgement = Acknowledgement(
            proxies=any(target is cache for target in self._acks),
            api_server=any(target is not cache for target in self._acks),
        )
        self._metrics = metrics
        self._clock = clock
        self._rollouts: dict[str, _Rollout] = {}
        # Git's config for the head revision: each step serves it with the rollouts' weights.
        self._head: tuple[Revision, ConfigSnapshots] | None = None
        self._tick_pending = False
        self._stopped = False
        # Counts changes to the running rollouts: a commit decided on a count that moved is decided again.
        self._changes = 0
        # Moves decided on the loop, waiting for their push (translated off the loop), and its task.
        self._pending: list[_Taken] = []
        self._pusher: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[DecisionRecord], None]] = []
        self._store = store
        # One writer thread: a rollout's saves land in the order its decisions were made.
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout-save")
        self._saving: Future[None] | None = None
        # The latest stored rollout per policy and config tree, resumable until a commit is served (restores aside).
        self._resumable = self._load_stored()
        engine.govern(self)
        cache.add_listener(self._on_xds_event)

    def views(self) -> tuple[RolloutView, ...]:
        """Every rollout of the head revision, by policy."""
        return tuple(_view(rollout) for _, rollout in sorted(self._rollouts.items()))

    def documents(self) -> tuple[RolloutDocument, ...]:
        """Every rollout as the status document shows it."""
        return tuple(_document(view) for view in self.views())

    def records(self, policy: str) -> tuple[DecisionRecord, ...]:
        """The decisions of the rollout under ``policy`` (``namespace/name``) that changed something, oldest first."""
        rollout = self._rollouts.get(policy)
        return tuple(rollout.records) if rollout is not None else ()

    def command(self, policy: str, command: Command) -> RolloutDocument:
        """Act on a user's command for the rollout under ``policy`` (``namespace/name``) now; the rollout after it.

        Raises RolloutNotFoundError when no rollout is under ``policy``, RolloutCommandError when
        the command does not apply to the rollout's phase.
        """
        if self._stopped:
            raise RolloutCommandError(
                f"cannot {command} the rollout under RolloutPolicy {policy}: this replica stopped"
            )
        rollout = self._rollouts.get(policy)
        if rollout is None:
            raise RolloutNotFoundError(f"no rollout under RolloutPolicy {policy}")
        refused = refusal(rollout.state, command, policy=rollout.governed.spec, acknowledgement=self._acknowledgement)
        if refused is not None:
            raise RolloutCommandError(f"cannot {command} the rollout under RolloutPolicy {policy}: {refused}")
        decision = self._decide(rollout, Observation(command=command), now=self._clock())
        self._act([(rollout, decision)])
        if decision.action in _MOVES:
            rollout.nack = None  # a NACK of the weights just replaced judges nothing served now
        return _document(_view(rollout))

    def serve_revision(self, revision: Revision, config: ConfigSnapshots, *, change: Change) -> bool:
        """Serve a commit: git's weights where nothing is to be walked, each rollout's weights where one is.

        Translated on the calling thread: a restore before anything is served, tools and tests without a loop.
        """
        plan = self._plan(revision, config, change=change)
        return self._carry_out(plan, *self._stepped(revision, config, plan.rollouts, change=change))

    async def serve_revision_off_loop(self, revision: Revision, config: ConfigSnapshots, *, change: Change) -> bool:
        """:meth:`serve_revision` with the config (a rollout's first step) translated in a worker thread.

        The decisions are made on the loop; a tick, command or NACK that changes a rollout while the
        config translates makes them be made again from what it left, a few rounds at most, then on the loop.
        """
        for _ in range(_REPLAN_ROUNDS):
            changes = self._changes
            plan = self._plan(revision, config, change=change)
            snapshots, origin = await asyncio.to_thread(
                _translated,
                revision,
                config,
                plan.rollouts,
                change=change,
                proxies=self._cache.proxies(),
                registry_for=self._engine.registry_for,
                cache=self._engine.translations,
            )
            if changes == self._changes:
                return self._carry_out(plan, snapshots, origin)
        return self.serve_revision(revision, config, change=change)

    def _plan(self, revision: Revision, config: ConfigSnapshots, *, change: Change) -> _Plan:
        """Per policy of ``config``, the rollout that serves ``revision`` and what it decided; nothing changes yet."""
        now = self._clock()
        served = self._engine.served_config
        registry = self._engine.registry_for(config.config)
        plan = _Plan(revision, config, change)
        for policy in governed(config.config):
            goal = weights_of(config.config, policy.virtual_services)
            running = self._rollouts.get(policy.policy)
            fresh_tree = running is None or running.revision.config_tree != revision.config_tree
            resumed = self._resume(policy, revision, registry=registry) if fresh_tree else None
            if resumed is not None:
                plan.rollouts[policy.policy] = resumed
                plan.moved.append(resumed)
                continue
            if running is not None and running.revision.config_tree == revision.config_tree:
                # The same config again (a restart, a commit that changed nothing here): the rollout goes on.
                plan.rollouts[policy.policy] = dataclasses.replace(running, revision=revision)
                continue
            if running is not None and not running.state.phase.ended:
                observation = Observation(revision=RolloutRevision(revision.sha, goal))
                decision = self._decide(running, observation, now=now)
                if decision.successor is not None:
                    plan.ended.append(dataclasses.replace(running, state=decision.state))
                    # Superseded: a new walk from the weights served now; its records start with why.
                    fresh = self._new_rollout(policy, revision, decision.successor, decision.weights, registry=registry)
                else:
                    # Same goal (the walk goes on with the new commit's config) or a revert (ended, stable served).
                    weights = decision.weights if decision.action in _MOVES else running.weights
                    fresh = dataclasses.replace(
                        running, governed=policy, revision=revision, state=decision.state, weights=weights
                    )
                plan.rollouts[policy.policy] = fresh
                plan.decisions.append((fresh, decision))
                if decision.action in _MOVES:
                    plan.moved.append(fresh)
                continue
            started = self._maybe_start(
                policy, revision, goal, served=served, registry=registry, now=now, out=plan.decisions
            )
            if started is not None:
                plan.rollouts[policy.policy] = started
                plan.moved.append(started)
        return plan

    def _carry_out(self, plan: _Plan, snapshots: ConfigSnapshots, origin: Origin) -> bool:
        """Serve ``plan``'s config (``snapshots``, as ``origin``) and make its rollouts the running ones."""
        if not self._engine.serve(snapshots, origin=origin):
            return False
        self._changes += 1
        self._rollouts = plan.rollouts
        self._head = (plan.revision, plan.config)
        generation = self._engine.status.generation
        for rollout in plan.moved:
            rollout.generation = generation
            rollout.nack = None
        for rollout in plan.rollouts.values():
            if rollout.generation == 0:
                rollout.generation = generation  # its push was waiting: this one serves its weights
        if plan.change is not Change.RESTORE:
            self._resumable = {}
        for rollout in (*plan.ended, *plan.rollouts.values()):
            self._save(rollout)
        for rollout, decision in plan.decisions:
            self._record(rollout, decision)
        return True

    def tick(self) -> None:
        """Judge every running rollout once, and serve what the decisions say (every move in one push)."""
        self._tick_pending = False
        if self._stopped:
            return
        decided: list[tuple[_Rollout, Decision]] = []
        for rollout in list(self._rollouts.values()):
            if rollout.state.phase.ended:
                continue
            observation = Observation(
                acked=rollout.generation > 0 and all(target.all_acked(rollout.generation) for target in self._acks),
                nacked=rollout.nack is not None,
                nack=rollout.nack or "",
                counts=self._counts(rollout),
            )
            decided.append((rollout, self._decide(rollout, observation, now=self._clock())))
            rollout.nack = None
        self._act(decided)

    def _decide(self, rollout: _Rollout, observation: Observation, *, now: float) -> Decision:
        spec = rollout.governed.spec
        return decide(rollout.state, observation, policy=spec, now=now, acknowledgement=self._acknowledgement)

    def stop(self) -> None:
        """Move nothing from now on: ticks, ACKs and commands decide nothing (a leader that lost its Lease)."""
        self._stopped = True

    async def run(self, *, period: float) -> None:
        """Tick every ``period`` seconds until cancelled (ACKs and NACKs tick in between)."""
        while True:
            self.tick()
            await asyncio.sleep(period)

    def _act(self, decided: list[tuple[_Rollout, Decision]]) -> None:
        """Take the decisions, serve the moves among them in one push, and record them.

        On the event loop the push's config is translated in a worker thread (:meth:`_push_pending`):
        until it is published, a moved rollout has no generation, so nothing counts as its ACK.
        Driven without a loop (tools, tests), the push is served here.

        A push the engine refuses (a proxy's config cannot be translated) ends each walk that
        moved in it ``RolledBack`` with the refusal as its reason, and its pre-rollout weights
        are pushed: a walk whose next weights cannot be served has nowhere to go.
        """
        taken: list[_Taken] = []
        moved: list[_Rollout] = []
        refused_head = self._head_refused()
        for rollout, decision in decided:
            taken.append(_Taken(rollout, decision, decision.state != rollout.state, rollout.state.acked_at))
            if taken[-1].changed or decision.action in _MOVES:
                self._changes += 1
            rollout.state = decision.state
            if decision.action in _MOVES:
                rollout.weights = decision.weights
                if refused_head and decision.action is Action.ROLL_BACK:
                    # A proxy NACKed the commit and the engine serves the config from before it again (its weights
                    # the pre-rollout ones): pushing the refused commit with them would only be NACKed once more.
                    rollout.generation = self._engine.status.generation
                else:
                    moved.append(rollout)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if moved and not self._serve_head(moved):
                refused = self._end_refused(moved)
                taken.extend(refused)
                self._serve_head([entry.rollout for entry in refused])
            self._record_taken(taken)
            return
        waiting = {id(rollout) for rollout in moved}
        self._record_taken([entry for entry in taken if id(entry.rollout) not in waiting])
        for rollout in moved:
            rollout.generation = 0
        self._pending.extend(entry for entry in taken if id(entry.rollout) in waiting)
        if moved and (self._pusher is None or self._pusher.done()):
            self._pusher = loop.create_task(self._push_pending())

    async def _push_pending(self) -> None:
        """Serve the moves waiting, translated off the loop, one push at a time, until none waits."""
        while self._pending:
            taken, self._pending = self._pending, []
            moved = [entry.rollout for entry in taken]
            if self._head_refused():
                # A NACK judged by a tick queued before the engine's NACK rollback: the engine now serves the config
                # from before the commit (its weights the pre-rollout ones), as _act leaves it when it knows in time.
                backs = {id(entry.rollout) for entry in taken if entry.decision.action is Action.ROLL_BACK}
                for rollout in moved:
                    if id(rollout) in backs:
                        rollout.generation = self._engine.status.generation
                moved = [rollout for rollout in moved if id(rollout) not in backs]
            if moved and not await self._serve_head_off_loop(moved):
                refused = self._end_refused(moved)
                taken.extend(refused)
                await self._serve_head_off_loop([entry.rollout for entry in refused])
            self._record_taken(taken)

    async def _serve_head_off_loop(self, moved: list[_Rollout]) -> bool:
        """:meth:`_serve_head` with the config translated in a worker thread."""
        head = self._head
        if head is None:
            return True
        revision, config = head
        snapshots, origin = await asyncio.to_thread(
            _translated,
            revision,
            config,
            dict(self._rollouts),
            proxies=self._cache.proxies(),
            registry_for=self._engine.registry_for,
            cache=self._engine.translations,
        )
        # When the head changed meanwhile, serve_revision has served the newer commit with every rollout's weights.
        if self._head is head and not self._engine.serve(snapshots, origin=origin):
            return False
        for rollout in moved:
            rollout.generation = self._engine.status.generation
        return True

    def _record_taken(self, taken: list[_Taken]) -> None:
        for entry in taken:
            if entry.changed or entry.decision.action in _MOVES:
                self._record(entry.rollout, entry.decision, judged_ack=entry.judged_ack)
            else:
                # A hold that changes nothing: status shows its counts, the log and the records do not repeat it.
                entry.rollout.last = self._decision_record(entry.rollout, entry.decision, judged_ack=entry.judged_ack)

    def _head_refused(self) -> bool:
        """Whether the engine serves another commit's config than the head's: a NACK made it refuse the head."""
        origin = self._engine.status.origin
        return (
            self._head is not None and origin is not None and origin.revision.config_tree != self._head[0].config_tree
        )

    def _serve_head(self, moved: list[_Rollout]) -> bool:
        """Serve the head revision with every rollout's weights; False when the engine refused the push."""
        if self._head is None:
            return True
        revision, config = self._head
        if not self._serve(revision, config, self._rollouts, change=Change.COMMIT):
            return False
        for rollout in moved:
            rollout.generation = self._engine.status.generation
        return True

    def _end_refused(self, moved: list[_Rollout]) -> list[_Taken]:
        """End each walk among ``moved`` whose new weights the engine refused to serve: RolledBack, not yet pushed."""
        ended = []
        for rollout, decision in self._refused(moved):
            self._changes += 1
            ended.append(_Taken(rollout, decision, True, rollout.state.acked_at))
            rollout.state, rollout.weights = decision.state, decision.weights
        return ended

    def _refused(self, moved: list[_Rollout]) -> list[tuple[_Rollout, Decision]]:
        """The decisions ending each walk among ``moved`` whose new weights the engine refused to serve."""
        error = self._engine.status.last_error
        why = error.message if error is not None else "the engine refused the push"
        now = self._clock()
        return [
            (rollout, self._decide(rollout, Observation(refused=why), now=now))
            for rollout in moved
            if not rollout.state.phase.ended
        ]

    def _maybe_start(
        self,
        policy: Governed,
        revision: Revision,
        goal: WeightTable,
        *,
        served: ConfigSnapshots | None,
        registry: ServiceRegistry,
        now: float,
        out: list[tuple[_Rollout, Decision]],
    ) -> _Rollout | None:
        """A rollout from the served weights to ``goal``; None when git's weights are served at once."""
        if served is None:
            return None  # the first revision ever served is served as committed
        before = weights_of(served.config, policy.virtual_services)
        if same_traffic(before, goal):
            return None
        try:
            decision = start(before, goal, sha=revision.sha, policy=policy.spec, now=now)
        except ValueError as error:
            # Routes added or removed, totals changed: no lockstep walk exists, so git's weights are served.
            log.warning("rollout.not_walkable", policy=policy.policy, sha=revision.short_sha, reason=str(error))
            return None
        rollout = self._new_rollout(policy, revision, decision.state, decision.weights, registry=registry)
        out.append((rollout, decision))
        return rollout

    def _new_rollout(
        self,
        policy: Governed,
        revision: Revision,
        state: RolloutState,
        weights: WeightTable,
        *,
        registry: ServiceRegistry,
    ) -> _Rollout:
        namespace = policy.policy.split("/", 1)[0]
        destinations = {d for table in (state.pre_rollout, state.goal) for split in table.values() for d in split}
        clusters = {d: _clusters_of(d, namespace=namespace, registry=registry) for d in destinations}
        return _Rollout(policy, revision, state, weights, MappingProxyType(clusters))

    def _serve(
        self, revision: Revision, config: ConfigSnapshots, rollouts: Mapping[str, _Rollout], *, change: Change
    ) -> bool:
        """Serve git's ``config`` with each rollout's weights for its routes, in one push."""
        snapshots, origin = self._stepped(revision, config, rollouts, change=change)
        return self._engine.serve(snapshots, origin=origin)

    def _stepped(
        self, revision: Revision, config: ConfigSnapshots, rollouts: Mapping[str, _Rollout], *, change: Change
    ) -> tuple[ConfigSnapshots, Origin]:
        return _stepped(
            revision,
            config,
            rollouts,
            change=change,
            registry_for=self._engine.registry_for,
            cache=self._engine.translations,
        )

    def add_listener(self, listener: Callable[[DecisionRecord], None]) -> None:
        """Call ``listener`` with every recorded decision (not with holds that change nothing)."""
        self._listeners.append(listener)

    def wait_saved(self) -> None:
        """Block until every save asked for so far has landed (a clean stop; tests)."""
        if self._saving is not None:
            self._saving.result()

    def reload_stored(self) -> None:
        """Read the stored rollouts again (a replica that just became leader: another one moved them since)."""
        self._resumable = self._load_stored()

    def _load_stored(self) -> dict[tuple[str, str], StoredRollout]:
        if self._store is None:
            return {}
        try:
            return {(stored.policy, stored.config_tree): stored for stored in self._store.load_rollouts()}
        except StateError as error:
            # Rollouts then start afresh from what is served, as without a store.
            log.error("rollout.state_load_failed", error=str(error))
            return {}

    def _resume(self, policy: Governed, revision: Revision, *, registry: ServiceRegistry) -> _Rollout | None:
        """The stored rollout of ``policy`` for this config tree: its weights, its step observed afresh.

        Read once per resumed rollout, in the first passes after a start: a few rows of an indexed table.
        """
        stored = self._resumable.get((policy.policy, revision.config_tree))
        if stored is None or self._store is None:
            return None
        try:
            decisions = self._store.load_decisions(stored.key, last=RECORDS_KEPT)
        except StateError as error:
            log.error("rollout.state_load_failed", policy=policy.policy, error=str(error))
            decisions = ()
        rollout = self._new_rollout(
            policy, revision, restarted(stored.state, now=self._clock()), stored.weights, registry=registry
        )
        rollout.key = stored.key
        records = [DecisionRecord(policy.policy, d.record, d.generation, d.acked_at) for d in decisions]
        rollout.records.extend(records)
        rollout.last = records[-1] if records else None
        log.info(
            "rollout.resumed",
            policy=policy.policy,
            sha=stored.sha[:12],
            phase=rollout.state.phase.value,
            step=rollout.state.step,
            weights=_describe(rollout.weights),
        )
        return rollout

    def _save(self, rollout: _Rollout, decision: DecisionRecord | None = None) -> None:
        """Save the rollout (and a decision of it) on the writer thread; a failed save is logged, never raised."""
        if self._store is None:
            return
        store = self._store
        row = StoredRollout(
            key=rollout.key,
            policy=rollout.governed.policy,
            sha=rollout.revision.sha,
            config_tree=rollout.revision.config_tree,
            state=rollout.state,
            weights=rollout.weights,
        )
        entry = None if decision is None else StoredDecision(decision.record, decision.generation, decision.acked_at)

        def save() -> None:
            # Serving goes on either way; only a restart's resume is at risk. Say so loudly.
            try:
                store.save_rollout(row, decision=entry)
            except Exception as error:
                log.error("rollout.state_save_failed", policy=row.policy, error=repr(error))

        self._saving = self._saver.submit(save)

    def _counts(self, rollout: _Rollout) -> Mapping[Destination, Counts]:
        since = rollout.state.window_start
        if since is None:
            return MappingProxyType({})
        names = [name for names in rollout.clusters.values() for name in names]
        by_cluster = self._metrics.counts(names, since=since)
        return MappingProxyType(
            {d: sum_counts(by_cluster[name] for name in names) for d, names in rollout.clusters.items()}
        )

    def _record(self, rollout: _Rollout, decision: Decision, *, judged_ack: float | None = None) -> None:
        entry = self._decision_record(rollout, decision, judged_ack=judged_ack)
        rollout.last = entry
        rollout.records.append(entry)
        self._save(rollout, entry)
        for listener in self._listeners:
            listener(entry)
        record = decision.record
        log.info(
            "rollout.decision",
            policy=entry.policy,
            sha=record.sha[:12],
            phase=record.phase.value,
            action=record.action.value,
            step=record.step,
            weights=_describe(record.weights),
            generation=entry.generation,
            acked_at=entry.acked_at,
            counts={_label(d): (c.requests, c.errors) for d, c in record.counts.items()},
            checks=[(c.metric.value, c.outcome.value, c.statistic, c.threshold) for c in record.checks],
            reason=record.reason,
        )

    def _decision_record(self, rollout: _Rollout, decision: Decision, *, judged_ack: float | None) -> DecisionRecord:
        # A move starts a step not ACKed yet: its record keeps the ACK of the step whose counts it judged.
        acked_at = decision.state.acked_at if decision.state.acked_at is not None else judged_ack
        return DecisionRecord(
            policy=rollout.governed.policy, record=decision.record, generation=rollout.generation, acked_at=acked_at
        )

    def _on_xds_event(self, event: XdsEvent) -> None:
        if event.kind is EventKind.NACK:
            for rollout in self._rollouts.values():
                if rollout.generation and event.generation == rollout.generation and rollout.nack is None:
                    self._changes += 1
                    rollout.nack = excerpt(f"proxy {event.node_id} rejected it: {event.message}", MESSAGE_CHARS)
        elif event.kind is not EventKind.SNAPSHOT_ACKED:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.tick()  # driven without a loop (tests): nothing to coalesce
            return
        # After the engine has handled the event (its NACK rollback), once per loop turn however many ACKs came.
        if not self._tick_pending:
            self._tick_pending = True
            loop.call_soon(self.tick)


@dataclass(slots=True)
class _Plan:
    """What serving a commit decided for its rollouts, carried out once its config is served."""

    revision: Revision
    config: ConfigSnapshots
    change: Change
    rollouts: dict[str, _Rollout] = field(default_factory=dict)
    moved: list[_Rollout] = field(default_factory=list)
    decisions: list[tuple[_Rollout, Decision]] = field(default_factory=list)
    ended: list[_Rollout] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Taken:
    """A decision taken, to be recorded (after its push, for a move): whether it changed the state, the ACK judged."""

    rollout: _Rollout
    decision: Decision
    changed: bool
    judged_ack: float | None


def _stepped(
    revision: Revision,
    config: ConfigSnapshots,
    rollouts: Mapping[str, _Rollout],
    *,
    change: Change,
    registry_for: Callable[[MeshConfig], ServiceRegistry],
    cache: TranslationCache,
) -> tuple[ConfigSnapshots, Origin]:
    """Git's ``config`` with each rollout's weights for its routes, and the origin to serve it as.

    ``cache``: the engine's, so a step re-translates only what its weights change.
    """
    weights: dict[RouteRef, Split] = {}
    for rollout in rollouts.values():
        weights.update(rollout.weights)
    goal = weights_of(config.config, {vs for r in rollouts.values() for vs in r.governed.virtual_services})
    if same_traffic(weights, goal):
        return config, Origin(revision, change)
    stepped = with_weights(config.config, MappingProxyType(weights))
    snapshots = ConfigSnapshots(config=stepped, registry=registry_for(stepped), findings=config.warnings(), cache=cache)
    return snapshots, _origin(revision, rollouts)


def _translated(
    revision: Revision,
    config: ConfigSnapshots,
    rollouts: Mapping[str, _Rollout],
    *,
    change: Change = Change.COMMIT,
    proxies: tuple[ProxyIdentity, ...],
    registry_for: Callable[[MeshConfig], ServiceRegistry],
    cache: TranslationCache,
) -> tuple[ConfigSnapshots, Origin]:
    """:func:`_stepped` translated for ``proxies`` (in a worker thread), so publishing it on the loop is cheap."""
    snapshots, origin = _stepped(revision, config, rollouts, change=change, registry_for=registry_for, cache=cache)
    with contextlib.suppress(ReconcilerError):
        # A proxy it does not translate for: the engine's publish meets the error again and refuses it as usual.
        snapshots.translate_all(proxies)
    return snapshots, origin


def _view(rollout: _Rollout) -> RolloutView:
    spec = rollout.governed.spec
    return RolloutView(
        policy=rollout.governed.policy,
        virtual_services=rollout.governed.virtual_services,
        state=rollout.state,
        steps=spec.steps,
        served=rollout.weights,
        goal=rollout.state.goal,
        last=rollout.last,
        interval=spec.interval.seconds,
        max_interval=spec.max_interval.seconds,
    )


def _document(view: RolloutView) -> RolloutDocument:
    walk = plan(view.state.pre_rollout, view.goal, steps=view.steps)
    counts = view.last.record.counts if view.last is not None else {}
    next_look_at, deadline = _timing(view)

    def side(destinations: frozenset[Destination]) -> RolloutCounts | None:
        if not counts:
            return None
        total = sum_counts(c for d, c in counts.items() if d in destinations)
        return RolloutCounts(requests=total.requests, errors=total.errors)

    return RolloutDocument(
        policy=view.policy,
        virtual_services=view.virtual_services,
        sha=view.state.sha,
        phase=view.state.phase.value,
        step=view.state.step,
        steps=walk.final_step,
        served=_describe(view.served),
        goal=_describe(view.goal),
        canary=side(walk.canary),
        stable=side(walk.stable),
        message=view.last.record.reason if view.last is not None else "",
        decided_at=view.last.record.time if view.last is not None else None,
        counts={_label(d): RolloutCounts(requests=c.requests, errors=c.errors) for d, c in counts.items()},
        acked_at=view.state.acked_at,
        next_look_at=next_look_at,
        deadline=deadline,
    )


def _timing(view: RolloutView) -> tuple[float | None, float | None]:
    """When a walking step's counts get their next look, and when ``maxInterval`` runs out (held: neither)."""
    state = view.state
    if state.phase is not Phase.PROGRESSING:
        return None, None
    if state.acked_at is None or state.window_start is None:
        return None, state.step_started_at + view.max_interval
    return state.window_start + view.interval, state.acked_at + view.max_interval


def _origin(revision: Revision, rollouts: Mapping[str, _Rollout]) -> Origin:
    """A step's origin, or a rollback's when some rollout serves its pre-rollout weights."""
    backed = sorted(p for p, r in rollouts.items() if r.state.phase in (Phase.ROLLED_BACK, Phase.ABORTED))
    if backed:
        return Origin(revision, Change.ROLLBACK, step=f"rolled back: {', '.join(backed)}")
    walking = [r for r in rollouts.values() if not r.state.phase.ended]
    labels = sorted({_step_label(r) for r in walking}) or ["git's weights"]
    return Origin(revision, Change.ROLLOUT_STEP, step=", ".join(labels))


def _step_label(rollout: _Rollout) -> str:
    steps = rollout.governed.spec.steps
    step = rollout.state.step
    percent = steps[step] if step < len(steps) else 100.0
    return f"step {step + 1} ({percent:g}%)"


def _clusters_of(destination: Destination, *, namespace: str, registry: ServiceRegistry) -> tuple[str, ...]:
    """The Envoy clusters a destination's requests are counted in: its port's, or every port of its service."""
    host = resolve_host(destination.host, namespace)
    if destination.port is not None and destination.port.number is not None:
        ports = [int(destination.port.number)]
    else:
        ports = sorted({int(port.number) for service in registry.lookup(host) for port in service.ports})
    return tuple(cluster_name(host=host, port=port, subset=destination.subset) for port in ports)


def _label(destination: Destination) -> str:
    return f"{destination.host}:{destination.subset}" if destination.subset else destination.host


def _describe(weights: WeightTable) -> dict[str, dict[str, int]]:
    return {
        f"{route.virtual_service}#{route.route}": {_label(d): w for d, w in split.items()}
        for route, split in weights.items()
    }
