"""The rollout state machine: ``start`` a rollout, then ``decide`` what to serve at each observation.

Both are pure: the engine passes the time (``now``, seconds) and what it saw since the last
call (``Observation``), stores the returned ``RolloutState``, serves ``Decision.weights`` and
keeps ``Decision.record``. One call handles, in this order of precedence:

1. a new revision: a revert (git's weights are the pre-rollout ones again) ends the rollout
   ``Reverted`` at once, whatever else happened; a new goal ends it ``Superseded`` and
   ``successor`` walks from the weights served now to the new goal;
2. a user command: pause, resume, promote (next step now), promote full (goal now), abort;
3. a NACK of the step by any proxy, or the engine refusing to serve it (its config does not
   translate for some proxy): the step failed, roll back;
4. the step's ACK: nothing is judged until every proxy ACKed the step; the analysis window
   opens at the first call that sees it (counts are reported since ``window_start``);
5. the analysis (see ``analysis``):

   * a check failed beyond doubt rolls back at once, whatever ``failureThreshold`` says: it
     holds however often the counts are looked at, and the canary is failing users now;
   * once ``interval`` has passed and the canary has ``minRequests``, the counts get their one
     look: all PASS advances (after the last step: serve the goal); a FAIL is a failed
     analysis, and ``failureThreshold`` of them in a row roll back, an earlier one opens a
     fresh window; an estimate over ``max`` that is not beyond doubt also opens a fresh
     window, so no counts are looked at twice;
   * ``maxInterval`` after the ACK without a pass: if some look of the step was over ``max``,
     that is a failed analysis; otherwise traffic was too low, and ``onLowTraffic`` holds
     (``Stalled``, still judging as requests arrive), promotes or rolls back.

A step is therefore decided within ``maxInterval`` of its ACK, and a rollout ends within
steps * failureThreshold * maxInterval of ACK time unless it is held (paused, stalled, or a
proxy never ACKs: after ``maxInterval`` that is reported ``Stalled`` too). The rollout
succeeds when every proxy ACKed the goal weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from reconciler.model.rolloutpolicy import OnLowTraffic, RolloutPolicySpec
from reconciler.model.virtualservice import Destination
from reconciler.rollout.analysis import CheckResult, Counts, Outcome, analyse, sum_counts
from reconciler.rollout.plan import Plan, RevisionChange, WeightTable, classify_revision, plan

__all__ = [
    "Acknowledgement",
    "Action",
    "Command",
    "Decision",
    "Observation",
    "Phase",
    "Record",
    "Revision",
    "RolloutState",
    "decide",
    "refusal",
    "start",
]


class Phase(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    STALLED = "Stalled"
    """Held: low traffic past ``maxInterval`` with ``onLowTraffic: hold``, or a step not ACKed by then."""
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    REVERTED = "Reverted"
    SUPERSEDED = "Superseded"
    ABORTED = "Aborted"

    @property
    def ended(self) -> bool:
        return self not in (Phase.PROGRESSING, Phase.PAUSED, Phase.STALLED)


class Action(StrEnum):
    """What the engine does with ``Decision.weights``."""

    WAIT_FOR_ACK = "wait_for_ack"
    HOLD = "hold"
    ADVANCE = "advance"
    FINISH = "finish"
    """Serve the goal weights; the rollout succeeds once every proxy ACKed them."""
    ROLL_BACK = "roll_back"
    """Serve the pre-rollout weights (also on abort and revert)."""
    DONE = "done"
    """The rollout has ended (``state.phase`` says how): keep serving what is served."""


class Command(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """Who acknowledges a step, for the records' wording: the proxies (ACK), the API server (CRD mode), or both."""

    proxies: bool = True
    api_server: bool = False

    @property
    def done(self) -> str:
        """``... step 1``: it reached every target."""
        return self._join("the API server accepted", "every proxy ACKed")

    @property
    def awaited(self) -> str:
        """``waiting for ... step 1``."""
        return self._join("the API server to accept", "every proxy to ACK")

    @property
    def missing(self) -> str:
        """``step 1 is still not ...``."""
        return self._join("accepted by the API server", "ACKed by every proxy")

    def _join(self, api_server: str, proxies: str) -> str:
        return " and ".join(words for words, on in ((api_server, self.api_server), (proxies, self.proxies)) if on)


