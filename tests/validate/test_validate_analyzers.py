"""Cross-resource analyzers: one valid and one invalid config each, with Istio's codes, levels and wording."""

from __future__ import annotations

import pytest
import translate_support
from validate_helpers import DESTINATION_RULE, SERVICE_ENTRY, line_containing, load_text, virtual_service, with_code

from reconciler.validate.findings import Severity

ROUTE_V1 = """
- route:
  - destination: {host: reviews.shop.example.com, subset: v1}
"""


def gateway(name: str = "gw", *, namespace: str = "default", hosts: str = '["*.example.com"]', port: int = 80) -> str:
    """This module's Gateway: port 80 for ``*.example.com`` unless told otherwise."""
    return translate_support.gateway(name, namespace=namespace, hosts=hosts, port=port)


def test_a_consistent_config_has_no_findings() -> None:
    result = load_text(SERVICE_ENTRY, DESTINATION_RULE, virtual_service(ROUTE_V1))
    assert result.findings == ()


# IST0101 -------------------------------------------------------------------------------------------


def test_missing_subset_is_reported_as_ist0101_at_its_line() -> None:
    http = """
    - route:
      - destination: {host: reviews.shop.example.com, subset: v1}
        weight: 50
      - destination:
          host: reviews.shop.example.com
          subset: v3
        weight: 50
    """
    documents = (SERVICE_ENTRY, DESTINATION_RULE, virtual_service(http))
    (finding,) = with_code(load_text(*documents), "IST0101")
    assert finding.severity is Severity.ERROR
    assert finding.message == 'Referenced host+subset in destinationrule not found: "reviews.shop.example.com+v3"'
    assert finding.path == "spec.http[0].route[1].destination.subset"
    assert (finding.kind, finding.namespace, finding.name) == ("VirtualService", "default", "reviews")
    assert finding.line == line_containing("subset: v3", *documents) == 34
    assert "v1, v2" in finding.hint


def test_misspelt_subset_hints_the_right_name() -> None:
    http = "- route:\n  - destination: {host: reviews.shop.example.com, subset: v2x}"
    (finding,) = with_code(load_text(SERVICE_ENTRY, DESTINATION_RULE, virtual_service(http)), "IST0101")
    assert finding.hint == "did you mean 'v2'?"


def test_subset_without_any_destination_rule_is_missing() -> None:
    (finding,) = with_code(load_text(SERVICE_ENTRY, virtual_service(ROUTE_V1)), "IST0101")
    assert "no DestinationRule for reviews.shop.example.com" in finding.hint


def test_destination_rule_not_exported_to_the_virtual_service_namespace_does_not_count() -> None:
    rule = DESTINATION_RULE.replace("metadata: {name: reviews}", "metadata: {name: reviews, namespace: other}")
    rule += "  exportTo: ['.']\n"
    result = load_text(SERVICE_ENTRY, rule, virtual_service(ROUTE_V1))
    assert [f.path for f in with_code(result, "IST0101")] == ["spec.http[0].route[0].destination.subset"]


def _in_namespace(document: str, namespace: str, name: str = "reviews") -> str:
    return document.replace(f"metadata: {{name: {name}}}", f"metadata: {{name: {name}, namespace: {namespace}}}")


def test_destination_rule_in_an_unrelated_namespace_does_not_define_the_subset() -> None:
    # Exported everywhere, but neither the route's, the service's nor the root namespace: translation
    # ignores it (as Istio does), so the subset's cluster would have no endpoints.
    entry = _in_namespace(SERVICE_ENTRY, "prod")
    unrelated = _in_namespace(DESTINATION_RULE, "team-x") + "  exportTo: ['*']\n"
    (finding,) = with_code(load_text(entry, unrelated, virtual_service(ROUTE_V1)), "IST0101")
    assert finding.path == "spec.http[0].route[0].destination.subset"
    assert "no DestinationRule for reviews.shop.example.com applies in namespace default" in finding.hint

    for namespace in ("prod", "default", "istio-system"):
        rule = _in_namespace(DESTINATION_RULE, namespace)
        assert with_code(load_text(entry, rule, virtual_service(ROUTE_V1)), "IST0101") == [], namespace


