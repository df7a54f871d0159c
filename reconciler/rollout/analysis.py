"""Count-based checks of a canary: each returns PASS, FAIL or INCONCLUSIVE with its numbers.

Inputs are raw counts per destination since the analysis window opened (``Counts``):
requests, errors (5xx, connect failures, resets, timeouts; retries counted) and Envoy's
cumulative request-time histogram. A latency check "p99 <= 500 ms" is the rate check
"at most 1% of requests are slower than 500 ms", so both absolute checks are one
binomial question: are ``bad`` out of ``n`` requests consistent with a rate <= ``max``?

Rules for the absolute checks (``error-rate``, ``latency``), with alpha = 1 - confidence:

* **FAIL beyond doubt**, at any moment and with any number of requests (also below
  ``minRequests``): the mixture likelihood ratio of "rate > max" against "rate = max"
  (uniform prior over (max, 1]) reaches 1/alpha. The ratio is a supermartingale for every
  rate <= max, so by Ville's inequality a canary truly at ``max`` is failed this way with
  probability <= alpha *however often the counts are looked at*. 8 errors in 20 requests
  against max 1% gives a ratio of about 10⁹.
* **The look**: once the interval is over and the canary has ``minRequests`` requests,
  FAIL when the one-sided Clopper-Pearson lower bound of the rate is above ``max``
  (equivalently the exact binomial test at ``max`` has p < alpha). For a canary truly at
  ``max`` this fails with probability <= alpha (at alpha = 1%: 0.34% for n = 100, 0.40% for
  250, 0.69% for 1000, exhaustively computed by the tests): the caller looks once per window
  of counts, never twice at the same counts. PASS when the observed rate is at most ``max``.
  Otherwise INCONCLUSIVE: over ``max`` but not beyond doubt.
* Before the look (interval not over, or fewer than ``minRequests``): INCONCLUSIVE, never
  PASS, and FAIL only beyond doubt. Zero requests is always INCONCLUSIVE.

PASS is deliberately "the estimate meets max", not "the upper bound meets max": with max
1% and 100 clean requests the 99% upper bound is still 4.5%, and proving a rate below 1%
at 99% confidence takes about 460 clean requests per step. The protection against a bad
canary comes from the FAIL rules above; the message always prints the bound.

``error-rate-vs-stable`` is one-sided and judged only at the look: Fisher's exact test
(hypergeometric sums with ``math.comb``) up to ``FISHER_MAX_REQUESTS`` requests, a pooled
two-proportion z-test above; FAIL when p < alpha, else PASS. A stable without requests makes
it INCONCLUSIVE.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from statistics import NormalDist
from types import MappingProxyType

from reconciler.model.rolloutpolicy import Check, ErrorRateCheck, ErrorRateVsStableCheck, LatencyCheck, Metric

__all__ = [
    "FISHER_MAX_REQUESTS",
    "CheckResult",
    "Counts",
    "Outcome",
    "SlowRequests",
    "analyse",
    "binomial_upper_tail",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "evidence_above",
    "one_sided_p_value",
    "slow_requests",
    "sum_counts",
]

FISHER_MAX_REQUESTS = 10_000
"""Above this many requests (canary + stable) the z-test replaces Fisher's exact sums, which grow slow."""

_BISECTIONS = 60  # halves [0, 1] below float resolution near any bound we print
_CF_EPSILON = 1e-15
_CF_TINY = 1e-300


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True, slots=True)
class Counts:
    """What one destination (or a sum of them) served since the analysis window opened."""

    requests: int = 0
    errors: int = 0
    latency: Mapping[float, int] = field(default_factory=lambda: MappingProxyType({}))
    """Envoy's cumulative request-time histogram: upper bound in ms → requests that took at most that.
    Requests above the largest bound are the ``requests`` it does not count."""


@dataclass(frozen=True, slots=True)
class SlowRequests:
    """Requests slower than a threshold, bracketed by the histogram buckets around it."""

    at_least: int
    at_most: int
    bucket: tuple[float, float] | None
    """The bucket bounds (ms) the threshold falls strictly between, when it is not a bucket bound."""

    @property
    def exact(self) -> bool:
        return self.at_least == self.at_most


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict with the numbers behind it."""

    metric: Metric
    outcome: Outcome
    statistic: float | None
    """Canary rate (errors or slow requests), or the one-sided p-value for ``error-rate-vs-stable``."""
    threshold: float
    """The limit the statistic is held to: ``max`` as a fraction, or alpha for ``error-rate-vs-stable``."""
    message: str
    beyond_doubt: bool = False
    """A FAIL that holds however often the counts are looked at (see the module docstring)."""
    low_traffic: bool = False
    """INCONCLUSIVE for want of requests, not because an estimate is over ``max``."""


def sum_counts(counts: Iterable[Counts]) -> Counts:
    """Add destinations' counts; histograms are added bucket by bucket (bounds missing on one side are dropped)."""
    parts = list(counts)
    histograms = [part.latency for part in parts if part.requests]
    bounds = set.intersection(*(set(histogram) for histogram in histograms)) if histograms else set()
    return Counts(
        requests=sum(part.requests for part in parts),
        errors=sum(part.errors for part in parts),
        latency=MappingProxyType({bound: sum(h[bound] for h in histograms) for bound in sorted(bounds)}),
    )


