"""Canary statistics: exact binomial tails, the false-alarm rates the docstring promises, checks at their boundaries."""

from __future__ import annotations

import math

import pytest

from reconciler.model.common import Duration, Percent
from reconciler.model.rolloutpolicy import Check, ErrorRateCheck, ErrorRateVsStableCheck, LatencyCheck
from reconciler.rollout.analysis import (
    FISHER_MAX_REQUESTS,
    CheckResult,
    Counts,
    Outcome,
    analyse,
    binomial_upper_tail,
    clopper_pearson_lower,
    clopper_pearson_upper,
    evidence_above,
    one_sided_p_value,
    slow_requests,
)

ERROR_RATE = ErrorRateCheck()
P99_500MS = LatencyCheck(max=Duration("500ms", 500_000_000))


def pmf(k: int, n: int, p: float) -> float:
    log_comb = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log_comb + k * math.log(p) + (n - k) * math.log1p(-p))


def judge(canary: Counts, *, min_requests: int = 100, look: bool = True, check: Check = ERROR_RATE) -> CheckResult:
    (result,) = analyse((check,), canary, stable=Counts(), min_requests=min_requests, look=look)
    return result


@pytest.mark.parametrize("n", [1, 20, 100, 333])
@pytest.mark.parametrize("p", [0.001, 0.01, 0.3, 0.97])
def test_binomial_upper_tail_equals_the_sum_of_exact_probabilities(n: int, p: float) -> None:
    for k in range(n + 2):
        exact = sum(pmf(i, n, p) for i in range(k, n + 1))
        assert binomial_upper_tail(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-14)


def test_clopper_pearson_bounds_leave_exactly_alpha_in_the_tail() -> None:
    lower = clopper_pearson_lower(31, 100, confidence=0.99)
    upper = clopper_pearson_upper(0, 100, confidence=0.99)

    assert binomial_upper_tail(31, 100, lower) == pytest.approx(0.01, rel=1e-6)
    assert 1 - binomial_upper_tail(1, 100, upper) == pytest.approx(0.01, rel=1e-6)
    assert lower == pytest.approx(0.2069, abs=1e-4)
    assert upper == pytest.approx(0.0450, abs=1e-4)


def fail_mass(n: int, p: float) -> tuple[float, float]:
    """Exhaustive over error counts: the probability of the counts the look FAILs, and of those too rare to judge."""
    failed = unjudged = 0.0
    for k in range(n + 1):
        chance = pmf(k, n, p)
        if chance < 1e-12:  # judging the far tails would only add time; their mass is reported instead
            unjudged += chance
        elif judge(Counts(n, k), min_requests=n).outcome is Outcome.FAIL:
            failed += chance
    return failed, unjudged


@pytest.mark.parametrize("n", [100, 250, 1000])
def test_a_canary_exactly_at_max_fails_the_look_at_most_one_time_in_a_hundred(n: int) -> None:
    failed, unjudged = fail_mass(n, 0.01)

    assert failed > 0.002
    assert failed + unjudged <= 0.01


@pytest.mark.parametrize("n", [1000, 3000])
def test_a_canary_twice_over_max_is_failed_by_the_look_most_of_the_time(n: int) -> None:
    failed, _ = fail_mass(n, 0.02)

    assert failed > 0.5


def test_looking_after_every_request_fails_a_canary_at_max_beyond_doubt_at_most_one_time_in_a_hundred() -> None:
    # Exhaustive over every path of 400 requests: carry the probability of paths not yet failed.
    limit, alive, crossed = 0.01, {0: 1.0}, 0.0
    for n in range(1, 401):
        step: dict[int, float] = {}
        for k, mass in alive.items():
            for errors, chance in ((k, 1 - limit), (k + 1, limit)):
                step[errors] = step.get(errors, 0.0) + mass * chance
        alive = {}
        for k, mass in step.items():
            if evidence_above(k, n, limit) >= 100:
                crossed += mass
            elif mass > 1e-18:
                alive[k] = mass

    assert 0.0005 < crossed <= 0.01


def test_the_issue_example_fails_with_its_lower_bound_in_the_sentence() -> None:
    result = judge(Counts(100, 31))

    assert result.outcome is Outcome.FAIL
    assert "31/100 = 31% > 1%" in result.message
    assert "99% lower bound 20.6%" in result.message


def test_eight_errors_in_the_first_twenty_requests_fail_at_once_below_min_requests() -> None:
    result = judge(Counts(20, 8), look=False)

    assert result.outcome is Outcome.FAIL
    assert result.beyond_doubt


def test_no_requests_are_inconclusive_for_want_of_traffic() -> None:
    result = judge(Counts())

    assert result.outcome is Outcome.INCONCLUSIVE
    assert result.low_traffic


def test_clean_requests_below_min_requests_are_inconclusive_even_at_the_look() -> None:
    result = judge(Counts(99, 0))

    assert result.outcome is Outcome.INCONCLUSIVE
    assert result.low_traffic


def test_clean_requests_before_the_interval_ends_are_inconclusive_but_not_low_traffic() -> None:
    result = judge(Counts(500, 0), look=False)

    assert result.outcome is Outcome.INCONCLUSIVE
    assert not result.low_traffic