def test_subset_must_be_defined_by_the_rule_translation_uses() -> None:
    # The route's namespace has its own rule for the host (without v1): it wins over the service's.
    entry = _in_namespace(SERVICE_ENTRY, "prod")
    in_prod = _in_namespace(DESTINATION_RULE, "prod")
    local = DESTINATION_RULE.replace("{name: reviews}", "{name: local}").replace(
        "  - {name: v1, labels: {version: v1}}\n", ""
    )
    (finding,) = with_code(load_text(entry, in_prod, local, virtual_service(ROUTE_V1)), "IST0101")
    assert finding.path == "spec.http[0].route[0].destination.subset"
    assert finding.hint == "DestinationRule default/local for reviews.shop.example.com defines subsets: v2"


def test_subset_of_a_workload_selecting_rule_counts_for_the_workloads_it_selects() -> None:
    entry = _in_namespace(SERVICE_ENTRY, "prod")
    only_v1 = _in_namespace(DESTINATION_RULE.replace("  - {name: v2, labels: {version: v2}}\n", ""), "prod")
    selecting = DESTINATION_RULE.replace("{name: reviews}", "{name: frontend}").replace(
        "  subsets:\n", "  workloadSelector: {matchLabels: {app: frontend}}\n  subsets:\n"
    )
    http = "- route:\n  - destination: {host: reviews.shop.example.com, subset: v2}"
    assert with_code(load_text(entry, only_v1, selecting, virtual_service(http)), "IST0101") == []
    (finding,) = with_code(load_text(entry, only_v1, virtual_service(http)), "IST0101")
    assert finding.path == "spec.http[0].route[0].destination.subset"


def test_two_destination_rules_for_one_host_are_merged_like_istio() -> None:
    only_v1 = DESTINATION_RULE.replace("  - {name: v2, labels: {version: v2}}\n", "")
    only_v2 = DESTINATION_RULE.replace("{name: reviews}", "{name: more}").replace(
        "  - {name: v1, labels: {version: v1}}\n", ""
    )
    http = "- route:\n  - destination: {host: reviews.shop.example.com, subset: v2}"
    assert with_code(load_text(SERVICE_ENTRY, only_v1, only_v2, virtual_service(http)), "IST0101") == []
    (finding,) = with_code(load_text(SERVICE_ENTRY, only_v1, virtual_service(http)), "IST0101")
    assert finding.path == "spec.http[0].route[0].destination.subset"


def test_subset_is_checked_for_the_gateway_namespace_too() -> None:
    # A gateway in istio-system first uses the root rules private to it, then the service's rule.
    root = (
        DESTINATION_RULE.replace("{name: reviews}", "{name: mesh, namespace: istio-system}")
        .replace("host: reviews.shop.example.com", "host: '*.example.com'")
        .replace("  - {name: v1, labels: {version: v1}}\n", "")
    )
    bound = virtual_service(ROUTE_V1, extra="  gateways: [istio-system/gw]\n")
    documents = (SERVICE_ENTRY, DESTINATION_RULE, gateway(namespace="istio-system"), bound)
    # Exported everywhere, the mesh-wide root rule does not hide the service's own rule.
    assert with_code(load_text(*documents, root), "IST0101") == []
    (finding,) = with_code(load_text(*documents, root + "  exportTo: ['.']\n"), "IST0101")
    assert finding.path == "spec.http[0].route[0].destination.subset"
    assert "istio-system/mesh" in finding.hint
    assert "gateway proxies in namespace istio-system" in finding.hint


def test_workload_selecting_rule_for_the_host_hides_rules_of_other_namespaces() -> None:
    # Istio picks the proxy namespace's rules for the host; if none selects the workload, no rule applies.
    entry = _in_namespace(SERVICE_ENTRY, "prod")
    in_prod = _in_namespace(DESTINATION_RULE, "prod")
    selecting = (
        DESTINATION_RULE.replace("{name: reviews}", "{name: frontend}")
        .replace("  subsets:\n", "  workloadSelector: {matchLabels: {app: frontend}}\n  subsets:\n")
        .replace("  - {name: v1, labels: {version: v1}}\n", "")
    )
    (finding,) = with_code(load_text(entry, in_prod, selecting, virtual_service(ROUTE_V1)), "IST0101")
    assert finding.path == "spec.http[0].route[0].destination.subset"


