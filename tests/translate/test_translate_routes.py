"""VirtualService HTTP rules → Envoy routes: matches, destinations, timeouts, retries, faults, mirrors, rewrites."""

from __future__ import annotations

from dataclasses import replace

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.v3 import percent_pb2
from translate_support import (
    REVIEWS,
    SIDECAR,
    connection_manager,
    listeners,
    load,
    not_translated,
    render,
    service_entry,
    virtual_host,
    virtual_service,
)

from reconciler.translate import translate
from reconciler.translate.routes import DEFAULT_RETRY_ON, FAULT_FILTER

VHOST = "reviews.default.svc.cluster.local:9080"


def routes_of(body: str, *, extra: str = "") -> list[route_components_pb2.Route]:
    result = render(REVIEWS + extra + virtual_service("reviews", body))
    return list(virtual_host(result.snapshot, VHOST).routes)


def cluster(subset: str = "", port: int = 9080, host: str = "reviews.default.svc.cluster.local") -> str:
    return f"outbound|{port}|{subset}|{host}"


def test_weighted_destinations_become_weighted_clusters_with_relative_weights() -> None:
    (route,) = routes_of(
        """\
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 8}
    - {destination: {host: reviews, subset: v2}, weight: 2}
"""
    )

    weighted = route.route.weighted_clusters.clusters
    assert [(w.name, w.weight.value) for w in weighted] == [(cluster("v1"), 8), (cluster("v2"), 2)]
    assert not route.route.cluster


def test_zero_weight_destination_is_left_out() -> None:
    (route,) = routes_of(
        """\
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 0}
    - {destination: {host: reviews, subset: v3}, weight: 20}
"""
    )

    assert [w.name for w in route.route.weighted_clusters.clusters] == [cluster("v1"), cluster("v3")]


def test_single_remaining_weighted_destination_becomes_a_plain_cluster() -> None:
    (route,) = routes_of(
        """\
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 100}
    - {destination: {host: reviews, subset: v2}, weight: 0}
"""
    )

    assert route.route.cluster == cluster("v1")
    assert not route.route.HasField("weighted_clusters")


def test_header_match_routes_jason_to_v2_before_the_default_route() -> None:
    jason, rest = routes_of(
        """\
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
"""
    )

    (header,) = jason.match.headers
    assert (header.name, header.string_match.exact) == ("end-user", "jason")
    assert jason.route.cluster == cluster("v2")
    assert rest.match.prefix == "/"
    assert not rest.match.headers
    assert rest.route.cluster == cluster("v1")


def test_several_matches_in_one_rule_become_one_route_each_in_order() -> None:
    routes = routes_of(
        """\
  http:
  - name: pages
    match:
    - {name: exact, uri: {exact: /productpage}}
    - {uri: {prefix: /static}}
    - {uri: {regex: "^/api/v[0-9]+/.*"}}
    route:
    - destination: {host: reviews, subset: v1}
"""
    )

    assert [r.match.WhichOneof("path_specifier") for r in routes] == ["path", "prefix", "safe_regex"]
    assert [r.name for r in routes] == ["pages.exact", "pages", "pages"]
    assert routes[2].match.safe_regex.regex == "^/api/v[0-9]+/.*"
    assert {r.route.cluster for r in routes} == {cluster("v1")}


def test_rules_after_a_rule_without_match_are_unreachable_and_left_out() -> None:
    routes = routes_of(
        """\
  http:
  - route:
    - destination: {host: reviews, subset: v1}
  - match:
    - uri: {prefix: /never}
    route:
    - destination: {host: reviews, subset: v2}
"""
    )

    assert [r.route.cluster for r in routes] == [cluster("v1")]


