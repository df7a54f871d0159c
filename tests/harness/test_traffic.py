"""The traffic generator, alone against upstreams and through a real Envoy with a static config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reconciler.errors import UsageError
from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_at_rate, send_requests
from reconciler.harness.upstream import UpstreamServer

_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def _cluster(name: str, ports: list[int]) -> dict[str, Any]:
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}} for port in ports
    ]
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    }


def _static_bootstrap(
    routes: list[dict[str, Any]], clusters: list[dict[str, Any]], *, flags_header: bool = False
) -> dict[str, Any]:
    """A bootstrap with one HTTP listener on a kernel-chosen port; admin on a kernel-chosen port too."""
    route_config: dict[str, Any] = {
        "name": "local",
        # Routes may name clusters that do not exist, to provoke NC replies.
        "validate_clusters": False,
        "virtual_hosts": [{"name": "shop", "domains": ["shop.example"], "routes": routes}],
    }
    if flags_header:
        route_config["response_headers_to_add"] = [{"header": {"key": "x-response-flags", "value": "%RESPONSE_FLAGS%"}}]
    hcm = {
        "@type": _HCM_TYPE,
        "stat_prefix": "ingress",
        "route_config": route_config,
        "http_filters": [_ROUTER],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


@pytest.mark.envoy
def test_traffic_through_an_80_20_weighted_route_lands_80_20_on_the_two_upstreams(
    envoy: Callable[..., EnvoyProcess], upstreams: Callable[..., UpstreamServer]
) -> None:
    v1, v2 = upstreams("v1"), upstreams("v2")
    split = {
        "match": {"prefix": "/"},
        "route": {
            "weighted_clusters": {"clusters": [{"name": "shop-v1", "weight": 80}, {"name": "shop-v2", "weight": 20}]}
        },
    }
    proxy = envoy(_static_bootstrap([split], [_cluster("shop-v1", [v1.port]), _cluster("shop-v2", [v2.port])]))

    result = send_requests(port=proxy.listener_ports()["http"], authority="shop.example", count=1000, deadline=20)

    assert result.sent == result.responses == 1000
    assert result.by_status == {200: 1000}
    assert 75.0 <= result.share("v1") <= 85.0
    assert 15.0 <= result.share("v2") <= 25.0
    assert result.by_version["v1"] + result.by_version["v2"] == 1000
    assert v1.request_count == result.by_version["v1"]
    assert proxy.stat("cluster.shop-v2.upstream_rq_total") == result.by_version["v2"]
    assert result.p50 <= result.p99


@pytest.mark.envoy
@pytest.mark.parametrize("flags_header", [False, True], ids=["from-body", "from-header"])
def test_envoys_own_replies_are_counted_by_response_flag(
    envoy: Callable[..., EnvoyProcess], upstreams: Callable[..., UpstreamServer], flags_header: bool
) -> None:
    v1 = upstreams("v1")
    routes = [
        {"match": {"prefix": "/missing"}, "route": {"cluster": "not-defined"}},
        {"match": {"prefix": "/empty"}, "route": {"cluster": "no-hosts"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "shop-v1"}},
    ]
    clusters = [_cluster("shop-v1", [v1.port]), _cluster("no-hosts", [])]
    proxy = envoy(_static_bootstrap(routes, clusters, flags_header=flags_header))
    port = proxy.listener_ports()["http"]

    missing = send_requests(port=port, authority="shop.example", path="/missing", count=20)
    empty = send_requests(port=port, authority="shop.example", path="/empty", count=20)
    unrouted = send_requests(port=port, authority="elsewhere.example", count=5)
    served = send_requests(port=port, authority="shop.example", count=5)

    assert (missing.nc, missing.by_status, missing.by_version) == (20, {503: 20}, {})
    assert (empty.uh, empty.by_status) == (20, {503: 20})
    assert (unrouted.local_replies, unrouted.by_status) == ({"NR": 5}, {404: 5})
    assert (served.local_replies, served.by_version) == ({}, {"v1": 5})


def test_failures_injected_at_the_upstream_are_counted_by_status_and_version(
    upstreams: Callable[..., UpstreamServer],
) -> None:
    v1 = upstreams("v1")
    v1.fail(status=503, fraction=0.1)

    result = send_requests(port=v1.port, count=200, workers=2)

    assert result.by_status == {200: 180, 503: 20}
    assert result.by_version == {"v1": 200}
    assert result.by_body["v1"] == 180
    assert result.local_replies == {}


def test_latency_percentiles_reflect_an_upstream_delay(upstreams: Callable[..., UpstreamServer]) -> None:
    v1 = upstreams("v1")
    v1.delay(0.05)

    result = send_requests(port=v1.port, count=20, workers=4)

    assert result.percentile(0) >= 50.0
    assert 50.0 <= result.p50 <= result.p90 <= result.p99 < 1000.0


def test_rate_mode_sends_rate_times_duration_requests_in_about_that_time(
    upstreams: Callable[..., UpstreamServer],
) -> None:
    v1 = upstreams("v1")

    result = send_at_rate(port=v1.port, rate=100, duration=0.5)

    assert result.sent == result.responses == 50
    assert 0.45 <= result.elapsed_s < 5.0


def test_traffic_to_a_closed_port_is_counted_as_refused_not_raised(free_port: Callable[[], int]) -> None:
    result = send_requests(port=free_port(), count=10, workers=2)

    assert result.errors == {"refused": 10}
    assert result.responses == 0
    assert result.share("v1") == 0.0


def test_a_run_stops_at_its_deadline_even_if_the_upstream_hangs(upstreams: Callable[..., UpstreamServer]) -> None:
    v1 = upstreams("v1")
    v1.delay(0.3)

    result = send_requests(port=v1.port, count=1000, workers=2, deadline=0.5, request_timeout=1.0)

    assert result.deadline_hit
    assert result.sent < 1000
    assert result.elapsed_s < 5.0  # 0.5 s deadline + the 1 s request timeout, and slack for a loaded machine


@pytest.mark.parametrize(
    "arguments",
    [{"count": 0}, {"count": 10, "workers": 0}, {"count": 10_000_000}, {"count": 1, "deadline": 0}],
)
def test_send_requests_refuses_unbounded_or_empty_runs(arguments: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        send_requests(port=8080, **arguments)
