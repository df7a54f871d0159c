"""The rollout state machine: each rule of decide() on its own, then properties over arbitrary histories."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from reconciler.model.common import Duration, NonNegative
from reconciler.model.rolloutpolicy import (
    ErrorRateCheck,
    ErrorRateVsStableCheck,
    OnLowTraffic,
    RolloutPolicySpec,
    RolloutTarget,
)
from reconciler.model.virtualservice import Destination
from reconciler.rollout.analysis import Counts, Outcome
from reconciler.rollout.decide import (
    Acknowledgement,
    Action,
    Command,
    Decision,
    Observation,
    Phase,
    Revision,
    decide,
    refusal,
    start,
)
from reconciler.rollout.plan import RouteRef, WeightTable

V1, V2 = (
    Destination("reviews.bookinfo.svc.cluster.local", "v1"),
    Destination("reviews.bookinfo.svc.cluster.local", "v2"),
)
ROUTE = RouteRef("bookinfo/reviews", 0)
PRE: WeightTable = {ROUTE: {V1: 100, V2: 0}}
GOAL: WeightTable = {ROUTE: {V1: 0, V2: 100}}
POLICY = RolloutPolicySpec(targets=(RolloutTarget(name="reviews"),))  # 10/25/50, 30s, 100 requests, 10m, hold
CLEAN = Observation(acked=True, counts={V2: Counts(200, 0), V1: Counts(1800, 2)})


def begin(policy: RolloutPolicySpec = POLICY) -> Decision:
    return start(PRE, GOAL, sha="a1", policy=policy, now=0.0)


def acked(decision: Decision, *, policy: RolloutPolicySpec = POLICY, at: float = 1.0) -> Decision:
    """The step's ACK arrives: the analysis window opens at ``at``."""
    opened = decide(decision.state, Observation(acked=True), policy=policy, now=at)
    assert opened.state.window_start == at
    return opened


def then(decision: Decision, observation: Observation, at: float, policy: RolloutPolicySpec = POLICY) -> Decision:
    return decide(decision.state, observation, policy=policy, now=at)


def test_start_serves_the_first_step_and_records_why() -> None:
    first = begin()

    assert first.action is Action.ADVANCE
    assert dict(first.weights[ROUTE]) == {V1: 90, V2: 10}
    assert (first.record.sha, first.record.step, first.state.phase) == ("a1", 0, Phase.PROGRESSING)


def test_nothing_is_judged_before_every_proxy_acked_the_step() -> None:
    awful = Observation(acked=False, counts={V2: Counts(100, 100)})

    waiting = then(begin(), awful, at=60.0)

    assert waiting.action is Action.WAIT_FOR_ACK
    assert waiting.state.acked_at is None
    assert waiting.record.checks == ()


def test_a_step_not_acked_within_max_interval_is_reported_stalled_and_still_waits() -> None:
    waiting = then(begin(), Observation(), at=600.0)

    assert (waiting.action, waiting.state.phase) == (Action.WAIT_FOR_ACK, Phase.STALLED)
    assert acked(waiting, at=601.0).state.phase is Phase.PROGRESSING


def test_the_records_name_who_acknowledges_the_step_the_proxies_the_api_server_or_both() -> None:
    def reasons(by: Acknowledgement) -> list[str]:
        step = begin().state
        waited = decide(step, Observation(), policy=POLICY, now=1.0, acknowledgement=by)
        stalled = decide(step, Observation(), policy=POLICY, now=600.0, acknowledgement=by)
        opened = decide(step, Observation(acked=True), policy=POLICY, now=601.0, acknowledgement=by)
        goal = dataclasses.replace(step, step=3)
        done = decide(goal, Observation(acked=True), policy=POLICY, now=602.0, acknowledgement=by)
        promote = refusal(goal, Command.PROMOTE, policy=POLICY, acknowledgement=by)
        return [waited.record.reason, stalled.record.reason, opened.record.reason, done.record.reason, str(promote)]

    assert reasons(Acknowledgement()) == [
        "waiting for every proxy to ACK step 0",
        "step 0 is still not ACKed by every proxy after 10m",
        "every proxy ACKed step 0: the analysis window opens",
        "every proxy ACKed git's weights",
        "it already serves git's weights and waits for every proxy to ACK them",
    ]
    assert reasons(Acknowledgement(proxies=False, api_server=True)) == [
        "waiting for the API server to accept step 0",
        "step 0 is still not accepted by the API server after 10m",
        "the API server accepted step 0: the analysis window opens",
        "the API server accepted git's weights",
        "it already serves git's weights and waits for the API server to accept them",
    ]
    assert reasons(Acknowledgement(proxies=True, api_server=True))[2] == (
        "the API server accepted and every proxy ACKed step 0: the analysis window opens"
    )