def test_ignore_uri_case_method_and_query_params_become_route_match_conditions() -> None:
    (route, _) = routes_of(
        """\
  http:
  - match:
    - uri: {prefix: /API}
      ignoreUriCase: true
      method: {exact: POST}
      queryParams:
        debug: {exact: "1"}
        trace: {prefix: "on"}
      headers:
        x-b: {prefix: "yes"}
        x-a: {regex: "v[0-9]"}
    route:
    - destination: {host: reviews, subset: v3}
  - route:
    - destination: {host: reviews, subset: v1}
"""
    )

    match = route.match
    assert match.prefix == "/API"
    assert match.HasField("case_sensitive")
    assert match.case_sensitive.value is False
    # Headers sorted by name, then the method pseudo-header.
    assert [h.name for h in match.headers] == ["x-a", "x-b", ":method"]
    assert match.headers[0].string_match.safe_regex.regex == "v[0-9]"
    assert match.headers[1].string_match.prefix == "yes"
    assert match.headers[2].string_match.exact == "POST"
    debug, trace = match.query_parameters
    assert (debug.name, debug.string_match.exact) == ("debug", "1")
    assert (trace.name, trace.string_match.prefix) == ("trace", "on")


def test_route_timeout_defaults_to_disabled_and_retries_to_istio_defaults() -> None:
    (route,) = routes_of("  http:\n  - route:\n    - destination: {host: reviews}\n")

    action = route.route
    assert action.HasField("timeout")
    assert action.timeout.ToNanoseconds() == 0
    policy = action.retry_policy
    assert policy.retry_on == DEFAULT_RETRY_ON
    assert policy.num_retries.value == 2
    assert list(policy.retriable_status_codes) == [503]
    assert [p.name for p in policy.retry_host_predicate] == ["envoy.retry_host_predicates.previous_hosts"]
    assert policy.host_selection_retry_max_attempts == 5


def test_timeout_and_retries_translate_to_route_timeout_and_retry_policy() -> None:
    (route,) = routes_of(
        """\
  http:
  - timeout: 3s
    retries: {attempts: 3, perTryTimeout: 1.5s, retryOn: "gateway-error,connect-failure,503,429"}
    route:
    - destination: {host: reviews}
"""
    )

    action = route.route
    assert action.timeout.ToNanoseconds() == 3 * 10**9
    policy = action.retry_policy
    assert policy.num_retries.value == 3
    assert policy.per_try_timeout.ToMilliseconds() == 1500
    # Status codes move to retriable_status_codes, which then needs its retry condition.
    assert policy.retry_on == "gateway-error,connect-failure,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [503, 429]


def test_zero_retry_attempts_disable_retries() -> None:
    (route,) = routes_of("  http:\n  - retries: {attempts: 0}\n    route:\n    - destination: {host: reviews}\n")

    assert not route.route.HasField("retry_policy")


def test_fault_abort_and_delay_become_per_route_fault_filter_config() -> None:
    delayed, aborted = routes_of(
        """\
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100}}
    route:
    - destination: {host: reviews, subset: v1}
  - fault:
      abort: {httpStatus: 500, percentage: {value: 12.5}}
    route:
    - destination: {host: reviews, subset: v1}
"""
    )

    delay = fault_pb2.HTTPFault()
    assert delayed.typed_per_filter_config[FAULT_FILTER].Unpack(delay)
    assert delay.delay.fixed_delay.ToSeconds() == 7
    assert (delay.delay.percentage.numerator, delay.delay.percentage.denominator) == (
        1_000_000,
        percent_pb2.FractionalPercent.MILLION,
    )
    assert not delay.HasField("abort")
    abort = fault_pb2.HTTPFault()
    assert aborted.typed_per_filter_config[FAULT_FILTER].Unpack(abort)
    assert abort.abort.http_status == 500
    assert abort.abort.percentage.numerator == 125_000


def test_fault_filter_comes_before_the_router_in_every_listener() -> None:
    result = render(REVIEWS)

    for listener in listeners(result.snapshot).values():
        names = [f.name for f in connection_manager(listener).http_filters]
        assert names == ["envoy.filters.http.fault", "envoy.filters.http.router"]


