"""Real sidecar Envoys push their per-cluster statistics to the daemon's gRPC port."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from metrics_harness import CANARY, HOST, STABLE, MetricsHarness, Sidecar
from waiting import wait_for

from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.rollout.analysis import Counts, slow_requests

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(120)]


def _send(port: int, *, count: int, canary: bool = False) -> None:
    headers = {"canary": "yes"} if canary else None
    result = send_requests(port=port, count=count, authority=HOST, headers=headers, workers=2, deadline=60.0)
    assert result.responses == count, result


def _wait_for_requests(metrics: MetricsHarness, cluster: str, *, since: float, requests: int) -> None:
    def counts() -> Counts:
        return metrics.store.counts([cluster], since=since)[cluster]

    wait_for(f"{requests} requests to {cluster}", lambda: counts().requests >= requests, seen=counts)


def test_requests_and_5xx_to_the_canary_are_counted_apart_from_the_stable_and_summed_over_two_proxies(
    metrics: MetricsHarness, upstreams: Callable[..., UpstreamServer], sidecar: Sidecar
) -> None:
    stable, canary = upstreams("v1"), upstreams("v2")
    canary.fail(status=503, fraction=0.25)
    metrics.serve(v1=stable, v2=canary)
    (first, _), (second, _) = sidecar(metrics, "client-1"), sidecar(metrics, "client-2")
    since = time.time()

    _send(first, count=40, canary=True)
    _send(second, count=40, canary=True)
    _send(first, count=30)

    # Istio's default retry policy retries the 503s: every attempt the canary answered counts, every 503 is an error.
    canary_503s = sum(request.status == 503 for request in canary.requests)
    _wait_for_requests(metrics, CANARY, since=since, requests=canary.request_count)
    _wait_for_requests(metrics, STABLE, since=since, requests=30)
    counts = metrics.store.counts([CANARY, STABLE], since=since)
    assert canary_503s >= 20
    assert (counts[CANARY].requests, counts[CANARY].errors) == (canary.request_count, canary_503s)
    assert (counts[STABLE].requests, counts[STABLE].errors) == (30, 0)
    assert sorted(proxy.node_id for proxy in metrics.store.proxies()) == ["client-1", "client-2"]


def test_a_slow_canary_shows_its_requests_above_the_latency_threshold(
    metrics: MetricsHarness, upstreams: Callable[..., UpstreamServer], sidecar: Sidecar
) -> None:
    stable, canary = upstreams("v1"), upstreams("v2")
    canary.delay(0.3)
    metrics.serve(v1=stable, v2=canary)
    port, _ = sidecar(metrics, "client-1")
    since = time.time()

    _send(port, count=10, canary=True)
    _send(port, count=10)

    _wait_for_requests(metrics, CANARY, since=since, requests=10)
    _wait_for_requests(metrics, STABLE, since=since, requests=10)
    counts = metrics.store.counts([CANARY, STABLE], since=since)
    assert _slower_than_250ms(counts[CANARY]) == 10
    assert _slower_than_250ms(counts[STABLE]) == 0


def _slower_than_250ms(counts: Counts) -> int:
    slow = slow_requests(counts.latency, counts.requests, threshold_ms=250.0)
    assert slow.exact, slow  # 250 ms is one of Envoy's default bucket bounds
    return slow.at_least


def test_counts_before_the_window_opened_are_left_out(
    metrics: MetricsHarness, upstreams: Callable[..., UpstreamServer], sidecar: Sidecar
) -> None:
    metrics.serve(v1=upstreams("v1"), v2=upstreams("v2"))
    port, _ = sidecar(metrics, "client-1")
    before = time.time()
    _send(port, count=5, canary=True)
    _wait_for_requests(metrics, CANARY, since=before, requests=5)
    # Flushes arrive on whole seconds; the next window opens after the last one that carried the 5.
    window = time.time() + 1.0
    time.sleep(1.0)  # not an assertion on time: the window must open in the future of the 5 requests

    _send(port, count=3, canary=True)

    _wait_for_requests(metrics, CANARY, since=window, requests=3)
    assert metrics.store.counts([CANARY], since=window)[CANARY].requests == 3
    assert metrics.store.counts([CANARY], since=before)[CANARY].requests == 8