def test_a_rate_at_max_with_min_requests_passes_and_prints_its_upper_bound() -> None:
    result = judge(Counts(100, 1))

    assert result.outcome is Outcome.PASS
    assert "99% upper bound 6.5%" in result.message


def test_a_rate_over_max_but_not_beyond_doubt_is_inconclusive() -> None:
    result = judge(Counts(100, 2))

    assert result.outcome is Outcome.INCONCLUSIVE
    assert not result.low_traffic


def test_five_percent_errors_fail_the_look_but_not_yet_beyond_doubt() -> None:
    assert judge(Counts(100, 5)).outcome is Outcome.FAIL
    assert judge(Counts(100, 5), look=False).outcome is Outcome.INCONCLUSIVE


def test_a_max_of_zero_fails_the_first_error_beyond_doubt() -> None:
    result = judge(Counts(3, 1), look=False, check=ErrorRateCheck(max=Percent(0.0)))

    assert result.outcome is Outcome.FAIL
    assert result.beyond_doubt


def test_slow_requests_are_exact_when_the_threshold_is_a_bucket_bound() -> None:
    slow = slow_requests({250.0: 900, 500.0: 990, 1000.0: 999}, 1000, threshold_ms=500)

    assert (slow.at_least, slow.at_most, slow.exact, slow.bucket) == (10, 10, True, None)


def test_slow_requests_between_buckets_are_a_range_and_name_the_buckets() -> None:
    slow = slow_requests({250.0: 900, 500.0: 990}, 1000, threshold_ms=400)

    assert (slow.at_least, slow.at_most, slow.exact, slow.bucket) == (10, 100, False, (250.0, 500.0))


def test_requests_above_the_largest_bucket_may_be_fast_or_slow() -> None:
    slow = slow_requests({250.0: 900}, 1000, threshold_ms=400)

    assert (slow.at_least, slow.at_most, slow.bucket) == (0, 100, (250.0, math.inf))


@pytest.mark.parametrize("buckets", [{250.0: 900, 500.0: 800}, {250.0: 1001}, {250.0: -1}])
def test_a_histogram_that_is_not_cumulative_is_refused(buckets: dict[float, int]) -> None:
    with pytest.raises(ValueError, match="histogram"):
        slow_requests(buckets, 1000, threshold_ms=400)


def test_a_p99_latency_check_passes_with_five_slow_requests_in_a_thousand() -> None:
    result = judge(Counts(1000, 0, {250.0: 990, 500.0: 995}), check=P99_500MS)

    assert result.outcome is Outcome.PASS
    assert result.statistic == pytest.approx(0.005)


def test_a_p99_latency_check_fails_with_fifty_slow_requests_in_a_thousand() -> None:
    result = judge(Counts(1000, 0, {250.0: 900, 500.0: 950}), check=P99_500MS)

    assert result.outcome is Outcome.FAIL
    assert "50/1000 = 5% > 1%" in result.message


def test_a_latency_threshold_between_buckets_cannot_pass_on_the_unknown_requests() -> None:
    check = LatencyCheck(max=Duration("400ms", 400_000_000))
    result = judge(Counts(1000, 0, {250.0: 900, 500.0: 995}), check=check)

    assert result.outcome is Outcome.INCONCLUSIVE
    assert "between buckets 250-500 ms" in result.message


def test_fishers_one_sided_p_value_matches_the_tea_tasting_table() -> None:
    assert one_sided_p_value(Counts(4, 3), Counts(4, 1)) == pytest.approx(17 / 70)


def test_the_z_test_takes_over_from_fisher_with_a_close_p_value() -> None:
    canary, stable = Counts(6000, 80), Counts(6000, 50)
    fisher_tables = range(80, 131)
    fisher = sum(math.comb(130, i) * math.comb(11870, 6000 - i) for i in fisher_tables) / math.comb(12000, 6000)

    assert canary.requests + stable.requests > FISHER_MAX_REQUESTS
    assert one_sided_p_value(canary, stable) == pytest.approx(fisher, rel=0.25)


@pytest.mark.parametrize(
    ("canary", "stable", "outcome"),
    [
        (Counts(200, 12), Counts(2000, 20), Outcome.FAIL),
        (Counts(200, 3), Counts(2000, 20), Outcome.PASS),
        (Counts(20_000, 300), Counts(20_000, 200), Outcome.FAIL),
        (Counts(20_000, 200), Counts(20_000, 200), Outcome.PASS),
    ],
)
def test_canary_versus_stable_fails_only_a_clearly_worse_canary(
    canary: Counts, stable: Counts, outcome: Outcome
) -> None:
    (result,) = analyse((ErrorRateVsStableCheck(),), canary, stable=stable, min_requests=100, look=True)

    assert result.outcome is outcome


def test_canary_versus_stable_without_stable_requests_is_inconclusive() -> None:
    (result,) = analyse((ErrorRateVsStableCheck(),), Counts(500, 50), stable=Counts(), min_requests=100, look=True)

    assert result.outcome is Outcome.INCONCLUSIVE
    assert result.low_traffic