@pytest.mark.parametrize(("percent", "per_million"), [("25", 250_000), ("0.5", 5_000), ("0.0001", 1)])
def test_mirror_with_percentage_gets_a_runtime_fraction(percent: str, per_million: int) -> None:
    (route,) = routes_of(
        f"""\
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
    mirror: {{host: reviews, subset: v2}}
    mirrorPercentage: {{value: {percent}}}
"""
    )

    (mirror,) = route.route.request_mirror_policies
    assert mirror.cluster == cluster("v2")
    fraction = mirror.runtime_fraction.default_value
    assert (fraction.numerator, fraction.denominator) == (per_million, percent_pb2.FractionalPercent.MILLION)
    assert mirror.trace_sampled.value is False


def test_mirrors_without_percentage_copy_everything_and_zero_percent_copies_nothing() -> None:
    (route,) = routes_of(
        """\
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirrors:
    - destination: {host: reviews, subset: v3}
    - destination: {host: reviews, subset: v2}
      percentage: {value: 0}
"""
    )

    (mirror,) = route.route.request_mirror_policies
    assert mirror.cluster == cluster("v3")
    full = mirror.runtime_fraction.default_value
    assert (full.numerator, full.denominator) == (100, percent_pb2.FractionalPercent.HUNDRED)


def test_rewrite_sets_prefix_rewrite_and_host_rewrite() -> None:
    (route, _) = routes_of(
        """\
  http:
  - match:
    - uri: {prefix: /v1/reviews}
    rewrite: {uri: /reviews, authority: reviews-backend}
    route:
    - destination: {host: reviews}
  - route:
    - destination: {host: reviews}
"""
    )

    assert route.route.prefix_rewrite == "/reviews"
    assert route.route.host_rewrite_literal == "reviews-backend"


def test_header_operations_apply_to_the_route_and_to_each_weighted_cluster() -> None:
    (route,) = routes_of(
        """\
  http:
  - headers:
      request:
        set: {x-b: "1", x-a: "2", host: moved.example}
        add: {x-c: "3"}
        remove: [x-debug]
      response:
        set: {cache-control: no-store}
        remove: [server]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
      headers:
        response:
          add: {x-served-by: v1}
    - destination: {host: reviews, subset: v2}
      weight: 10
      headers:
        request:
          set: {":authority": canary.example}
"""
    )

    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    added = [(h.header.key, h.header.value, h.append_action) for h in route.request_headers_to_add]
    # `set` sorted by name (overwrite), then `add` (append); Host is rewritten, never set as a header.
    assert added == [("x-a", "2", overwrite), ("x-b", "1", overwrite), ("x-c", "3", append)]
    assert list(route.request_headers_to_remove) == ["x-debug"]
    assert route.route.host_rewrite_literal == "moved.example"
    assert [(h.header.key, h.header.value) for h in route.response_headers_to_add] == [("cache-control", "no-store")]
    assert list(route.response_headers_to_remove) == ["server"]
    v1, v2 = route.route.weighted_clusters.clusters
    assert [(h.header.key, h.header.value) for h in v1.response_headers_to_add] == [("x-served-by", "v1")]
    assert v2.host_rewrite_literal == "canary.example"
    assert not v2.request_headers_to_add


def test_single_destination_headers_are_merged_into_the_route() -> None:
    (route,) = routes_of(
        """\
  http:
  - route:
    - destination: {host: reviews}
      headers:
        request:
          set: {x-route: default}
"""
    )

    assert [(h.header.key, h.header.value) for h in route.request_headers_to_add] == [("x-route", "default")]


