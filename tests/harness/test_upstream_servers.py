"""Version-named upstream servers: what they answer, how they misbehave on command, what they record."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

import pytest

from reconciler.errors import UsageError
from reconciler.harness.upstream import UpstreamServer


def _get(
    connection: http.client.HTTPConnection, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, str, str | None]:
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read().decode(), response.getheader("x-version")


def test_upstream_answers_every_request_with_its_version_over_one_keepalive_connection(
    upstreams: Callable[..., UpstreamServer],
) -> None:
    v1 = upstreams("v1")
    connection = http.client.HTTPConnection(v1.host, v1.port, timeout=5)

    answers = [_get(connection, path) for path in ("/", "/orders/7", "/health")]

    assert answers == [(200, "v1", "v1")] * 3
    assert v1.request_count == 3
    connection.close()


def test_several_upstreams_run_at_once_on_their_own_ports(upstreams: Callable[..., UpstreamServer]) -> None:
    servers = [upstreams(f"v{n}") for n in range(1, 4)]

    bodies = [_get(http.client.HTTPConnection(s.host, s.port, timeout=5))[1] for s in servers]

    assert bodies == ["v1", "v2", "v3"]
    assert len({s.port for s in servers}) == 3


def test_failing_upstream_answers_the_given_status_for_exactly_that_fraction(
    upstreams: Callable[..., UpstreamServer],
) -> None:
    v2 = upstreams("v2")
    v2.fail(status=503, fraction=0.25)
    connection = http.client.HTTPConnection(v2.host, v2.port, timeout=5)

    statuses = [_get(connection)[0] for _ in range(20)]

    assert statuses.count(503) == 5
    assert statuses.count(200) == 15
    v2.heal()
    assert _get(connection) == (200, "v2", "v2")
    connection.close()


def test_failed_responses_still_say_which_version_failed(upstreams: Callable[..., UpstreamServer]) -> None:
    v2 = upstreams("v2")
    v2.fail(status=500)

    status, body, version = _get(http.client.HTTPConnection(v2.host, v2.port, timeout=5))

    assert (status, version) == (500, "v2")
    assert body.startswith("v2")


def test_delayed_upstream_answers_after_the_delay_and_promptly_after_heal(
    upstreams: Callable[..., UpstreamServer],
) -> None:
    v1 = upstreams("v1")
    connection = http.client.HTTPConnection(v1.host, v1.port, timeout=5)
    v1.delay(1.0)

    began = time.perf_counter()
    slow = _get(connection)
    slow_seconds = time.perf_counter() - began
    v1.heal()
    began = time.perf_counter()
    _get(connection)
    fast_seconds = time.perf_counter() - began

    assert slow == (200, "v1", "v1")
    assert slow_seconds >= 1.0
    assert fast_seconds < 0.5  # far below the delay, with room for a loaded machine
    connection.close()


def test_upstream_records_what_it_received_so_tests_can_check_mirrored_traffic(
    upstreams: Callable[..., UpstreamServer],
) -> None:
    shadow = upstreams("shadow")
    connection = http.client.HTTPConnection(shadow.host, shadow.port, timeout=5)

    _get(connection, "/a", headers={"Host": "shop-shadow", "x-canary": "yes"})
    connection.request("POST", "/orders", body=b'{"id": 7}', headers={"content-type": "application/json"})
    connection.getresponse().read()

    assert shadow.request_count == 2
    first, second = shadow.requests
    assert (first.method, first.path, first.headers["host"], first.headers["x-canary"]) == (
        "GET",
        "/a",
        "shop-shadow",
        "yes",
    )
    assert (second.method, second.path, second.body) == ("POST", "/orders", b'{"id": 7}')
    assert shadow.last_headers is not None
    assert shadow.last_headers["content-type"] == "application/json"
    shadow.reset_records()
    assert shadow.request_count == 0
    assert shadow.last_headers is None
    connection.close()


def test_stopped_upstream_drops_open_connections_and_refuses_new_ones() -> None:
    v1 = UpstreamServer("v1").start()
    host, port = v1.host, v1.port
    connection = http.client.HTTPConnection(host, port, timeout=5)
    assert _get(connection)[0] == 200

    v1.stop()

    assert not v1.running
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _get(connection)
    with pytest.raises(ConnectionRefusedError):
        _get(http.client.HTTPConnection(host, port, timeout=5))


@pytest.mark.parametrize(
    "configure",
    [
        lambda s: s.fail(status=99),
        lambda s: s.fail(fraction=1.5),
        lambda s: s.delay(-1),
    ],
)
def test_upstream_rejects_nonsense_behaviour_settings(
    upstreams: Callable[..., UpstreamServer], configure: Callable[[UpstreamServer], None]
) -> None:
    with pytest.raises(UsageError):
        configure(upstreams("v1"))
