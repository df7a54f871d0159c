"""Backoff: full-jitter delays stay in [0, cap] and their bound doubles up to the cap."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.errors import UsageError
from reconciler.sources.backoff import Backoff

bases = st.floats(min_value=0.001, max_value=10.0)
caps = st.floats(min_value=10.0, max_value=3600.0)
factors = st.floats(min_value=1.0, max_value=4.0)
unit_samples = st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=1, max_size=200)


@given(base=bases, cap=caps, factor=factors, samples=unit_samples)
def test_every_delay_is_within_zero_and_cap(base: float, cap: float, factor: float, samples: list[float]) -> None:
    values = iter(samples)
    backoff = Backoff(base=base, cap=cap, factor=factor, rng=lambda: next(values))

    for _ in samples:
        ceiling = backoff.ceiling
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling <= cap


@given(base=bases, cap=caps, seed=st.integers())
def test_expected_delay_doubles_until_it_reaches_half_the_cap(base: float, cap: float, seed: int) -> None:
    # With rng = 0.5 each delay *is* its expectation under full jitter: ceiling / 2.
    backoff = Backoff(base=base, cap=cap, rng=lambda: 0.5)
    expected = [backoff.next_delay() for _ in range(64)]

    for previous, current in itertools.pairwise(expected):
        assert current == pytest.approx(min(previous * 2, cap / 2))
    assert expected[-1] == pytest.approx(cap / 2)

    # And a real random source averages out to the same expectation once capped.
    jittered = Backoff(base=base, cap=cap, rng=random.Random(seed).random)
    for _ in range(64):
        jittered.next_delay()
    tail = [jittered.next_delay() for _ in range(2000)]
    assert sum(tail) / len(tail) == pytest.approx(cap / 2, rel=0.1)


@given(samples=unit_samples)
def test_reset_starts_over_from_base(samples: list[float]) -> None:
    backoff = Backoff(base=2.0, cap=60.0, rng=lambda: 0.999)
    for _ in samples:
        backoff.next_delay()

    backoff.reset()

    assert backoff.attempts == 0
    assert backoff.ceiling == 2.0
    assert backoff.next_delay() < 2.0


def test_out_of_range_rng_values_are_clamped() -> None:
    assert Backoff(base=1.0, cap=5.0, rng=lambda: 7.0).next_delay() == 1.0
    assert Backoff(base=1.0, cap=5.0, rng=lambda: -3.0).next_delay() == 0.0


def test_a_very_long_outage_does_not_overflow() -> None:
    backoff = Backoff(base=1.0, cap=300.0, rng=lambda: 0.5)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 150.0
    assert backoff.attempts == 5000


@pytest.mark.parametrize(
    "kwargs",
    [{"base": 0.0}, {"base": -1.0}, {"base": 10.0, "cap": 5.0}, {"factor": 0.5}],
)
def test_nonsensical_parameters_are_usage_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        Backoff(**kwargs)  # type: ignore[arg-type]