def test_a_step_with_enough_clean_requests_advances_only_after_the_interval() -> None:
    window = acked(begin())

    early = then(window, CLEAN, at=30.0)
    passed = then(window, CLEAN, at=31.0)

    assert early.action is Action.HOLD
    assert passed.action is Action.ADVANCE
    assert dict(passed.weights[ROUTE]) == {V1: 75, V2: 25}
    assert passed.record.counts == CLEAN.counts
    assert [check.outcome for check in passed.record.checks] == [Outcome.PASS]


def test_after_the_last_step_the_goal_is_served_and_the_rollout_succeeds_once_acked() -> None:
    decision = begin()
    for step in range(3):
        decision = then(acked(decision, at=100.0 * step + 1), CLEAN, at=100.0 * step + 50)

    assert (decision.action, decision.weights) == (Action.FINISH, GOAL)
    succeeded = then(decision, Observation(acked=True), at=400.0)
    assert (succeeded.action, succeeded.state.phase, succeeded.weights) == (Action.DONE, Phase.SUCCEEDED, GOAL)


def test_a_nack_of_the_step_rolls_back_to_the_pre_rollout_weights() -> None:
    rolled_back = then(begin(), Observation(nacked=True), at=5.0)

    assert (rolled_back.action, rolled_back.state.phase, rolled_back.weights) == (
        Action.ROLL_BACK,
        Phase.ROLLED_BACK,
        PRE,
    )
    assert "NACK" in rolled_back.record.reason


def test_a_failure_beyond_doubt_rolls_back_at_once_whatever_the_failure_threshold() -> None:
    patient = dataclasses.replace(POLICY, failure_threshold=3)
    window = acked(begin(patient), policy=patient)

    rolled_back = then(window, Observation(acked=True, counts={V2: Counts(20, 8)}), at=5.0, policy=patient)

    assert (rolled_back.action, rolled_back.state.phase) == (Action.ROLL_BACK, Phase.ROLLED_BACK)
    assert "8/20 = 40% > 1% beyond doubt" in rolled_back.record.reason
    assert rolled_back.weights == PRE


def test_failed_looks_roll_back_after_failure_threshold_in_a_row_each_on_fresh_counts() -> None:
    twice = dataclasses.replace(POLICY, failure_threshold=2)
    five_percent = Observation(acked=True, counts={V2: Counts(100, 5)})  # fails the look, not beyond doubt

    first = then(acked(begin(twice), policy=twice), five_percent, at=31.0, policy=twice)
    early = then(first, five_percent, at=60.0, policy=twice)
    second = then(first, five_percent, at=62.0, policy=twice)

    assert (first.action, first.state.failures, first.state.window_start) == (Action.HOLD, 1, 31.0)
    assert early.action is Action.HOLD
    assert (second.action, second.state.phase) == (Action.ROLL_BACK, Phase.ROLLED_BACK)
    assert "failed analysis 2 of 2" in second.record.reason


def test_a_passing_step_clears_the_failures_of_earlier_analyses() -> None:
    twice = dataclasses.replace(POLICY, failure_threshold=2)
    failed = then(acked(begin(twice), policy=twice), Observation(acked=True, counts={V2: Counts(100, 5)}), 31.0, twice)

    passed = then(failed, CLEAN, at=62.0, policy=twice)

    assert (passed.action, passed.state.failures) == (Action.ADVANCE, 0)


def test_an_estimate_over_max_keeps_observing_afresh_and_fails_at_max_interval() -> None:
    two_percent = Observation(acked=True, counts={V2: Counts(100, 2)})

    renewed = then(acked(begin()), two_percent, at=31.0)
    timed_out = then(renewed, Observation(acked=True, counts={V2: Counts(10, 0)}), at=601.0)

    assert (renewed.action, renewed.state.window_start, renewed.state.over_max_looks) == (Action.HOLD, 31.0, 1)
    assert (timed_out.action, timed_out.state.phase) == (Action.ROLL_BACK, Phase.ROLLED_BACK)
    assert "no pass within 10m" in timed_out.record.reason