@pytest.mark.parametrize(
    ("mirror", "path"),
    [
        pytest.param("mirror: {host: reviews.shop.example.com, subset: SUBSET}", "spec.http[0].mirror", id="mirror"),
        pytest.param(
            "mirrors:\n  - destination: {host: reviews.shop.example.com, subset: SUBSET}",
            "spec.http[0].mirrors[0].destination",
            id="mirrors",
        ),
    ],
)
def test_missing_mirror_subset_is_reported_as_a_mirror_reference(mirror: str, path: str) -> None:
    def documents(subset: str) -> tuple[str, ...]:
        http = ROUTE_V1.strip("\n") + "\n  " + mirror.replace("SUBSET", subset)
        return (SERVICE_ENTRY, DESTINATION_RULE, virtual_service(http))

    assert with_code(load_text(*documents("v2")), "IST0101") == []
    (finding,) = with_code(load_text(*documents("v3")), "IST0101")
    assert finding.severity is Severity.ERROR
    assert finding.message == 'Referenced mirror+subset in destinationrule not found: "reviews.shop.example.com+v3"'
    assert finding.path == f"{path}.subset"
    assert finding.line == line_containing("subset: v3", *documents("v3"))
    assert finding.hint == "DestinationRule default/reviews for reviews.shop.example.com defines subsets: v1, v2"


def test_kubernetes_service_subset_is_found_in_the_namespace_its_name_gives() -> None:
    # No ServiceEntry: reviews.prod.svc.cluster.local may be a Kubernetes Service of namespace prod.
    rule = _in_namespace(DESTINATION_RULE.replace("reviews.shop.example.com", "reviews.prod.svc.cluster.local"), "prod")
    http = "- route:\n  - destination: {host: reviews.prod.svc.cluster.local, subset: v1}"
    assert with_code(load_text(rule, virtual_service(http, hosts="[reviews]")), "IST0101") == []
    elsewhere = rule.replace("namespace: prod", "namespace: team-x")
    (finding,) = with_code(load_text(elsewhere, virtual_service(http, hosts="[reviews]")), "IST0101")
    assert finding.path == "spec.http[0].route[0].destination.subset"


def test_missing_gateway_is_reported_with_a_suggestion() -> None:
    document = virtual_service(
        "- route:\n  - destination: {host: reviews}", hosts="[www.example.com]", extra="  gateways: [gw-typo]\n"
    )
    (finding,) = with_code(load_text(gateway("gw-typ0"), document), "IST0101")
    assert finding.message == 'Referenced gateway not found: "gw-typo"'
    assert finding.path == "spec.gateways[0]"
    assert finding.hint == "did you mean 'gw-typ0'?"


def test_gateway_in_another_namespace_is_found_by_namespace_slash_name() -> None:
    document = virtual_service(
        "- route:\n  - destination: {host: reviews}",
        hosts="[www.example.com]",
        extra="  gateways: [istio-system/gw]\n",
    )
    assert with_code(load_text(gateway(namespace="istio-system"), document), "IST0101") == []


def test_unknown_external_host_is_reported_but_cluster_local_names_are_not() -> None:
    http = """
    - route:
      - destination: {host: ratings}
        weight: 50
      - destination: {host: api.unknown.example.org}
        weight: 50
      mirror: {host: shadow.unknown.example.org}
    """
    findings = with_code(load_text(virtual_service(http, hosts="[reviews]")), "IST0101")
    assert [(f.message, f.path) for f in findings] == [
        ('Referenced host not found: "api.unknown.example.org"', "spec.http[0].route[1].destination.host"),
        ('Referenced mirror host not found: "shadow.unknown.example.org"', "spec.http[0].mirror.host"),
    ]


def test_service_entry_not_exported_to_the_namespace_does_not_declare_the_host() -> None:
    entry = SERVICE_ENTRY.replace("metadata: {name: reviews}", "metadata: {name: reviews, namespace: other}")
    entry += "  exportTo: ['.']\n"
    http = "- route:\n  - destination: {host: reviews.shop.example.com}"
    findings = with_code(load_text(entry, virtual_service(http)), "IST0101")
    assert [f.message for f in findings] == ['Referenced host not found: "reviews.shop.example.com"']


