"""Route weights for each step of a rollout, and how a new revision's weights relate to a running one.

Weights are per route: a ``WeightTable`` maps each weighted HTTP route (``RouteRef``) of the
target VirtualServices to its destinations' integer weights. All routes move in lockstep: at
step percent p every destination's weight is ``served + p% * (goal - served)``, rounded so
each route keeps its total exactly.

Rounding: the weight moved in a route, ``p% * (total that moves)``, is rounded half up; it is
shared among the destinations that gain by Webster's (Sainte-Laguë) divisor method, and taken
from those that lose the same way. With two destinations (the usual canary) this is exactly
largest-remainder rounding. With more it is not, on purpose: largest remainder can hand a
weight unit back between two steps (the Alabama paradox), and a divisor method never does, so
every destination moves monotonically from served to goal as p grows.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType

from reconciler.model.virtualservice import Destination

__all__ = [
    "Plan",
    "RevisionChange",
    "RouteRef",
    "Split",
    "WeightTable",
    "classify_revision",
    "plan",
    "same_traffic",
    "split_route",
]


@dataclass(frozen=True, slots=True)
class RouteRef:
    """One weighted HTTP route: its VirtualService (``namespace/name``) and its index in ``http``."""

    virtual_service: str
    route: int


Split = Mapping[Destination, int]
"""One route's weights: destination → integer weight."""
WeightTable = Mapping[RouteRef, Split]
"""Every weighted route of the rollout's VirtualServices → its weights."""


class RevisionChange(StrEnum):
    """How a new revision's weights relate to a running rollout."""

    SAME_GOAL = "same-goal"
    """The weights git asks for are the rollout's goal: carry on."""
    REVERT = "revert"
    """They are the weights from before the rollout: end it, serving them."""
    NEW_GOAL = "new-goal"
    """Anything else: end this rollout and walk from what is served to the new weights."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The walk from ``served`` to ``goal``: weights per step, and which destinations are canary or stable."""

    served: WeightTable
    goal: WeightTable
    steps: tuple[float, ...]
    canary: frozenset[Destination]
    """Destinations that gain weight in some route: their requests are what the checks judge."""
    stable: frozenset[Destination]
    """Destinations that lose weight and gain it nowhere: the baseline for ``error-rate-vs-stable``."""

    @property
    def final_step(self) -> int:
        """The index of the last step, which serves ``goal``: one past the policy's steps."""
        return len(self.steps)

    def weights(self, step: int) -> WeightTable:
        """The weights of step ``step`` (0-based); ``final_step`` is the goal."""
        if step == self.final_step:
            return self.goal
        percent = self.steps[step]
        return MappingProxyType(
            {route: split_route(split, self.goal[route], percent=percent) for route, split in self.served.items()}
        )


def plan(served: WeightTable, goal: WeightTable, *, steps: tuple[float, ...]) -> Plan:
    """The walk from ``served`` to ``goal``; raises ``ValueError`` when the two cannot be walked in lockstep."""
    if set(served) != set(goal):
        raise ValueError(f"served and goal weigh different routes: {sorted(map(str, set(served) ^ set(goal)))}")
    if any(not 0.0 <= percent <= 100.0 for percent in steps):
        raise ValueError(f"step percentages must lie in 0..100: {steps}")
    gaining: set[Destination] = set()
    losing: set[Destination] = set()
    for route, split in served.items():
        for destination, delta in _deltas(split, goal[route]).items():
            (gaining if delta > 0 else losing).add(destination)
    return Plan(served=served, goal=goal, steps=steps, canary=frozenset(gaining), stable=frozenset(losing - gaining))


def split_route(served: Split, goal: Split, *, percent: float) -> Split:
    """One route's weights ``percent`` of the way from ``served`` to ``goal``, keeping the route's total."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"step percentage {percent} is outside 0..100")
    deltas = _deltas(served, goal)
    moving = sum(delta for delta in deltas.values() if delta > 0)
    moved = math.floor(Fraction(percent) * moving / 100 + Fraction(1, 2))
    gains = _webster(moved, {d: delta for d, delta in deltas.items() if delta > 0})
    losses = _webster(moved, {d: -delta for d, delta in deltas.items() if delta < 0})
    return MappingProxyType(
        {d: served.get(d, 0) + gains.get(d, 0) - losses.get(d, 0) for d in _destinations(served, goal)}
    )


def classify_revision(weights: WeightTable, *, pre_rollout: WeightTable, goal: WeightTable) -> RevisionChange:
    """Compare a new revision's weights with the rollout's; a zero weight counts as no destination."""
    if same_traffic(weights, pre_rollout):
        return RevisionChange.REVERT
    if same_traffic(weights, goal):
        return RevisionChange.SAME_GOAL
    return RevisionChange.NEW_GOAL


def same_traffic(one: WeightTable, other: WeightTable) -> bool:
    """Whether two tables send every route's traffic alike; a zero weight counts as no destination."""
    return _traffic(one) == _traffic(other)


def _destinations(served: Split, goal: Split) -> list[Destination]:
    return list(dict.fromkeys([*served, *goal]))


def _deltas(served: Split, goal: Split) -> dict[Destination, int]:
    if any(weight < 0 for weight in [*served.values(), *goal.values()]):
        raise ValueError(f"negative weight in {dict(served)} or {dict(goal)}")
    if sum(served.values()) != sum(goal.values()):
        raise ValueError(f"route total changes from {sum(served.values())} to {sum(goal.values())}")
    return {d: goal.get(d, 0) - served.get(d, 0) for d in _destinations(served, goal)}


def _webster(seats: int, claims: dict[Destination, int]) -> dict[Destination, int]:
    """Share ``seats`` in proportion to ``claims`` by Webster's method, one seat at a time (so never one back)."""
    given = dict.fromkeys(claims, 0)
    # Highest claim / (seats held + 1/2) first; the insertion index breaks ties the same way every time.
    queue = [(-Fraction(claim * 2, 1), index, d) for index, (d, claim) in enumerate(claims.items())]
    heapq.heapify(queue)
    for _ in range(seats):
        _, index, destination = heapq.heappop(queue)
        given[destination] += 1
        heapq.heappush(queue, (-Fraction(claims[destination] * 2, 2 * given[destination] + 1), index, destination))
    return given


def _traffic(weights: WeightTable) -> dict[RouteRef, dict[Destination, int]]:
    return {route: {d: w for d, w in split.items() if w} for route, split in weights.items()}
