"""Clusters and endpoints: names, resolution, subsets, DestinationRule traffic policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from translate_support import (
    REVIEWS,
    SIDECAR,
    assignment,
    clusters,
    endpoint_addresses,
    load,
    load_fixture,
    not_translated,
    render,
    service_entry,
    subsets_rule,
    virtual_service,
)

from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole, build_registry, translate
from reconciler.translate.policy import HTTP_PROTOCOL_OPTIONS
from reconciler.translate.scope import Scope
from reconciler.translate.snapshot import ENDPOINT
from reconciler.validate.analyzers import AnalysisContext

REVIEWS_HOST = "reviews.default.svc.cluster.local"


def test_every_service_port_gets_a_default_cluster_and_one_per_subset_named_like_istio() -> None:
    result = render(REVIEWS)

    assert sorted(clusters(result.snapshot)) == [
        f"outbound|9080|v1|{REVIEWS_HOST}",
        f"outbound|9080|v2|{REVIEWS_HOST}",
        f"outbound|9080|v3|{REVIEWS_HOST}",
        f"outbound|9080||{REVIEWS_HOST}",
    ]


def test_static_service_entry_becomes_an_eds_cluster_with_a_load_assignment() -> None:
    result = render(REVIEWS)

    cluster = clusters(result.snapshot)[f"outbound|9080||{REVIEWS_HOST}"]
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert cluster.eds_cluster_config.service_name == cluster.name
    assert endpoint_addresses(assignment(result.snapshot, cluster.name)) == [
        ("10.0.0.1", 9080),
        ("10.0.0.2", 9080),
        ("10.0.0.3", 9080),
    ]


def test_subset_cluster_gets_only_endpoints_with_matching_labels() -> None:
    text = service_entry(
        "reviews", endpoints=(("10.0.0.1", "v1"), ("10.0.0.2", "v2"), ("10.0.0.4", "v2"))
    ) + subsets_rule("reviews", "v1", "v2")
    result = render(text)

    assert endpoint_addresses(assignment(result.snapshot, f"outbound|9080|v2|{REVIEWS_HOST}")) == [
        ("10.0.0.2", 9080),
        ("10.0.0.4", 9080),
    ]
    assert endpoint_addresses(assignment(result.snapshot, f"outbound|9080|v1|{REVIEWS_HOST}")) == [("10.0.0.1", 9080)]


def test_subset_with_several_labels_needs_all_of_them() -> None:
    config = load(REVIEWS)
    (rule,) = config.destination_rules
    both = replace(rule.spec.subsets[0], name="v1-eu", labels={"version": "v1", "zone": "eu"})
    config = replace(config, destination_rules=(replace(rule, spec=replace(rule.spec, subsets=(both,))),))

    result = translate(config, SIDECAR)

    assert endpoint_addresses(assignment(result.snapshot, f"outbound|9080|v1-eu|{REVIEWS_HOST}")) == []


def test_endpoints_use_their_per_port_override_else_the_target_port_and_keep_weights() -> None:
    result = translate(load_fixture("service-entries.yaml"), SIDECAR)

    load_assignment = assignment(result.snapshot, "outbound|8080||billing.legacy.internal")
    assert endpoint_addresses(load_assignment) == [("192.168.10.1", 18080), ("192.168.10.2", 28080)]
    weights = [lb.load_balancing_weight.value for lb in load_assignment.endpoints[0].lb_endpoints]
    assert weights == [3, 0]
    zone_b = assignment(result.snapshot, "outbound|8080|zone-b|billing.legacy.internal")
    assert endpoint_addresses(zone_b) == [("192.168.10.2", 28080)]


def test_dns_service_entry_becomes_a_strict_dns_cluster_with_inline_endpoints() -> None:
    result = translate(load_fixture("service-entries.yaml"), SIDECAR)

    partner = clusters(result.snapshot)["outbound|8000||api.partner.example"]
    assert partner.type == cluster_pb2.Cluster.STRICT_DNS
    assert partner.dns_lookup_family == cluster_pb2.Cluster.V4_ONLY
    assert endpoint_addresses(partner.load_assignment) == [("eu.partner.example", 8000), ("us.partner.example", 8000)]
    # A DNS cluster carries its endpoints inline: no separate ClusterLoadAssignment.
    assert "outbound|8000||api.partner.example" not in result.snapshot.resources(ENDPOINT)


def test_dns_service_entry_without_endpoints_resolves_its_own_host() -> None:
    result = translate(load_fixture("service-entries.yaml"), SIDECAR)

    httpbin = clusters(result.snapshot)["outbound|80||httpbin.org"]
    assert endpoint_addresses(httpbin.load_assignment) == [("httpbin.org", 80)]


def test_resolution_none_surfaces_not_translated_finding_and_cluster_has_no_endpoints() -> None:
    result = render(service_entry("legacy.internal", resolution="NONE", endpoints=()))

    (finding,) = not_translated(result.findings)
    assert (finding.kind, finding.path) == ("ServiceEntry", "spec.resolution")
    assert finding.line > 0
    assert endpoint_addresses(assignment(result.snapshot, "outbound|9080||legacy.internal")) == []


def test_traffic_policy_sets_load_balancer_circuit_breakers_timeout_and_outlier_detection() -> None:
    result = translate(load_fixture("traffic-policy.yaml"), SIDECAR)

    cluster = clusters(result.snapshot)["outbound|9080||catalog.default.svc.cluster.local"]
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert cluster.connect_timeout.ToSeconds() == 2
    (thresholds,) = cluster.circuit_breakers.thresholds
    assert thresholds.max_connections.value == 100
    assert thresholds.max_pending_requests.value == 10
    assert thresholds.max_retries.value == 4
    assert thresholds.max_requests.value == 2**32 - 1
    outlier = cluster.outlier_detection
    assert (outlier.consecutive_5xx.value, outlier.enforcing_consecutive_5xx.value) == (5, 100)
    assert outlier.interval.ToSeconds() == 10
    assert outlier.base_ejection_time.ToSeconds() == 30
    assert outlier.max_ejection_percent.value == 50
    # Istio turns panic mode off unless minHealthPercent asks for it.
    assert cluster.common_lb_config.healthy_panic_threshold.value == 0
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert options.common_http_protocol_options.max_requests_per_connection.value == 5


def test_subset_policy_overrides_the_parent_component_by_component() -> None:
    result = translate(load_fixture("traffic-policy.yaml"), SIDECAR)

    v1 = clusters(result.snapshot)["outbound|9080|v1|catalog.default.svc.cluster.local"]
    v2 = clusters(result.snapshot)["outbound|9080|v2|catalog.default.svc.cluster.local"]
    # v1 has no policy of its own: everything inherited.
    assert v1.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert v1.circuit_breakers.thresholds[0].max_connections.value == 100
    # v2 replaces load balancing and the whole connection pool, keeps outlier detection.
    assert v2.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    (thresholds,) = v2.circuit_breakers.thresholds
    assert thresholds.max_requests.value == 1000
    assert thresholds.max_connections.value == 2**32 - 1
    assert v2.connect_timeout.ToSeconds() == 10
    assert v2.outlier_detection.consecutive_5xx.value == 5
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert v2.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_port_level_settings_replace_the_whole_policy_for_that_port() -> None:
    result = translate(load_fixture("traffic-policy.yaml"), SIDECAR)

    grpc = clusters(result.snapshot)["outbound|9090||catalog.default.svc.cluster.local"]
    assert grpc.lb_policy == cluster_pb2.Cluster.RANDOM
    # Port-level settings do not inherit the top-level connection pool or outlier detection.
    assert grpc.circuit_breakers.thresholds[0].max_connections.value == 2**32 - 1
    assert not grpc.HasField("outlier_detection")
    # A gRPC port speaks HTTP/2 upstream.
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert grpc.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_clusters_without_destination_rule_get_istio_defaults() -> None:
    result = render(service_entry("ratings"))

    cluster = clusters(result.snapshot)["outbound|9080||ratings.default.svc.cluster.local"]
    assert cluster.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert cluster.connect_timeout.ToSeconds() == 10
    (thresholds,) = cluster.circuit_breakers.thresholds
    assert thresholds.max_connections.value == thresholds.max_retries.value == 2**32 - 1
    assert thresholds.track_remaining
    assert not cluster.HasField("outlier_detection")
    assert not cluster.typed_extension_protocol_options


def test_route_to_host_outside_the_registry_gets_an_empty_cluster_and_a_finding() -> None:
    result = render(REVIEWS + virtual_service("reviews", "  http:\n  - route:\n    - destination: {host: ratings}\n"))

    # Unknown service and no port given: the port of the virtual host the route serves, as in Istio.
    name = "outbound|9080||ratings.default.svc.cluster.local"
    assert clusters(result.snapshot)[name].type == cluster_pb2.Cluster.EDS
    assert endpoint_addresses(assignment(result.snapshot, name)) == []
    (finding,) = not_translated(result.findings)
    assert finding.path == "spec.http[0].route[0].destination"
    assert "not in the service registry" in finding.message


def test_a_kubernetes_service_of_a_watched_cluster_gets_its_empty_cluster_without_a_finding() -> None:
    config = load(REVIEWS + virtual_service("reviews", "  http:\n  - route:\n    - destination: {host: ratings}\n"))

    watched = translate(config, SIDECAR, registry=build_registry(config, cluster_domain="cluster.local"))
    other_domain = translate(config, SIDECAR, registry=build_registry(config, cluster_domain="corp.internal"))

    # ratings.default.svc.cluster.local is the cluster's to fill (EDS, once its Service is listed).
    name = "outbound|9080||ratings.default.svc.cluster.local"
    assert clusters(watched.snapshot)[name].type == cluster_pb2.Cluster.EDS
    assert endpoint_addresses(assignment(watched.snapshot, name)) == []
    assert not not_translated(watched.findings)
    (finding,) = not_translated(other_domain.findings)
    assert "not in the service registry" in finding.message


@pytest.mark.parametrize(
    ("host", "domain", "expected"),
    [
        ("ratings.default.svc.cluster.local", "cluster.local", True),
        ("ratings.default.svc.corp.internal", "corp.internal", True),
        ("ratings.default.svc.cluster.local", "corp.internal", False),
        ("ratings.default.svc.cluster.local", None, False),
        ("default.svc.cluster.local", "cluster.local", False),
        ("a.b.default.svc.cluster.local", "cluster.local", False),
        ("*.default.svc.cluster.local", "cluster.local", False),
    ],
)
def test_only_name_namespace_svc_domain_hosts_are_a_cluster_s_services(
    host: str, domain: str | None, expected: bool
) -> None:
    assert build_registry(MeshConfig(), cluster_domain=domain).from_cluster(host) is expected


def test_route_to_undefined_subset_gets_an_empty_cluster_and_a_finding() -> None:
    config = load(REVIEWS + virtual_service("reviews", "  http:\n  - route:\n    - destination: {host: reviews}\n"))
    # Validation rejects unknown subsets (IST0101); translation must stay consistent all the same.
    (vs,) = config.virtual_services
    (http,) = vs.spec.http
    route = replace(http.route[0], destination=replace(http.route[0].destination, subset="v9"))
    vs = replace(vs, spec=replace(vs.spec, http=(replace(http, route=(route,)),)))

    result = translate(replace(config, virtual_services=(vs,)), SIDECAR)

    name = f"outbound|9080|v9|{REVIEWS_HOST}"
    assert endpoint_addresses(assignment(result.snapshot, name)) == []
    (finding,) = not_translated(result.findings)
    assert "subset 'v9'" in finding.message


def test_destination_rule_in_the_proxy_namespace_wins_over_the_service_namespace() -> None:
    text = (
        service_entry("reviews", namespace="shop")
        + subsets_rule("reviews.shop.svc.cluster.local", "v1", namespace="shop", extra=_lb("RANDOM"))
        + subsets_rule("reviews.shop.svc.cluster.local", "v1", namespace="client", extra=_lb("ROUND_ROBIN"))
    )
    config = load(text)

    in_client = translate(config, ProxyIdentity(node_id="c", namespace="client"))
    elsewhere = translate(config, ProxyIdentity(node_id="o", namespace="other"))

    name = "outbound|9080||reviews.shop.svc.cluster.local"
    assert clusters(in_client.snapshot)[name].lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert clusters(elsewhere.snapshot)[name].lb_policy == cluster_pb2.Cluster.RANDOM


def test_destination_rule_in_an_unrelated_namespace_does_not_apply() -> None:
    # Exported everywhere, but neither the proxy's, the service's nor the root namespace: Istio ignores it.
    hijack = subsets_rule("reviews.prod.svc.cluster.local", "v1", namespace="team-x", extra=_lb("RANDOM"))
    config = load(service_entry("reviews", namespace="prod") + hijack.replace("spec:\n", "spec:\n  exportTo: ['*']\n"))

    in_default = translate(config, ProxyIdentity(node_id="d", namespace="default"))
    in_team_x = translate(config, ProxyIdentity(node_id="t", namespace="team-x"))

    name = "outbound|9080||reviews.prod.svc.cluster.local"
    assert clusters(in_default.snapshot)[name].lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert "outbound|9080|v1|reviews.prod.svc.cluster.local" not in clusters(in_default.snapshot)
    # Its own namespace's proxies do use it.
    assert clusters(in_team_x.snapshot)[name].lb_policy == cluster_pb2.Cluster.RANDOM
    assert "outbound|9080|v1|reviews.prod.svc.cluster.local" in clusters(in_team_x.snapshot)


def test_root_namespace_rule_applies_when_neither_proxy_nor_service_namespace_has_one() -> None:
    host = "reviews.prod.svc.cluster.local"
    root = subsets_rule(host, "v1", namespace="istio-system", extra=_lb("RANDOM"))
    in_service_namespace = subsets_rule(host, "v1", namespace="prod", extra=_lb("ROUND_ROBIN"))
    name = f"outbound|9080||{host}"
    proxy = ProxyIdentity(node_id="d", namespace="default")

    only_root = translate(load(service_entry("reviews", namespace="prod") + root), proxy)
    both = translate(load(service_entry("reviews", namespace="prod") + root + in_service_namespace), proxy)

    assert clusters(only_root.snapshot)[name].lb_policy == cluster_pb2.Cluster.RANDOM
    assert clusters(both.snapshot)[name].lb_policy == cluster_pb2.Cluster.ROUND_ROBIN


def test_analyzers_and_translation_choose_the_same_destination_rule() -> None:
    # Validation accepts a subset only if translation builds its cluster from the same rule.
    host = "reviews.prod.svc.cluster.local"
    rules = {
        namespace: subsets_rule(host, "v1", namespace=namespace, extra="  exportTo: ['*']\n")
        for namespace in ("default", "prod", "team-x", "istio-system")
    }
    for present in (("default", "prod", "team-x", "istio-system"), ("prod", "team-x", "istio-system"), ("team-x",)):
        config = load(service_entry("reviews", namespace="prod") + "".join(rules[ns] for ns in present))
        context = AnalysisContext(config)
        for proxy_namespace in ("default", "team-x", "elsewhere"):
            scope = Scope(config=config, registry=build_registry(config), namespace=proxy_namespace, labels={})
            service = scope.service(host)
            assert service is not None
            chosen = scope.destination_rule(host, service_namespace=service.namespace)
            analyzed = context.rules_for(host, namespace=proxy_namespace)
            assert [rule.ref for rule in analyzed] == ([chosen.ref] if chosen else []), (present, proxy_namespace)


def test_workload_selector_destination_rule_applies_only_to_matching_proxies() -> None:
    selector = "  workloadSelector:\n    matchLabels: {app: frontend}\n" + _lb("RANDOM")
    config = load(service_entry("ratings") + subsets_rule("ratings", "v1", extra=selector))

    frontend = translate(config, ProxyIdentity(node_id="f", labels={"app": "frontend"}))
    backend = translate(config, ProxyIdentity(node_id="b", labels={"app": "backend"}))

    name = "outbound|9080||ratings.default.svc.cluster.local"
    assert clusters(frontend.snapshot)[name].lb_policy == cluster_pb2.Cluster.RANDOM
    assert clusters(backend.snapshot)[name].lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert "outbound|9080|v1|ratings.default.svc.cluster.local" not in clusters(backend.snapshot)


def test_tls_origination_surfaces_not_translated_finding_once_per_policy() -> None:
    tls = "  trafficPolicy:\n    tls: {mode: SIMPLE}\n"
    result = render(service_entry("ratings") + subsets_rule("ratings", "v1", "v2", extra=tls))

    (finding,) = not_translated(result.findings)
    assert (finding.kind, finding.path) == ("DestinationRule", "spec.trafficPolicy.tls")
    assert "TLS origination" in finding.message


@pytest.mark.parametrize("address", ["ratings.internal", "010.0.0.2", "10.0.0.256"])
def test_non_ip_address_of_a_static_endpoint_is_left_out_with_a_finding(address: str) -> None:
    # Validation rejects these in STATIC endpoints; a registry from elsewhere might not. Envoy would
    # reject the whole load assignment for one of them (a leading zero too, as inet_pton does).
    config = load(service_entry("ratings", endpoints=(("10.0.0.1", "v1"), ("10.0.0.2", "v1"))))
    (entry,) = config.service_entries
    endpoints = (entry.spec.endpoints[0], replace(entry.spec.endpoints[1], address=address))
    config = replace(config, service_entries=(replace(entry, spec=replace(entry.spec, endpoints=endpoints)),))

    result = translate(config, SIDECAR)

    assert endpoint_addresses(assignment(result.snapshot, "outbound|9080||ratings.default.svc.cluster.local")) == [
        ("10.0.0.1", 9080)
    ]
    (finding,) = not_translated(result.findings)
    assert finding.path == "spec.endpoints[1].address"


def _lb(simple: str) -> str:
    return f"  trafficPolicy:\n    loadBalancer: {{simple: {simple}}}\n"


# -- Istio's DestinationRule choice: merging, root-namespace proxies, host specificity ----------

_PROD_HOST = "reviews.prod.svc.cluster.local"
_GATEWAY_PROXY = ProxyIdentity(
    node_id="gw", namespace="istio-system", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY
)


def _named(rule: str, name: str) -> str:
    head, _, tail = rule.partition("  name: ")
    return f"{head}  name: reviews-{name}\n{tail.partition(chr(10))[2]}"


def _rule_for(config: MeshConfig, namespace: str, labels: Mapping[str, str] | None = None) -> str | None:
    scope = Scope(config=config, registry=build_registry(config), namespace=namespace, labels=labels or {})
    rule = scope.destination_rule(_PROD_HOST, service_namespace="prod")
    return rule.ref if rule is not None else None


def _gateway_route_to(subset: str) -> str:
    gateway = (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*/*']\n---\n"
    )
    destination = f"{{host: {_PROD_HOST}, subset: {subset}}}"
    body = f"  gateways: [istio-system/gw]\n  http:\n  - route:\n    - destination: {destination}\n"
    return gateway + virtual_service("r", body, hosts=f"[{_PROD_HOST}]", namespace="prod")


def test_two_destination_rules_for_one_host_are_merged_like_istio() -> None:
    first = _named(subsets_rule("reviews", "v1"), "a")
    second = _named(subsets_rule("reviews", "v1", "v2", extra=_lb("RANDOM")), "b")
    route = virtual_service("reviews", "  http:\n  - route:\n    - destination: {host: reviews, subset: v2}\n")
    text = service_entry("reviews") + first + second + route

    loaded = load_files({"mesh.yaml": text}, default_namespace="default")
    assert [f.code.value for f in loaded.findings if f.code.value == "IST0101"] == []
    result = translate(loaded.config, SIDECAR)

    built = clusters(result.snapshot)
    # The later rule's subsets are added; its traffic policy applies as the first rule has none.
    assert endpoint_addresses(assignment(result.snapshot, f"outbound|9080|v2|{REVIEWS_HOST}")) == [("10.0.0.2", 9080)]
    assert f"outbound|9080|v1|{REVIEWS_HOST}" in built
    assert built[f"outbound|9080||{REVIEWS_HOST}"].lb_policy == cluster_pb2.Cluster.RANDOM
    # The first rule's traffic policy wins when it has one.
    first_with_policy = _named(subsets_rule("reviews", "v1", extra=_lb("ROUND_ROBIN")), "a")
    both = translate(load(service_entry("reviews") + first_with_policy + second), SIDECAR)
    assert clusters(both.snapshot)[f"outbound|9080||{REVIEWS_HOST}"].lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert f"outbound|9080|v2|{REVIEWS_HOST}" in clusters(both.snapshot)


def test_gateway_in_the_root_namespace_prefers_the_service_rule_to_a_mesh_wide_root_rule() -> None:
    entry = service_entry(_PROD_HOST, namespace="prod")
    mesh_wide = _named(subsets_rule("'*.local'", "v3", namespace="istio-system", extra=_lb("RANDOM")), "mesh")
    own = subsets_rule(_PROD_HOST, "v1", namespace="prod", extra=_lb("ROUND_ROBIN"))

    loaded = load_files({"mesh.yaml": entry + mesh_wide + own + _gateway_route_to("v1")}, default_namespace="default")
    assert [f for f in loaded.findings if f.code.value == "IST0101"] == []
    result = translate(loaded.config, _GATEWAY_PROXY)
    assert endpoint_addresses(assignment(result.snapshot, f"outbound|9080|v1|{_PROD_HOST}")) == [("10.0.0.1", 9080)]
    assert _rule_for(loaded.config, "istio-system") == "prod/reviews-rule"

    # A root rule private to istio-system is meant for its proxies: it comes first for them.
    private = mesh_wide.replace("spec:\n", "spec:\n  exportTo: ['.']\n")
    config = load(entry + private + own)
    assert _rule_for(config, "istio-system") == "istio-system/reviews-mesh"
    assert _rule_for(config, "default") == "prod/reviews-rule"


def test_most_specific_host_is_chosen_before_workload_selector_and_export() -> None:
    entry = service_entry(_PROD_HOST, namespace="prod")
    selecting_wildcard = _named(
        subsets_rule(
            "'*.prod.svc.cluster.local'", "v3", namespace="prod", extra="  workloadSelector: {matchLabels: {app: x}}\n"
        ),
        "sel",
    )
    general = subsets_rule(_PROD_HOST, "v1", namespace="prod")
    assert _rule_for(load(entry + selecting_wildcard + general), "prod", {"app": "x"}) == "prod/reviews-rule"

    # The most specific host's rules select other workloads only: no rule, no fall-through to the root.
    selecting = _named(
        subsets_rule(_PROD_HOST, "v2", namespace="prod", extra="  workloadSelector: {matchLabels: {app: other}}\n"),
        "sel",
    )
    root = subsets_rule(_PROD_HOST, "v1", namespace="istio-system")
    assert _rule_for(load(entry + selecting + root), "prod", {"app": "x"}) is None
    assert _rule_for(load(entry + selecting + root), "prod", {"app": "other"}) == "prod/reviews-sel"

    # exportTo is checked on the most specific host only; not exported means the next namespace.
    hidden = subsets_rule(_PROD_HOST, "v1", namespace="istio-system", extra="  exportTo: [team-x]\n")
    mesh_wide = _named(subsets_rule("'*.local'", "v3", namespace="istio-system"), "mesh")
    assert _rule_for(load(entry + hidden + mesh_wide), "default") is None
    assert _rule_for(load(entry + hidden + mesh_wide), "team-x") == "istio-system/reviews-rule"
    in_prod = _named(subsets_rule(_PROD_HOST, "v3", namespace="prod", extra="  exportTo: [team-x]\n"), "prod")
    assert _rule_for(load(entry + in_prod + mesh_wide), "default") == "istio-system/reviews-mesh"