def test_wildcard_service_entry_declares_the_hosts_under_it() -> None:
    entry = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: wildcard}
    spec:
      hosts: ["*.example.org"]
      ports: [{number: 443, name: tls, protocol: TLS}]
    """
    http = "- route:\n  - destination: {host: api.example.org}"
    assert with_code(load_text(entry, virtual_service(http, hosts="[api.example.org]")), "IST0101") == []


def test_destination_port_the_service_entry_lacks_is_reported() -> None:
    http = "- route:\n  - destination: {host: reviews.shop.example.com, port: {number: 8080}}"
    (finding,) = with_code(load_text(SERVICE_ENTRY, virtual_service(http)), "IST0101")
    assert finding.message == 'Referenced host:port not found: "reviews.shop.example.com:8080"'
    assert finding.hint == "reviews.shop.example.com declares ports 9080"


# IST0109 -------------------------------------------------------------------------------------------


def test_two_mesh_virtual_services_for_one_host_conflict() -> None:
    route = "- route:\n  - destination: {host: reviews}"
    first = virtual_service(route, name="reviews-a", hosts="[reviews]")
    second = virtual_service(route, name="reviews-b", hosts="[reviews.default.svc.cluster.local]")
    findings = with_code(load_text(first, second), "IST0109")
    assert [f.name for f in findings] == ["reviews-a", "reviews-b"]
    assert all(f.severity is Severity.ERROR and f.path == "metadata.name" for f in findings)
    assert findings[0].message.startswith(
        "The VirtualServices default/reviews-a,default/reviews-b associated with mesh gateway define the same host "
        "reviews.default.svc.cluster.local which can lead to undefined behavior."
    )


def test_same_host_in_different_namespaces_or_on_gateways_does_not_conflict() -> None:
    route = "- route:\n  - destination: {host: reviews}"
    first = virtual_service(route, name="a", hosts="[reviews]")
    other_namespace = virtual_service(route, name="b", hosts="[reviews]").replace(
        "{name: b}", "{name: b, namespace: x}"
    )
    on_gateway = virtual_service(
        route, name="c", hosts="[reviews.default.svc.cluster.local]", extra="  gateways: [gw]\n"
    )
    result = load_text(gateway(hosts='["*"]'), first, other_namespace, on_gateway)
    assert with_code(result, "IST0109") == []


# IST0112 -------------------------------------------------------------------------------------------

MULTI_PORT = SERVICE_ENTRY.replace(
    "  - {number: 9080, name: http, protocol: HTTP}\n",
    "  - {number: 9080, name: http, protocol: HTTP}\n  - {number: 9443, name: https, protocol: HTTPS}\n",
)


def test_destination_on_a_multi_port_service_needs_a_port() -> None:
    http = "- route:\n  - destination: {host: reviews.shop.example.com}"
    (finding,) = with_code(load_text(MULTI_PORT, virtual_service(http)), "IST0112")
    assert finding.severity is Severity.ERROR
    assert finding.message == (
        'This VirtualService routes to a service "reviews.shop.example.com" that exposes multiple ports '
        "[9080 9443]. Specifying a port in the destination is required to disambiguate."
    )
    assert finding.path == "spec.http[0].route[0].destination.host"


def test_destination_with_a_port_on_a_multi_port_service_is_fine() -> None:
    http = "- route:\n  - destination: {host: reviews.shop.example.com, port: {number: 9443}}"
    assert with_code(load_text(MULTI_PORT, virtual_service(http)), "IST0112") == []


# IST0130 / IST0131 ---------------------------------------------------------------------------------


def test_rule_after_a_catch_all_is_unreachable() -> None:
    http = """
    - route:
      - destination: {host: reviews}
    - match: [{uri: {prefix: /api}}]
      route:
      - destination: {host: ratings}
    """
    (finding,) = with_code(load_text(virtual_service(http, hosts="[reviews]")), "IST0130")
    assert finding.severity is Severity.WARNING
    assert finding.message == "VirtualService rule #1 not used (route without matches defined before)."
    assert finding.path == "spec.http[1]"


def test_rule_whose_matches_all_repeat_earlier_ones_is_unreachable_and_each_match_ineffective() -> None:
    http = """
    - name: first
      match: [{uri: {exact: /a}}, {uri: {exact: /b}}]
      route:
      - destination: {host: reviews}
    - name: second
      match: [{name: again, uri: {exact: /b}}]
      route:
      - destination: {host: ratings}
    - route:
      - destination: {host: reviews}
    """
    result = load_text(virtual_service(http, hosts="[reviews]"))
    (unreachable,) = with_code(result, "IST0130")
    assert unreachable.message == 'VirtualService rule "second" not used (all matches used by prior rules).'
    (ineffective,) = with_code(result, "IST0131")
    assert ineffective.severity is Severity.INFO
    assert ineffective.message == (
        'VirtualService rule "second" match "again" is not used (duplicate/overlapping match in rule "first").'
    )
    assert ineffective.path == "spec.http[1].match[0]"


def test_prefix_covered_by_an_earlier_shorter_prefix_is_ineffective() -> None:
    http = """
    - match: [{uri: {prefix: /api}}]
      route:
      - destination: {host: reviews}
    - match: [{uri: {prefix: /api/v2}}]
      route:
      - destination: {host: ratings}
    """
    (finding,) = with_code(load_text(virtual_service(http, hosts="[reviews]")), "IST0131")
    assert finding.message == (
        "VirtualService rule #1 match #0 of prefix /api/v2 is not used "
        "(duplicate/overlapping match in rule #0 of prefix /api on #0)."
    )


def test_specific_matches_before_the_catch_all_are_all_reachable() -> None:
    http = """
    - match: [{uri: {prefix: /api/v2}}]
      route:
      - destination: {host: ratings}
    - match: [{uri: {prefix: /api}, headers: {x-user: {exact: jason}}}]
      route:
      - destination: {host: ratings}
    - route:
      - destination: {host: reviews}
    """
    result = load_text(virtual_service(http, hosts="[reviews]"))
    assert with_code(result, "IST0130") == []
    assert with_code(result, "IST0131") == []


# IST0132 -------------------------------------------------------------------------------------------


def test_virtual_service_host_not_exposed_by_its_gateway_is_reported() -> None:
    document = virtual_service(
        "- route:\n  - destination: {host: reviews}", hosts="[shop.other.org]", extra="  gateways: [gw]\n"
    )
    (finding,) = with_code(load_text(gateway(), document), "IST0132")
    assert finding.severity is Severity.WARNING
    assert finding.message == (
        "one or more host [shop.other.org] defined in VirtualService default/reviews not found in Gateway default/gw."
    )
    assert "*.example.com" in finding.hint


def test_gateway_host_for_another_namespace_does_not_expose_the_host() -> None:
    document = virtual_service(
        "- route:\n  - destination: {host: reviews}", hosts="[shop.example.com]", extra="  gateways: [gw]\n"
    )
    assert with_code(load_text(gateway(hosts='["other/*.example.com"]'), document), "IST0132") != []
    assert with_code(load_text(gateway(hosts='["./*.example.com"]'), document), "IST0132") == []


# IST0145 -------------------------------------------------------------------------------------------


def test_gateways_with_same_selector_port_and_host_conflict() -> None:
    result = load_text(gateway("a", hosts="[shop.example.com]"), gateway("b", hosts='["*.example.com"]'))
    findings = with_code(result, "IST0145")
    assert [f.name for f in findings] == ["a", "b"]
    assert findings[0].message == (
        "Conflict with gateways default/b (workload selector istio=ingressgateway, port 80, hosts shop.example.com)."
    )
    assert findings[0].path == "spec.servers[0].hosts"


def test_gateways_on_different_ports_or_hosts_do_not_conflict() -> None:
    result = load_text(
        gateway("a", hosts="[shop.example.com]"),
        gateway("b", hosts="[shop.example.com]", port=8080),
        gateway("c", hosts="[api.example.org]"),
    )
    assert with_code(result, "IST0145") == []


# IST0173 -------------------------------------------------------------------------------------------


def test_subset_selecting_no_static_endpoint_is_reported() -> None:
    rule = DESTINATION_RULE + "  - {name: v3, labels: {version: v3}}\n"
    (finding,) = with_code(load_text(SERVICE_ENTRY, rule), "IST0173")
    assert finding.severity is Severity.ERROR
    assert finding.message == (
        "The Subset v3 defined in the DestinationRule does not select any pods. "
        "Which may lead to 503 UH (NoHealthyUpstream)."
    )
    assert finding.path == "spec.subsets[2].labels"


def test_subsets_are_not_checked_when_endpoints_are_unknown() -> None:
    entry = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: reviews}
    spec:
      hosts: [reviews.shop.example.com]
      resolution: DNS
      ports: [{number: 9080, name: http, protocol: HTTP}]
    """
    rule = DESTINATION_RULE + "  - {name: v3, labels: {version: v3}}\n"
    assert with_code(load_text(entry, rule), "IST0173") == []


# IST0174 -------------------------------------------------------------------------------------------


def test_destination_rule_for_an_unknown_external_host_is_reported() -> None:
    (finding,) = with_code(load_text(DESTINATION_RULE), "IST0174")
    assert finding.severity is Severity.WARNING
    assert finding.message == (
        "The host reviews.shop.example.com defined in the DestinationRule does not match any services in the mesh."
    )
    assert finding.path == "spec.host"


def test_destination_rule_for_a_possible_kubernetes_service_is_not_reported() -> None:
    rule = DESTINATION_RULE.replace("host: reviews.shop.example.com", "host: reviews")
    assert with_code(load_text(rule), "IST0174") == []