def test_low_traffic_at_max_interval_holds_as_stalled_and_passes_once_requests_arrive() -> None:
    window = acked(begin())

    stalled = then(window, Observation(acked=True, counts={V2: Counts(40, 0)}), at=601.0)
    recovered = then(stalled, CLEAN, at=700.0)

    assert (stalled.action, stalled.state.phase) == (Action.HOLD, Phase.STALLED)
    assert "too few requests within 10m" in stalled.record.reason
    assert (recovered.action, recovered.state.phase) == (Action.ADVANCE, Phase.PROGRESSING)


def test_low_traffic_at_max_interval_promotes_or_rolls_back_when_the_policy_says_so() -> None:
    promote = dataclasses.replace(POLICY, on_low_traffic=OnLowTraffic.PROMOTE)
    rollback = dataclasses.replace(POLICY, on_low_traffic=OnLowTraffic.ROLLBACK)
    quiet = Observation(acked=True)

    promoted = then(acked(begin(promote), policy=promote), quiet, at=601.0, policy=promote)
    rolled_back = then(acked(begin(rollback), policy=rollback), quiet, at=601.0, policy=rollback)

    assert (promoted.action, promoted.state.step) == (Action.ADVANCE, 1)
    assert (rolled_back.action, rolled_back.weights) == (Action.ROLL_BACK, PRE)


def test_a_canary_worse_than_stable_fails_the_look() -> None:
    versus = dataclasses.replace(POLICY, checks=(ErrorRateCheck(), ErrorRateVsStableCheck()))
    worse = Observation(acked=True, counts={V2: Counts(400, 4), V1: Counts(3600, 0)})  # 1% is within max, not stable

    rolled_back = then(acked(begin(versus), policy=versus), worse, at=31.0, policy=versus)

    assert rolled_back.action is Action.ROLL_BACK
    assert [check.outcome for check in rolled_back.record.checks] == [Outcome.PASS, Outcome.FAIL]


def test_pause_holds_even_with_passing_counts_and_resume_restarts_the_window() -> None:
    paused = then(acked(begin()), Observation(command=Command.PAUSE), at=10.0)

    held = then(paused, CLEAN, at=100.0)
    resumed = then(held, Observation(command=Command.RESUME), at=200.0)

    assert (held.action, held.state.phase) == (Action.HOLD, Phase.PAUSED)
    assert (resumed.state.phase, resumed.state.window_start) == (Phase.PROGRESSING, 200.0)
    assert then(resumed, CLEAN, at=220.0).action is Action.HOLD
    assert then(resumed, CLEAN, at=231.0).action is Action.ADVANCE


def test_promote_moves_one_step_and_promote_full_serves_the_goal() -> None:
    promoted = then(begin(), Observation(command=Command.PROMOTE), at=1.0)
    full = then(begin(), Observation(command=Command.PROMOTE_FULL), at=1.0)

    assert (promoted.action, promoted.state.step) == (Action.ADVANCE, 1)
    assert (full.action, full.weights) == (Action.FINISH, GOAL)


def test_abort_serves_the_pre_rollout_weights_and_ends_the_rollout() -> None:
    aborted = then(acked(begin()), Observation(command=Command.ABORT), at=5.0)

    assert (aborted.action, aborted.state.phase, aborted.weights) == (Action.ROLL_BACK, Phase.ABORTED, PRE)
    assert then(aborted, CLEAN, at=100.0).action is Action.DONE


def test_a_new_goal_supersedes_the_rollout_and_walks_on_from_the_served_weights() -> None:
    at_step_one = then(acked(begin()), CLEAN, at=31.0)
    new_goal = {ROUTE: {V1: 50, V2: 50}}

    superseded = then(at_step_one, Observation(revision=Revision("b2", new_goal)), at=40.0)

    assert superseded.state.phase is Phase.SUPERSEDED
    assert superseded.successor is not None
    assert (superseded.successor.pre_rollout, superseded.successor.goal) == (at_step_one.weights, new_goal)
    assert dict(superseded.weights[ROUTE]) == {V1: 72, V2: 28}  # 10% of the way from 75/25 to 50/50: 2.5 → 3
    assert superseded.successor.sha == "b2"


def test_a_revision_with_the_same_goal_carries_on_under_its_sha() -> None:
    carried = then(acked(begin()), dataclasses.replace(CLEAN, revision=Revision("c3", GOAL)), at=31.0)

    assert (carried.action, carried.record.sha) == (Action.ADVANCE, "c3")


# Properties: arbitrary histories, time moving forward in arbitrary ticks.

