"""RolloutPolicy (``reconciler.dev/v1alpha1``): how a change of route weights is walked out in steps.

A policy names the VirtualServices it governs (``targets``); when a commit changes their
weights, traffic moves towards git's weights in ``steps``, each step observed for
``interval`` and judged by ``checks`` on the canary's request counts before the next.
Every field has a default, documented on the field, so ``RolloutPolicySpec(targets=...)``
is a complete policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, NewType

from reconciler.model.common import Duration, NonNegative, Percent
from reconciler.model.hosts import resolve_host

__all__ = [
    "API_VERSION",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_ERROR_RATE",
    "DEFAULT_MAX_INTERVAL",
    "DEFAULT_MIN_REQUESTS",
    "Check",
    "ErrorRateCheck",
    "ErrorRateVsStableCheck",
    "LatencyCheck",
    "Metric",
    "OnLowTraffic",
    "Percentage",
    "RolloutPolicySpec",
    "RolloutTarget",
    "target_matches",
]

API_VERSION = "reconciler.dev/v1alpha1"

Percentage = NewType("Percentage", Percent)
"""A share written the way people write it, ``1%`` or ``99.9%`` (a bare number is percent too), 0..100;
unlike Istio's ``Percent`` message, which is ``{value: 1}``."""

DEFAULT_CONFIDENCE = Percentage(Percent(99.0))
"""Confidence of a check that leaves ``confidence`` out: a canary exactly at the limit is failed
by one analysis at most 1% of the time."""
DEFAULT_MAX_ERROR_RATE = Percentage(Percent(1.0))
DEFAULT_INTERVAL = Duration("30s", 30_000_000_000)
DEFAULT_MAX_INTERVAL = Duration("10m", 600_000_000_000)
DEFAULT_MIN_REQUESTS = NonNegative(100)


class Metric(StrEnum):
    """The ``metric`` of a check: which counts it judges."""

    ERROR_RATE = "error-rate"
    LATENCY = "latency"
    ERROR_RATE_VS_STABLE = "error-rate-vs-stable"


class OnLowTraffic(StrEnum):
    """What a step does when ``maxInterval`` passes before the canary served ``minRequests``."""

    HOLD = "hold"
    """Stay on the step and report ``Stalled``; the step still passes once enough requests arrive."""
    PROMOTE = "promote"
    """Move to the next step as if the analysis had passed."""
    ROLLBACK = "rollback"
    """Serve the pre-rollout weights again."""


@dataclass(frozen=True, slots=True)
class RolloutTarget:
    """A VirtualService in the policy's namespace, by ``name`` or by one of its ``hosts``: exactly one."""

    ONE_OF_REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("name", "host"),)

    name: str | None = None
    host: str | None = None


def target_matches(target: RolloutTarget, *, namespace: str, name: str, hosts: tuple[str, ...]) -> bool:
    """Whether a VirtualService (its ``name`` and ``hosts``, in the policy's ``namespace``) is ``target``.

    A ``host`` target matches a VirtualService that lists that host, both resolved in the
    namespace the way Istio resolves short names (``reviews`` → ``reviews.<ns>.svc.cluster.local``).
    """
    if target.name is not None:
        return target.name == name
    wanted = resolve_host(target.host or "", namespace)
    return any(resolve_host(host, namespace) == wanted for host in hosts)


@dataclass(frozen=True, slots=True)
class ErrorRateCheck:
    """The canary's error rate (5xx, connect failures, resets, timeouts; retries counted) is at most ``max``."""

    METRIC: ClassVar[Metric] = Metric.ERROR_RATE

    max: Percentage = DEFAULT_MAX_ERROR_RATE
    """Default 1%."""
    confidence: Percentage = DEFAULT_CONFIDENCE
    """How sure a failure must be before it counts (default 99%)."""


@dataclass(frozen=True, slots=True)
class LatencyCheck:
    """The canary's ``percentile`` request time is at most ``max``: no more than (100 - percentile)% are slower."""

    METRIC: ClassVar[Metric] = Metric.LATENCY

    max: Duration
    """Required: there is no latency that suits every service."""
    percentile: float = 99.0
    """Default p99."""
    confidence: Percentage = DEFAULT_CONFIDENCE
    """How sure a failure must be before it counts (default 99%)."""


@dataclass(frozen=True, slots=True)
class ErrorRateVsStableCheck:
    """The canary's error rate is not higher than the stable's, by a one-sided test on the counts."""

    METRIC: ClassVar[Metric] = Metric.ERROR_RATE_VS_STABLE

    confidence: Percentage = DEFAULT_CONFIDENCE
    """The test fails the canary when its p-value is below 1 - confidence (default 99%: p < 0.01)."""


Check = ErrorRateCheck | LatencyCheck | ErrorRateVsStableCheck
"""One entry of ``checks``; the decoder picks the class by its ``metric`` key (each class's ``METRIC``)."""


@dataclass(frozen=True, slots=True)
class RolloutPolicySpec:
    """``spec`` of a RolloutPolicy."""

    targets: tuple[RolloutTarget, ...]
    """The VirtualServices walked in lockstep under this policy (required)."""
    steps: tuple[float, ...] = (10.0, 25.0, 50.0)
    """Per step, how far (in %, written as plain numbers) traffic has moved from the served weights to
    git's; ascending, each in (0, 100). After the last step passes git's weights are served (default 10, 25, 50)."""
    interval: Duration = DEFAULT_INTERVAL
    """Observation per step, counted from the moment every proxy ACKed the step (default 30s)."""
    min_requests: NonNegative = DEFAULT_MIN_REQUESTS
    """Canary requests a step needs before it can pass (default 100)."""
    max_interval: Duration = DEFAULT_MAX_INTERVAL
    """How long a step may wait for ``min_requests`` before ``on_low_traffic`` applies (default 10m)."""
    on_low_traffic: OnLowTraffic = OnLowTraffic.HOLD
    """Default hold: without traffic nothing is learnt, so nothing is promoted or rolled back."""
    failure_threshold: int = 1
    """Failed analyses in a row that roll back (default 1: the first failure)."""
    checks: tuple[Check, ...] = (ErrorRateCheck(),)
    """Default: the canary's error rate is at most 1%."""
