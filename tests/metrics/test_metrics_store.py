"""The store: deltas summed over proxies, windows since a time, bounded retention. No gRPC, no Envoy."""

from __future__ import annotations

from reconciler.metrics import MetricsStore
from reconciler.metrics.envoy_stats import ClusterDelta, to_counts
from reconciler.rollout.analysis import Counts


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def delta(
    *, completed: int = 0, fivexx: int = 0, retries: int = 0, retried_answers: int = 0, retried_5xx: int = 0
) -> ClusterDelta:
    return ClusterDelta(counters=[completed, fivexx, retries, retried_answers, retried_5xx])


def test_attempts_count_retries_and_retried_attempts_without_an_answer_count_as_errors() -> None:
    counts = to_counts(delta(completed=10, fivexx=1, retries=5, retried_answers=3, retried_5xx=3))

    assert (counts.requests, counts.errors) == (15, 1 + 3 + 2)


def test_counts_from_two_proxies_add_up_and_a_window_leaves_out_earlier_flushes() -> None:
    clock = Clock(1000.0)
    store = MetricsStore(clock=clock)
    one, two = store.connect("a"), store.connect("b")
    store.record(one, {"canary": delta(completed=5)})
    clock.now = 1002.5
    store.record(one, {"canary": delta(completed=3, fivexx=1)})
    store.record(two, {"canary": delta(completed=4)})

    assert store.counts(["canary", "stable"], since=1000.0) == {"canary": Counts(12, 1), "stable": Counts()}
    assert store.counts(["canary"], since=1001.0)["canary"] == Counts(7, 1)


def test_a_flush_received_after_since_counts_even_within_the_same_second() -> None:
    clock = Clock(1000.2)
    store = MetricsStore(clock=clock)
    token = store.connect("a")
    store.record(token, {"canary": delta(completed=2)})  # before the window opens, same second
    clock.now = 1000.7
    store.record(token, {"stable": delta(completed=4)})  # after it, same second

    counts = store.counts(["canary", "stable"], since=1000.5)

    assert counts["stable"] == Counts(4)  # a window opening mid-second still sees the flush after it
    assert counts["canary"] == Counts()  # and not a second whose only flush came before it


def test_a_proxy_is_forgotten_when_its_stream_ends_but_its_counts_stay() -> None:
    store = MetricsStore(clock=Clock(1000.0))
    token = store.connect("a")
    store.record(token, {"canary": delta(completed=2)})

    store.disconnect(token)

    assert store.proxies() == ()
    assert store.counts(["canary"], since=0.0)["canary"].requests == 2


def test_slots_older_than_the_retention_are_dropped() -> None:
    clock = Clock(1000.0)
    store = MetricsStore(retention=60.0, clock=clock)
    token = store.connect("a")
    store.record(token, {"old": delta(completed=2)})
    clock.now = 1100.0

    store.record(token, {"new": delta(completed=1)})

    assert store.counts(["old", "new"], since=0.0) == {"old": Counts(), "new": Counts(1)}
