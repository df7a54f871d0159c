"""Istio routing, end to end: YAML → ADS → a real Envoy (gateway and sidecar) → real upstreams.

One Envoy per role serves every test of this module: each behaviour has its own front
host (``split.e2e.test``, ``retry.e2e.test``, ...) in ``tests/fixtures/e2e/routing.yaml``,
and the upstreams a test reconfigures (slow, flaky, shadow) are used by that test only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from e2e_support import Proxy, Upstreams, mesh_config, running_proxy, running_upstreams, running_xds
from waiting import wait_for

from reconciler.harness.envoy import free_port
from reconciler.translate.proxy import ProxyRole

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(90)]


@dataclass(frozen=True, slots=True)
class Routed:
    proxy: Proxy
    upstreams: Upstreams


@pytest.fixture(
    scope="module",
    params=[(ProxyRole.GATEWAY, False), (ProxyRole.SIDECAR, False), (ProxyRole.SIDECAR, True)],
    ids=["gateway", "sidecar", "sidecar-delta"],
)
def routed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    role: ProxyRole
    role, delta = request.param
    gateway_port = free_port()
    with running_upstreams() as upstreams, running_xds() as xds:
        config = mesh_config(["routing.yaml"], role=role, upstreams=upstreams, gateway_port=gateway_port)
        generation = xds.publish_config(config)
        with running_proxy(
            xds,
            role,
            generation=generation,
            workdir=tmp_path_factory.mktemp(f"envoy-{role.value}"),
            gateway_port=gateway_port,
            serving_authority="v1only.e2e.test",
            delta=delta,
        ) as proxy:
            yield Routed(proxy=proxy, upstreams=upstreams)


def test_a_route_to_subset_v1_is_answered_by_v1_only(routed: Routed) -> None:
    result = routed.proxy.send(authority="v1only.e2e.test", count=200)

    assert result.by_status == {200: 200}, result
    assert result.by_version == {"v1": 200}


def test_an_80_20_split_holds_within_5_points_over_1000_requests(routed: Routed) -> None:
    result = routed.proxy.send(authority="split.e2e.test", count=1000, workers=8)

    assert result.by_status == {200: 1000}, result
    assert set(result.by_version) <= {"v1", "v2"}
    assert 75.0 <= result.share("v1") <= 85.0, result.by_version
    assert 15.0 <= result.share("v2") <= 25.0, result.by_version


def test_requests_from_end_user_jason_go_to_v2_and_everyone_elses_to_v1(routed: Routed) -> None:
    jason = routed.proxy.send(authority="reviews.e2e.test", count=50, headers={"end-user": "jason"})
    someone_else = routed.proxy.send(authority="reviews.e2e.test", count=50, headers={"end-user": "jasonette"})
    anonymous = routed.proxy.send(authority="reviews.e2e.test", count=50)

    assert jason.by_version == {"v2": 50}, jason
    assert someone_else.by_version == {"v1": 50}, someone_else
    assert anonymous.by_version == {"v1": 50}, anonymous


def test_a_fault_abort_answers_503_to_matching_requests_without_calling_the_upstream(routed: Routed) -> None:
    aborted = routed.proxy.send(authority="fault.e2e.test", count=40, headers={"x-e2e-fault": "abort"})
    healthy = routed.proxy.send(authority="fault.e2e.test", count=40)

    assert aborted.by_status == {503: 40}, aborted
    assert aborted.local_replies == {"FI": 40}, "Envoy's fault filter answered, no upstream did"
    assert not aborted.by_version
    assert healthy.by_status == {200: 40}, healthy
    assert healthy.by_version == {"v1": 40}


def test_an_upstream_slower_than_the_route_timeout_gets_504_when_the_timeout_expires(routed: Routed) -> None:
    slow = routed.upstreams.slow
    slow.reset_records()
    slow.delay(3.0)
    try:
        result = routed.proxy.send(authority="timeout.e2e.test", count=4, workers=4, request_timeout=10.0)
    finally:
        slow.heal()

    assert result.by_status == {504: 4}, result
    assert result.local_replies == {"UT": 4}, "Envoy timed the request out (flag UT)"
    # The route's timeout is 0.5 s; the upstream would have taken 3 s. Envoy starts the timer once it has the
    # request, after the client's clock started, so no request can be faster (5 ms for the clocks' granularity).
    assert min(result.latencies_ms) >= 495.0, result.latencies_ms
    # A timeout of 1 s or more (0.5 s rounded up to whole seconds, or a default) would put every request past
    # 1 s; the fastest request is the one this loaded machine delayed least.
    assert min(result.latencies_ms) < 1000.0, result.latencies_ms
    assert slow.request_count == 4, "retries: attempts 0 means one attempt per request"


def test_retries_turn_an_upstream_that_fails_every_other_request_into_200s(routed: Routed) -> None:
    flaky = routed.upstreams.flaky
    flaky.reset_records()
    flaky.fail(status=503, fraction=0.5)
    try:
        # One connection, one request at a time: the upstream alternates ok, fail, ok, fail, ...
        result = routed.proxy.send(authority="retry.e2e.test", count=30, workers=1)
    finally:
        flaky.heal()

    assert result.by_status == {200: 30}, result
    assert result.by_version == {"flaky": 30}
    # Request 1 succeeds at once; each later one fails first and succeeds on its retry.
    assert flaky.request_count == 2 * 30 - 1
    attempts = [request.headers.get("x-envoy-attempt-count") for request in flaky.requests]
    assert attempts.count("2") == 29, attempts
    failed = [request for request in flaky.requests if request.status == 503]
    assert len(failed) == 29
    assert all(request.headers.get("x-envoy-attempt-count") == "1" for request in failed)


def test_mirrored_requests_reach_the_shadow_while_the_client_gets_the_primary_answer(routed: Routed) -> None:
    shadow = routed.upstreams.shadow
    shadow.reset_records()

    result = routed.proxy.send(authority="mirror.e2e.test", count=50)

    assert result.by_status == {200: 50}, result
    assert result.by_version == {"v1": 50}, "the client sees only the primary's answers"
    # Mirroring is fire-and-forget: the copies may land a moment after the client's answers.
    wait_for("50 mirrored requests at the shadow", lambda: shadow.request_count >= 50, timeout=10.0)
    assert shadow.request_count == 50
    assert {request.headers.get("host") for request in shadow.requests} == {"mirror.e2e.test-shadow"}