#: The proxies alone acknowledge a step: the default (``--sink xds``).
_PROXIES_ONLY = Acknowledgement()


@dataclass(frozen=True, slots=True)
class Revision:
    """A new git revision: its sha and its weights for the rollout's routes (the same routes)."""

    sha: str
    weights: WeightTable


@dataclass(frozen=True, slots=True)
class Observation:
    """What the engine saw since the last call."""

    acked: bool = False
    """Every proxy that carries the routes has ACKed the current step's weights."""
    nacked: bool = False
    """Some proxy NACKed them."""
    nack: str = ""
    """Which proxy NACKed them and Envoy's message, for the record."""
    refused: str | None = None
    """Why the engine could not serve them (their config did not translate for some proxy), if it could not."""
    counts: Mapping[Destination, Counts] = field(default_factory=lambda: MappingProxyType({}))
    """Per destination, since ``RolloutState.window_start``."""
    command: Command | None = None
    revision: Revision | None = None


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Everything ``decide`` needs to go on; the engine stores it between calls."""

    phase: Phase
    step: int
    """Index into the policy's steps; one past the last is the goal weights."""
    pre_rollout: WeightTable
    goal: WeightTable
    sha: str
    step_started_at: float
    """When the step's weights were handed to the engine."""
    acked_at: float | None = None
    """When ``decide`` first saw every proxy ACK the step (None until then); ``maxInterval`` counts from here."""
    window_start: float | None = None
    """Since when the reported counts run: the ACK, or the end of the last look that led nowhere."""
    failures: int = 0
    """Failed analyses in a row."""
    over_max_looks: int = 0
    """Looks of this step whose estimate was over ``max`` but not beyond doubt (so not low traffic)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One decision as the engine stores and prints it."""

    time: float
    sha: str
    phase: Phase
    action: Action
    step: int
    weights: WeightTable
    counts: Mapping[Destination, Counts]
    checks: tuple[CheckResult, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    state: RolloutState
    record: Record
    successor: RolloutState | None = None
    """When a new goal superseded the rollout: the rollout that walks on from the served weights."""

    @property
    def weights(self) -> WeightTable:
        """What to serve now."""
        return self.record.weights


@dataclass(frozen=True, slots=True)
class _Context:
    """What every decision of one call shares: the walk, the time, and the evidence judged (if any)."""

    walk: Plan
    now: float
    counts: Mapping[Destination, Counts] = field(default_factory=lambda: MappingProxyType({}))
    checks: tuple[CheckResult, ...] = ()

    def decide(self, state: RolloutState, action: Action, reason: str, *, phase: Phase | None = None) -> Decision:
        """The decision and its record; ``phase`` replaces the state's."""
        after = state if phase is None else dataclasses.replace(state, phase=phase)
        record = Record(
            time=self.now,
            sha=after.sha,
            phase=after.phase,
            action=action,
            step=after.step,
            weights=_served(after, self.walk),
            counts=self.counts,
            checks=self.checks,
            reason=reason,
        )
        return Decision(action, after, record)

    def step_to(self, state: RolloutState, step: int, reason: str) -> Decision:
        moved = RolloutState(
            Phase.PROGRESSING, step, state.pre_rollout, state.goal, state.sha, step_started_at=self.now
        )
        return self.decide(moved, Action.FINISH if step == self.walk.final_step else Action.ADVANCE, reason)


def start(pre_rollout: WeightTable, goal: WeightTable, *, sha: str, policy: RolloutPolicySpec, now: float) -> Decision:
    """Begin walking from ``pre_rollout`` (what is served) to ``goal``: serve the first step."""
    context = _Context(plan(pre_rollout, goal, steps=policy.steps), now)
    state = RolloutState(Phase.PROGRESSING, 0, pre_rollout, goal, sha, step_started_at=now)
    if context.walk.final_step == 0:
        return context.decide(state, Action.FINISH, "the policy has no steps: serving git's weights")
    return context.decide(state, Action.ADVANCE, f"revision {sha} starts a rollout")


def decide(
    state: RolloutState,
    observation: Observation,
    *,
    policy: RolloutPolicySpec,
    now: float,
    acknowledgement: Acknowledgement = _PROXIES_ONLY,
) -> Decision:
    """The next action for a rollout, given what happened since the last call (``acknowledgement``: who acks)."""
    context = _Context(plan(state.pre_rollout, state.goal, steps=policy.steps), now)
    if state.phase.ended:
        return context.decide(state, Action.DONE, f"the rollout has ended: {state.phase}")
    if observation.revision is not None:
        change = classify_revision(observation.revision.weights, pre_rollout=state.pre_rollout, goal=state.goal)
        if change is not RevisionChange.SAME_GOAL:
            return _new_revision(context, state, observation.revision, change=change, policy=policy)
        state = dataclasses.replace(state, sha=observation.revision.sha)
    if observation.command is not None:
        return _command(context, state, observation.command)
    if observation.nacked:
        reason = f"a proxy NACKed the weights of step {state.step}" + (
            f": {observation.nack}" if observation.nack else ""
        )
        return context.decide(state, Action.ROLL_BACK, reason, phase=Phase.ROLLED_BACK)
    if observation.refused is not None:
        reason = f"the weights of step {state.step} could not be served: {observation.refused}"
        return context.decide(state, Action.ROLL_BACK, reason, phase=Phase.ROLLED_BACK)
    if state.phase is Phase.PAUSED:
        return context.decide(state, Action.HOLD, "paused")
    if state.acked_at is None or state.window_start is None:
        return _acknowledgement(context, state, acked=observation.acked, by=acknowledgement, policy=policy)
    counts = MappingProxyType(dict(observation.counts))
    canary = sum_counts(c for d, c in counts.items() if d in context.walk.canary)
    stable = sum_counts(c for d, c in counts.items() if d in context.walk.stable)
    look = now - state.window_start >= policy.interval.seconds and canary.requests >= policy.min_requests
    checks = analyse(policy.checks, canary, stable=stable, min_requests=policy.min_requests, look=look)
    judged = dataclasses.replace(context, counts=counts, checks=checks)
    return _analysis(judged, state, look=look, since_ack=now - state.acked_at, policy=policy)


def _new_revision(
    context: _Context, state: RolloutState, revision: Revision, *, change: RevisionChange, policy: RolloutPolicySpec
) -> Decision:
    if change is RevisionChange.REVERT:
        reason = f"revision {revision.sha} reverts to the pre-rollout weights"
        return context.decide(state, Action.ROLL_BACK, reason, phase=Phase.REVERTED)
    successor = start(_served(state, context.walk), revision.weights, sha=revision.sha, policy=policy, now=context.now)
    reason = f"revision {revision.sha} sets new weights: walking to them from the weights served at step {state.step}"
    ended = context.decide(state, successor.action, reason, phase=Phase.SUPERSEDED)
    return dataclasses.replace(
        ended, record=dataclasses.replace(ended.record, weights=successor.weights), successor=successor.state
    )


def _command(context: _Context, state: RolloutState, command: Command) -> Decision:
    if command is Command.ABORT:
        return context.decide(state, Action.ROLL_BACK, "aborted by a user", phase=Phase.ABORTED)
    if command is Command.PAUSE:
        return context.decide(state, Action.HOLD, "paused by a user", phase=Phase.PAUSED)
    if command is Command.RESUME:
        # The step starts over: time spent paused counts neither for the interval nor for maxInterval.
        restarted = None if state.acked_at is None else context.now
        resumed = dataclasses.replace(state, acked_at=restarted, window_start=restarted, over_max_looks=0)
        return context.decide(resumed, Action.HOLD, "resumed by a user", phase=Phase.PROGRESSING)
    final = context.walk.final_step
    return context.step_to(
        state,
        final if command is Command.PROMOTE_FULL else min(state.step + 1, final),
        f"promoted by a user ({command})",
    )


def refusal(
    state: RolloutState,
    command: Command,
    *,
    policy: RolloutPolicySpec,
    acknowledgement: Acknowledgement = _PROXIES_ONLY,
) -> str | None:
    """Why ``command`` does not apply to the rollout as it stands, or None when ``decide`` may act on it.

    A refused command would change nothing or undo progress: a resume restarts the step's
    window, so it applies only to a held rollout; a promote past git's weights has nowhere to go.
    """
    if state.phase.ended:
        return f"the rollout has ended: {state.phase}"
    if command is Command.PAUSE and state.phase is Phase.PAUSED:
        return "it is already paused"
    if command is Command.RESUME and state.phase is Phase.PROGRESSING:
        return "it is not paused or stalled"
    final = plan(state.pre_rollout, state.goal, steps=policy.steps).final_step
    if command in (Command.PROMOTE, Command.PROMOTE_FULL) and state.step == final:
        return f"it already serves git's weights and waits for {acknowledgement.awaited} them"
    return None


def _acknowledgement(
    context: _Context, state: RolloutState, *, acked: bool, by: Acknowledgement, policy: RolloutPolicySpec
) -> Decision:
    if acked and state.step == context.walk.final_step:
        return context.decide(state, Action.DONE, f"{by.done} git's weights", phase=Phase.SUCCEEDED)
    if acked:
        opened = dataclasses.replace(state, acked_at=context.now, window_start=context.now)
        reason = f"{by.done} step {state.step}: the analysis window opens"
        return context.decide(opened, Action.HOLD, reason, phase=Phase.PROGRESSING)
    if context.now - state.step_started_at >= policy.max_interval.seconds:
        reason = f"step {state.step} is still not {by.missing} after {policy.max_interval.text}"
        return context.decide(state, Action.WAIT_FOR_ACK, reason, phase=Phase.STALLED)
    return context.decide(state, Action.WAIT_FOR_ACK, f"waiting for {by.awaited} step {state.step}")


def _analysis(
    context: _Context, state: RolloutState, *, look: bool, since_ack: float, policy: RolloutPolicySpec
) -> Decision:
    outcomes = {check.outcome for check in context.checks}
    verdicts = "; ".join(check.message for check in context.checks)
    if any(check.beyond_doubt for check in context.checks):
        return context.decide(state, Action.ROLL_BACK, f"rolled back at once: {verdicts}", phase=Phase.ROLLED_BACK)
    if Outcome.FAIL in outcomes:
        return _failed_analysis(context, state, verdicts, policy=policy)
    if outcomes == {Outcome.PASS}:
        return context.step_to(state, state.step + 1, f"step {state.step} passed: {verdicts}")
    over_max = look and any(c.outcome is Outcome.INCONCLUSIVE and not c.low_traffic for c in context.checks)
    if since_ack >= policy.max_interval.seconds:
        if over_max or state.over_max_looks:
            return _failed_analysis(
                context, state, f"no pass within {policy.max_interval.text}: {verdicts}", policy=policy
            )
        return _low_traffic(context, state, verdicts, policy=policy)
    if over_max:
        # These counts had their one look: judge fresh counts next, never these again.
        renewed = dataclasses.replace(state, window_start=context.now, over_max_looks=state.over_max_looks + 1)
        return context.decide(
            renewed, Action.HOLD, f"over the limit but not beyond doubt, observing afresh: {verdicts}"
        )
    return context.decide(state, Action.HOLD, f"observing: {verdicts}")


def _failed_analysis(context: _Context, state: RolloutState, reason: str, *, policy: RolloutPolicySpec) -> Decision:
    failures = state.failures + 1
    counted = f"failed analysis {failures} of {policy.failure_threshold}: {reason}"
    if failures >= policy.failure_threshold:
        return context.decide(state, Action.ROLL_BACK, counted, phase=Phase.ROLLED_BACK)
    now = context.now
    retry = dataclasses.replace(state, acked_at=now, window_start=now, failures=failures, over_max_looks=0)
    return context.decide(retry, Action.HOLD, f"{counted}; the step is analysed again", phase=Phase.PROGRESSING)


def _low_traffic(context: _Context, state: RolloutState, verdicts: str, *, policy: RolloutPolicySpec) -> Decision:
    waited = f"too few requests within {policy.max_interval.text} ({verdicts})"
    if policy.on_low_traffic is OnLowTraffic.PROMOTE:
        return context.step_to(state, state.step + 1, f"{waited}: promoting as the policy says")
    if policy.on_low_traffic is OnLowTraffic.ROLLBACK:
        return context.decide(
            state, Action.ROLL_BACK, f"{waited}: rolling back as the policy says", phase=Phase.ROLLED_BACK
        )
    return context.decide(state, Action.HOLD, f"{waited}: holding as the policy says", phase=Phase.STALLED)


def _served(state: RolloutState, walk: Plan) -> WeightTable:
    if state.phase in (Phase.ROLLED_BACK, Phase.REVERTED, Phase.ABORTED):
        return state.pre_rollout
    return walk.weights(state.step)