def slow_requests(buckets: Mapping[float, int], requests: int, *, threshold_ms: float) -> SlowRequests:
    """Requests slower than ``threshold_ms`` from cumulative buckets: exact at a bucket bound, else a range.

    Requests in the bucket that straddles the threshold may be either side of it, so ``at_most``
    counts them as slow (conservative for a PASS) and ``at_least`` does not (conservative for a FAIL).
    """
    ordered = sorted(buckets.items())
    if any(count < 0 for _, count in ordered) or any(a[1] > b[1] for a, b in itertools.pairwise(ordered)):
        raise ValueError(f"histogram buckets are not cumulative: {ordered}")
    if ordered and ordered[-1][1] > requests:
        raise ValueError(f"histogram counts {ordered[-1][1]} requests, more than the {requests} served")
    below = [(bound, count) for bound, count in ordered if bound <= threshold_ms]
    above = [(bound, count) for bound, count in ordered if bound >= threshold_ms]
    fast_for_sure = below[-1][1] if below else 0
    fast_at_most = above[0][1] if above else requests
    straddle = None
    if not (below and above and below[-1][0] == above[0][0]):
        straddle = (below[-1][0] if below else 0.0, above[0][0] if above else math.inf)
    return SlowRequests(at_least=requests - fast_at_most, at_most=requests - fast_for_sure, bucket=straddle)


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), as the regularized incomplete beta I_p(k, n - k + 1)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return _regularized_beta(p, a=float(k), b=float(n - k + 1))


def clopper_pearson_lower(k: int, n: int, *, confidence: float) -> float:
    """One-sided exact lower bound of a rate with ``k`` events in ``n`` trials: P(X >= k | bound) = alpha."""
    if k <= 0:
        return 0.0
    return _bisect(lambda p: binomial_upper_tail(k, n, p) < 1.0 - confidence)


def clopper_pearson_upper(k: int, n: int, *, confidence: float) -> float:
    """One-sided exact upper bound of a rate with ``k`` events in ``n`` trials: P(X <= k | bound) = alpha."""
    if k >= n:
        return 1.0
    return _bisect(lambda p: 1.0 - binomial_upper_tail(k + 1, n, p) > 1.0 - confidence)


def evidence_above(k: int, n: int, limit: float) -> float:
    """Likelihood ratio of "rate uniform in (limit, 1]" against "rate = limit" after ``k`` events in ``n``.

    Under any rate <= limit it is a supermartingale in n with mean <= 1, so it reaches 1/alpha with
    probability <= alpha over the whole sequence of looks (Ville's inequality).
    """
    if limit <= 0.0:
        return math.inf if k > 0 else 1.0
    if limit >= 1.0:
        return 0.0
    # ∫_limit^1 p^k (1-p)^(n-k) dp = B(k+1, n-k+1) · P(Binomial(n+1, limit) <= k)
    upper_mass = 1.0 - binomial_upper_tail(k + 1, n + 1, limit)
    if upper_mass <= 0.0:
        return 0.0
    log_ratio = (
        _log_beta(k + 1, n - k + 1)
        + math.log(upper_mass)
        - math.log1p(-limit)
        - k * math.log(limit)
        - (n - k) * math.log1p(-limit)
    )
    return math.exp(min(log_ratio, 700.0))  # beyond e^700 the verdict is the same and exp would overflow


def one_sided_p_value(canary: Counts, stable: Counts) -> float:
    """p-value of "the canary's error rate is no higher than the stable's" against "it is higher"."""
    n1, x1, n2, x2 = canary.requests, canary.errors, stable.requests, stable.errors
    total, errors = n1 + n2, x1 + x2
    if total <= FISHER_MAX_REQUESTS:
        # Fisher: with the margins fixed, canary errors are hypergeometric; sum the tables at least as extreme.
        extreme = sum(math.comb(errors, i) * math.comb(total - errors, n1 - i) for i in range(x1, min(errors, n1) + 1))
        return extreme / math.comb(total, n1)
    pooled = errors / total
    spread = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if spread == 0.0:
        return 1.0
    return 1.0 - NormalDist().cdf((x1 / n1 - x2 / n2) / spread)


def analyse(
    checks: Sequence[Check], canary: Counts, *, stable: Counts, min_requests: int, look: bool
) -> tuple[CheckResult, ...]:
    """Judge every check on the canary's counts. ``look``: the interval is over, this is the analysis's one look."""
    return tuple(
        _versus_stable(
            canary, stable, alpha=(100.0 - check.confidence.value) / 100, min_requests=min_requests, look=look
        )
        if isinstance(check, ErrorRateVsStableCheck)
        else _absolute(check, canary, min_requests=min_requests, look=look)
        for check in checks
    )