def test_redirect_translates_uri_authority_scheme_port_and_code() -> None:
    moved, legacy, plain = routes_of(
        """\
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: shop.example.com, scheme: https, port: 8443, redirectCode: 308}
  - match: [{uri: {exact: /legacy}}]
    redirect: {uri: /, port: 80}
  - match: [{uri: {exact: /tls}}]
    redirect: {scheme: https, port: 443, redirectCode: 302}
"""
    )

    redirect = moved.redirect
    assert (redirect.path_redirect, redirect.host_redirect, redirect.scheme_redirect) == (
        "/new",
        "shop.example.com",
        "https",
    )
    assert redirect.port_redirect == 8443
    assert redirect.response_code == route_components_pb2.RedirectAction.PERMANENT_REDIRECT
    # The scheme's default port stays implicit; 301 is the default code.
    assert legacy.redirect.port_redirect == 0
    assert legacy.redirect.response_code == route_components_pb2.RedirectAction.MOVED_PERMANENTLY
    assert plain.redirect.port_redirect == 0
    assert plain.redirect.response_code == route_components_pb2.RedirectAction.FOUND


def test_direct_response_has_status_and_inline_body() -> None:
    (health, _) = routes_of(
        """\
  http:
  - match: [{uri: {exact: /healthz}}]
    directResponse: {status: 200, body: {string: ok}}
  - route:
    - destination: {host: reviews}
"""
    )

    assert health.direct_response.status == 200
    assert health.direct_response.body.inline_string == "ok"
    assert not health.HasField("route")


def test_destination_without_port_uses_the_only_port_of_the_service() -> None:
    ratings = service_entry("ratings", port=8081)
    result = render(
        REVIEWS + ratings + virtual_service("reviews", "  http:\n  - route:\n    - destination: {host: ratings}\n")
    )

    (route,) = virtual_host(result.snapshot, VHOST).routes
    assert route.route.cluster == "outbound|8081||ratings.default.svc.cluster.local"
    assert not not_translated(result.findings)


def test_delay_without_fixed_delay_surfaces_not_translated_finding() -> None:
    # Validation requires fixedDelay; translation must still cope with a model that lacks it.
    config = load(
        REVIEWS
        + virtual_service(
            "reviews",
            """\
  http:
  - fault:
      delay: {fixedDelay: 1s, percentage: {value: 50}}
    route:
    - destination: {host: reviews}
""",
        )
    )
    (vs,) = config.virtual_services
    (http,) = vs.spec.http
    assert http.fault is not None
    assert http.fault.delay is not None
    exponential = replace(http.fault, delay=replace(http.fault.delay, fixed_delay=None))
    vs = replace(vs, spec=replace(vs.spec, http=(replace(http, fault=exponential),)))
    result = translate(replace(config, virtual_services=(vs,)), SIDECAR)

    (finding,) = not_translated(result.findings)
    assert finding.path == "spec.http[0].fault.delay"
    (route,) = virtual_host(result.snapshot, VHOST).routes
    assert FAULT_FILTER not in route.typed_per_filter_config


def test_destination_without_port_uses_the_only_http_port_of_a_multi_port_service() -> None:
    api = service_entry("api.example.com", name="api", port=80, resolution="DNS", endpoints=()).replace(
        "  - {number: 80, name: http, protocol: HTTP}",
        "  - {number: 80, name: http, protocol: HTTP}\n  - {number: 443, name: https, protocol: HTTPS}",
    )
    config = load(
        REVIEWS + api + virtual_service("reviews", "  http:\n  - route:\n    - destination: {host: reviews}\n")
    )
    (vs,) = config.virtual_services
    (http,) = vs.spec.http
    # Validation asks for a port here (IST0112); translation still picks the one HTTP port.
    route = replace(http.route[0], destination=replace(http.route[0].destination, host="api.example.com"))
    vs = replace(vs, spec=replace(vs.spec, http=(replace(http, route=(route,)),)))

    result = translate(replace(config, virtual_services=(vs,)), SIDECAR)

    (translated,) = virtual_host(result.snapshot, VHOST).routes
    assert translated.route.cluster == "outbound|80||api.example.com"
