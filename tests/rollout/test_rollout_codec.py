"""Rollout state and decision records survive JSON unchanged; a restarted state observes its step afresh."""

from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType

import pytest

from reconciler.model.common import Port, PortSelector
from reconciler.model.rolloutpolicy import Metric, RolloutPolicySpec, RolloutTarget
from reconciler.model.virtualservice import Destination
from reconciler.rollout.analysis import CheckResult, Counts, Outcome
from reconciler.rollout.codec import record_from_json, record_to_json, restarted, state_from_json, state_to_json
from reconciler.rollout.decide import Observation, Phase, decide, start
from reconciler.rollout.plan import RouteRef, WeightTable

V1 = Destination("reviews.bookinfo.svc.cluster.local", "v1", PortSelector(Port(9080)))
V2 = Destination("reviews.bookinfo.svc.cluster.local", "v2")
V3 = Destination("ratings", None, PortSelector())
PRE: WeightTable = {RouteRef("bookinfo/reviews", 0): {V1: 100, V2: 0}, RouteRef("bookinfo/reviews", 2): {V3: 7}}
GOAL: WeightTable = {RouteRef("bookinfo/reviews", 0): {V1: 0, V2: 100}, RouteRef("bookinfo/reviews", 2): {V3: 7}}
POLICY = RolloutPolicySpec(targets=(RolloutTarget(name="reviews"),))


def through_json(value: object) -> object:
    return json.loads(json.dumps(value))


def test_a_walked_state_reads_back_equal_through_json() -> None:
    begun = start(PRE, GOAL, sha="a1", policy=POLICY, now=10.0)
    opened = decide(begun.state, Observation(acked=True), policy=POLICY, now=12.5)
    failed_once = dataclasses.replace(opened.state, failures=1, over_max_looks=2)

    for state in (begun.state, opened.state, failed_once):
        assert state_from_json(through_json(state_to_json(state))) == state


def test_a_decision_record_with_counts_histograms_and_checks_reads_back_equal_through_json() -> None:
    begun = start(PRE, GOAL, sha="a1", policy=POLICY, now=10.0)
    check = CheckResult(
        metric=Metric.LATENCY,
        outcome=Outcome.INCONCLUSIVE,
        statistic=None,
        threshold=0.01,
        message="too few requests",
        low_traffic=True,
    )
    record = dataclasses.replace(
        begun.record,
        counts=MappingProxyType(
            {V2: Counts(requests=40, errors=3, latency=MappingProxyType({0.5: 10, 25.0: 39})), V1: Counts(9)}
        ),
        checks=(check, dataclasses.replace(check, metric=Metric.ERROR_RATE, outcome=Outcome.FAIL, statistic=0.3)),
    )

    assert record_from_json(through_json(record_to_json(record))) == record


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"phase": "Sideways"},
        "not an object",
        {**state_to_json(start(PRE, GOAL, sha="a1", policy=POLICY, now=1.0).state), "step": "2"},
        {**state_to_json(start(PRE, GOAL, sha="a1", policy=POLICY, now=1.0).state), "goal": [{"route": 0}]},
    ],
)
def test_a_state_this_code_did_not_write_is_refused_with_value_error(data: object) -> None:
    with pytest.raises(ValueError, match=r"not a|expected"):
        state_from_json(data)


def test_a_restarted_step_keeps_its_step_and_failures_but_waits_for_a_fresh_ack_and_window() -> None:
    begun = start(PRE, GOAL, sha="a1", policy=POLICY, now=10.0)
    opened = decide(begun.state, Observation(acked=True), policy=POLICY, now=12.0).state
    before = dataclasses.replace(opened, step=1, failures=1, over_max_looks=1)

    after = restarted(before, now=500.0)

    assert (after.step, after.failures, after.phase, after.goal) == (1, 1, Phase.PROGRESSING, GOAL)
    assert (after.step_started_at, after.acked_at, after.window_start, after.over_max_looks) == (500.0, None, None, 0)


def test_an_ended_rollout_is_restarted_as_it_ended() -> None:
    rolled_back = dataclasses.replace(start(PRE, GOAL, sha="a1", policy=POLICY, now=1.0).state, phase=Phase.ROLLED_BACK)

    assert restarted(rolled_back, now=500.0) == rolled_back
