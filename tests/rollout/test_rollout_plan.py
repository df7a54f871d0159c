"""Step weights: exact route totals, monotone moves from served to goal, canary/stable roles, revert and new goal."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.model.virtualservice import Destination
from reconciler.rollout.plan import RevisionChange, RouteRef, Split, WeightTable, classify_revision, plan, split_route

V1, V2, V3, V4 = (Destination("reviews.bookinfo.svc.cluster.local", subset) for subset in ("v1", "v2", "v3", "v4"))
ROUTE, OTHER_ROUTE = RouteRef("bookinfo/reviews", 0), RouteRef("bookinfo/reviews", 1)


@st.composite
def route_pairs(draw: st.DrawFn, *, most: int = 4, fewest: int = 1) -> tuple[Split, Split]:
    """A served and a goal split over 1-4 destinations with the same total (100, or anything up to 1000)."""
    destinations = [V1, V2, V3, V4][: draw(st.integers(fewest, most))]
    total = draw(st.one_of(st.just(100), st.integers(min_value=0, max_value=1000)))

    def split() -> Split:
        cuts = sorted(
            draw(st.lists(st.integers(0, total), min_size=len(destinations) - 1, max_size=len(destinations) - 1))
        )
        bounds = [0, *cuts, total]
        return {d: bounds[i + 1] - bounds[i] for i, d in enumerate(destinations)}

    return split(), split()


def largest_remainder(served: Split, goal: Split, percent: float) -> dict[Destination, int]:
    exact = {d: served[d] + percent / 100 * (goal[d] - served[d]) for d in served}
    rounded = {d: math.floor(value) for d, value in exact.items()}
    left = sum(served.values()) - sum(rounded.values())
    for d in sorted(exact, key=lambda d: rounded[d] - exact[d])[:left]:
        rounded[d] += 1
    return rounded


@given(route_pairs(), st.lists(st.floats(0, 100), min_size=1, max_size=6))
def test_every_step_keeps_the_route_total_and_moves_monotonically_from_served_to_goal(
    pair: tuple[Split, Split], percents: list[float]
) -> None:
    served, goal = pair
    walk = [served, *(split_route(served, goal, percent=p) for p in sorted(percents)), goal]

    for before, after in itertools.pairwise(walk):
        assert sum(after.values()) == sum(served.values())
        for d in served:
            direction = goal[d] - served[d]
            assert (after[d] - before[d]) * direction >= 0
            assert min(served[d], goal[d]) <= after[d] <= max(served[d], goal[d])


@given(route_pairs(most=2, fewest=2), st.floats(0, 100))
def test_two_destinations_get_the_exact_share_rounded_like_largest_remainder(
    pair: tuple[Split, Split], percent: float
) -> None:
    served, goal = pair
    weights = split_route(served, goal, percent=percent)

    for d in served:
        assert abs(weights[d] - (served[d] + percent / 100 * (goal[d] - served[d]))) <= 0.5 + 1e-9


def test_step_zero_and_one_hundred_are_the_served_and_the_goal_weights() -> None:
    served, goal = {V1: 90, V2: 10, V3: 0}, {V1: 0, V2: 30, V3: 70}

    assert split_route(served, goal, percent=0) == served
    assert split_route(served, goal, percent=100) == goal


def test_the_issue_steps_move_ten_twenty_five_and_fifty_percent_of_the_way() -> None:
    served, goal = {V1: 100, V2: 0}, {V1: 0, V2: 100}

    assert [split_route(served, goal, percent=p)[V2] for p in (10, 25, 50)] == [10, 25, 50]


def test_three_destinations_never_hand_weight_back_where_largest_remainder_would() -> None:
    served, goal = {V1: 0, V2: 0, V3: 100}, {V1: 3, V2: 9, V3: 88}
    # The Alabama paradox: largest remainder gives v1 one unit at 16% and takes it back at 17%.
    assert largest_remainder(served, goal, 16)[V1] == 1
    assert largest_remainder(served, goal, 17)[V1] == 0

    assert split_route(served, goal, percent=16)[V1] <= split_route(served, goal, percent=17)[V1]


def test_all_routes_of_the_targets_move_in_lockstep() -> None:
    walk = plan(
        {ROUTE: {V1: 100}, OTHER_ROUTE: {V1: 50, V3: 50}},
        {ROUTE: {V1: 0, V2: 100}, OTHER_ROUTE: {V1: 0, V2: 50, V3: 50}},
        steps=(10, 50),
    )

    assert dict(walk.weights(0)[ROUTE]) == {V1: 90, V2: 10}
    assert dict(walk.weights(0)[OTHER_ROUTE]) == {V1: 45, V3: 50, V2: 5}
    assert walk.weights(walk.final_step) == walk.goal


def test_destinations_gaining_weight_are_the_canary_and_those_only_losing_it_the_stable() -> None:
    walk = plan(
        {ROUTE: {V1: 100}, OTHER_ROUTE: {V3: 100, V2: 0}},
        {ROUTE: {V1: 0, V2: 100}, OTHER_ROUTE: {V3: 50, V2: 50}},
        steps=(10,),
    )

    assert walk.canary == {V2}
    assert walk.stable == {V1, V3}


@pytest.mark.parametrize(
    ("served", "goal", "problem"),
    [
        ({ROUTE: {V1: 100}}, {OTHER_ROUTE: {V1: 100}}, "different routes"),
        ({ROUTE: {V1: 100}}, {ROUTE: {V1: 50, V2: 60}}, "route total"),
        ({ROUTE: {V1: 100, V2: -5}}, {ROUTE: {V1: 95}}, "negative"),
    ],
)
def test_weights_that_cannot_be_walked_in_lockstep_are_refused(
    served: WeightTable, goal: WeightTable, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        plan(served, goal, steps=(10,)).weights(0)


def test_a_revision_with_the_pre_rollout_weights_is_a_revert_even_with_zero_weights_spelled_out() -> None:
    pre, goal = {ROUTE: {V1: 100}}, {ROUTE: {V1: 0, V2: 100}}

    assert classify_revision({ROUTE: {V1: 100, V2: 0}}, pre_rollout=pre, goal=goal) is RevisionChange.REVERT
    assert classify_revision({ROUTE: {V2: 100}}, pre_rollout=pre, goal=goal) is RevisionChange.SAME_GOAL
    assert classify_revision({ROUTE: {V1: 20, V2: 80}}, pre_rollout=pre, goal=goal) is RevisionChange.NEW_GOAL