# Mostly quiet or borderline traffic, so that histories also run into maxInterval, not only into clear verdicts.
counts = st.builds(
    lambda requests, share: Counts(requests, round(requests * share)),
    st.one_of(st.sampled_from([0, 0, 20, 60, 150]), st.integers(0, 5000)),
    st.sampled_from([0.0, 0.01, 0.015, 0.02, 0.3]),
)
rarely = st.integers(0, 19).map(lambda draw: draw == 0)  # NACKs are rare, or nothing else is seen
observations = st.builds(
    Observation,
    acked=st.booleans(),
    nacked=rarely,
    counts=st.fixed_dictionaries({V1: counts, V2: counts}),
    command=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(Command)),  # commands too
)
policies = st.builds(
    RolloutPolicySpec,
    targets=st.just((RolloutTarget(name="reviews"),)),
    steps=st.lists(st.integers(1, 99), max_size=4, unique=True).map(lambda steps: tuple(map(float, sorted(steps)))),
    interval=st.sampled_from([Duration("10s", 10 * 10**9), Duration("30s", 30 * 10**9)]),
    max_interval=st.sampled_from([Duration("1m", 60 * 10**9), Duration("5m", 300 * 10**9)]),
    min_requests=st.sampled_from([NonNegative(0), NonNegative(100)]),
    on_low_traffic=st.sampled_from(OnLowTraffic),
    failure_threshold=st.integers(1, 3),
    checks=st.sampled_from([(ErrorRateCheck(),), (ErrorRateCheck(), ErrorRateVsStableCheck())]),
)
ticks = st.floats(min_value=0.5, max_value=20.0)


@given(policies, st.lists(st.tuples(ticks, observations), max_size=80))
def test_it_never_advances_on_no_data_unless_the_policy_promotes_on_low_traffic(
    policy: RolloutPolicySpec, history: list[tuple[float, Observation]]
) -> None:
    if policy.on_low_traffic is OnLowTraffic.PROMOTE:
        policy = dataclasses.replace(policy, on_low_traffic=OnLowTraffic.HOLD)
    decision, now = begin(policy), 0.0
    for tick, observation in history:
        now += tick
        decision = then(decision, dataclasses.replace(observation, counts={}, command=None), at=now, policy=policy)

        assert decision.action not in (Action.ADVANCE, Action.FINISH)


@given(policies, st.data())
def test_it_always_ends_within_steps_times_failure_threshold_times_max_interval_unless_held(
    policy: RolloutPolicySpec, data: st.DataObject
) -> None:
    policy = dataclasses.replace(
        policy, on_low_traffic=data.draw(st.sampled_from([OnLowTraffic.PROMOTE, OnLowTraffic.ROLLBACK]))
    )
    # One traffic regime per history (quiet, borderline or busy), so histories run into maxInterval too.
    requests = data.draw(st.sampled_from([0, 20, 60, 150, 2000]))
    share = data.draw(st.sampled_from([0.0, 0.01, 0.015, 0.02, 0.3]))
    traffic = {V1: Counts(requests * 9, round(requests * 9 * share / 2)), V2: Counts(requests, round(requests * share))}
    longest_tick = 20.0
    # Per step: one tick to see the ACK, then at most failureThreshold windows of maxInterval (each seen one tick
    # late); the goal needs one more tick for its ACK.
    bound = len(policy.steps) * (policy.failure_threshold * (policy.max_interval.seconds + longest_tick) + longest_tick)
    decision, now = begin(policy), 0.0
    while not decision.state.phase.ended:
        assert now <= bound + longest_tick
        now += data.draw(ticks)
        # No NACKs here: one ends the rollout at once (tested above) and would hide a step that never ends.
        decision = then(decision, Observation(acked=True, counts=traffic), at=now, policy=policy)


@given(policies, st.lists(st.tuples(ticks, observations), max_size=40), observations)
def test_a_revert_always_wins(
    policy: RolloutPolicySpec, history: list[tuple[float, Observation]], last: Observation
) -> None:
    decision, now = begin(policy), 0.0
    for tick, observation in history:
        if decision.state.phase.ended:
            break
        now += tick
        decision = then(decision, observation, at=now, policy=policy)
    if decision.state.phase.ended:
        return

    revert = dataclasses.replace(last, revision=Revision("r", {ROUTE: {V1: 100}}))
    reverted = then(decision, revert, at=now + 1, policy=policy)

    assert (reverted.action, reverted.state.phase, reverted.weights) == (Action.ROLL_BACK, Phase.REVERTED, PRE)