def _absolute(check: ErrorRateCheck | LatencyCheck, canary: Counts, *, min_requests: int, look: bool) -> CheckResult:
    n = canary.requests
    if isinstance(check, ErrorRateCheck):
        limit = check.max.value / 100
        at_least = at_most = canary.errors
        what, note = "error rate", ""
    else:
        limit = (100.0 - check.percentile) / 100
        threshold_ms = check.max.nanos / 1e6
        slow = slow_requests(canary.latency, n, threshold_ms=threshold_ms)
        at_least, at_most = slow.at_least, slow.at_most
        what = f"share slower than {check.max.text} (p{check.percentile:g} <= {check.max.text})"
        note = (
            ""
            if slow.bucket is None
            else f"; {check.max.text} lies between buckets {slow.bucket[0]:g}-{slow.bucket[1]:g} ms"
        )
    confidence = check.confidence.value / 100
    alpha = (100.0 - check.confidence.value) / 100

    def result(outcome: Outcome, rate: float | None, comparison: str, **flags: bool) -> CheckResult:
        return CheckResult(check.METRIC, outcome, rate, limit, f"canary {what} {comparison}{note}", **flags)

    if n == 0:
        return result(Outcome.INCONCLUSIVE, None, "unknown: no requests yet", low_traffic=True)
    counted = f"{at_least}/{n}" if at_least == at_most else f"{at_least}-{at_most}/{n}"
    lower = clopper_pearson_lower(at_least, n, confidence=confidence)
    upper = clopper_pearson_upper(at_most, n, confidence=confidence)
    lower_text = f"({confidence:.0%} lower bound {_floor_percent(lower)})"
    upper_text = f"({confidence:.0%} upper bound {_ceil_percent(upper)})"
    if evidence_above(at_least, n, limit) >= 1.0 / alpha:
        sentence = f"{counted} = {_percent(at_least / n)} > {_percent(limit)} beyond doubt {lower_text}"
        return result(Outcome.FAIL, at_least / n, sentence, beyond_doubt=True)
    if not look or n < min_requests:
        waiting = f"{n}/{min_requests} requests" if n < min_requests else "the interval is not over"
        sentence = f"{counted} = {_percent(at_most / n)}, too early to judge: {waiting}"
        return result(Outcome.INCONCLUSIVE, at_most / n, sentence, low_traffic=n < min_requests)
    if lower > limit:
        return result(
            Outcome.FAIL, at_least / n, f"{counted} = {_percent(at_least / n)} > {_percent(limit)} {lower_text}"
        )
    if at_most / n <= limit:
        return result(
            Outcome.PASS, at_most / n, f"{counted} = {_percent(at_most / n)} <= {_percent(limit)} {upper_text}"
        )
    sentence = f"{counted} = {_percent(at_most / n)} > {_percent(limit)}, not beyond doubt {lower_text}"
    return result(Outcome.INCONCLUSIVE, at_most / n, sentence)


def _versus_stable(canary: Counts, stable: Counts, *, alpha: float, min_requests: int, look: bool) -> CheckResult:
    rates = f"canary {canary.errors}/{canary.requests} vs stable {stable.errors}/{stable.requests} errors"
    if not look or canary.requests < min_requests or stable.requests == 0:
        low = canary.requests < min_requests or stable.requests == 0
        return CheckResult(
            Metric.ERROR_RATE_VS_STABLE, Outcome.INCONCLUSIVE, None, alpha, f"{rates}: too early", low_traffic=low
        )
    p_value = one_sided_p_value(canary, stable)
    test = "Fisher" if canary.requests + stable.requests <= FISHER_MAX_REQUESTS else "z-test"
    if p_value < alpha:
        message = f"{rates}: canary worse, one-sided {test} p = {p_value:.2g} < {alpha:.2g}"
        return CheckResult(Metric.ERROR_RATE_VS_STABLE, Outcome.FAIL, p_value, alpha, message)
    message = f"{rates}: not worse, one-sided {test} p = {p_value:.2g} >= {alpha:.2g}"
    return CheckResult(Metric.ERROR_RATE_VS_STABLE, Outcome.PASS, p_value, alpha, message)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def _floor_percent(fraction: float) -> str:
    # Bounds are printed rounded away from the estimate, so the printed claim stays true.
    return f"{math.floor(fraction * 1000) / 10:g}%"


def _ceil_percent(fraction: float) -> str:
    return f"{math.ceil(fraction * 1000) / 10:g}%"


def _bisect(below_root: Callable[[float], bool]) -> float:
    """The point in [0, 1] where a monotone predicate turns from true to false."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if below_root(middle):
            low = middle
        else:
            high = middle
    return low


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _regularized_beta(x: float, *, a: float, b: float) -> float:
    """I_x(a, b) by Lentz's continued fraction, on the side where it converges fast."""
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _regularized_beta(1.0 - x, a=b, b=a)
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)) / a
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
    fraction = d
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _CF_TINY else _CF_TINY
            fraction *= c * d
        if abs(c * d - 1.0) < _CF_EPSILON:
            return front * fraction
    raise ArithmeticError(f"incomplete beta did not converge for x={x}, a={a}, b={b}")
