"""Per-resource rules (IST0106) in context: several fields together, hints, and the function itself.

Each rule on both sides of its boundary is in test_validate_rules_both_sides.py.
"""

from __future__ import annotations

from validate_helpers import GATEWAY, load_text, server, virtual_service, with_code

from reconciler.validate.findings import Severity
from reconciler.validate.rules import check_resource
from reconciler.validate.rules.checker import wildcard_domain_error


def schema_paths(*documents: str) -> list[str]:
    return [finding.path for finding in with_code(load_text(*documents), "IST0106")]


def schema_messages(*documents: str) -> list[str]:
    return [finding.message for finding in with_code(load_text(*documents), "IST0106")]


ROUTE = """
- route:
  - destination: {host: reviews}
"""

# VirtualService ------------------------------------------------------------------------------------


def test_a_simple_route_has_no_rule_findings() -> None:
    assert schema_paths(virtual_service(ROUTE)) == []


def test_weights_are_relative_and_need_not_sum_to_100() -> None:
    http = """
    - route:
      - {destination: {host: reviews}, weight: 1}
      - {destination: {host: ratings}, weight: 3}
    """
    assert schema_paths(virtual_service(http)) == []


def test_total_weight_zero_across_destinations_is_an_error() -> None:
    http = """
    - route:
      - {destination: {host: reviews}, weight: 0}
      - {destination: {host: ratings}, weight: 0}
    """
    result = load_text(virtual_service(http))
    (finding,) = with_code(result, "IST0106")
    assert finding.severity is Severity.ERROR
    assert finding.path == "spec.http[0].route"
    assert finding.message == "total destination weight = 0"
    assert finding.line == 7
    assert "relative" in finding.hint


def test_a_single_destination_without_weight_is_fine() -> None:
    assert schema_paths(virtual_service("- route:\n  - {destination: {host: reviews}, weight: 0}")) == []


def test_an_http_route_needs_route_redirect_or_direct_response() -> None:
    result = load_text(virtual_service("- name: nothing\n  timeout: 1s"))
    (finding,) = with_code(result, "IST0106")
    assert finding.path == "spec.http[0]"
    assert finding.message == "HTTP route, redirect or directResponse is required"


def test_a_redirect_alone_is_a_complete_route() -> None:
    assert schema_paths(virtual_service("- redirect: {uri: /v2}")) == []


def test_redirect_with_fault_is_an_error() -> None:
    http = "- redirect: {uri: /v2}\n  fault: {abort: {httpStatus: 500}}"
    assert "HTTP route cannot contain both fault and redirect" in schema_messages(virtual_service(http))


def test_mesh_bound_virtual_service_cannot_use_the_star_host() -> None:
    result = load_text(virtual_service(ROUTE, hosts='["*"]'))
    (finding,) = with_code(result, "IST0106")
    assert finding.path == "spec.hosts[0]"
    assert "mesh gateway" in finding.message


def test_gateway_bound_virtual_service_may_use_the_star_host() -> None:
    gateway = GATEWAY + server("{number: 80, name: http, protocol: HTTP}")
    document = virtual_service(ROUTE, hosts='["*"]', extra="  gateways: [gw]\n")
    assert schema_paths(gateway, document) == []


def test_virtual_service_hosts_are_required() -> None:
    result = load_text(virtual_service(ROUTE, hosts="[]"))
    (finding,) = with_code(result, "IST0106")
    assert finding.path == "spec.hosts"
    assert "delegate" in finding.hint


def test_overlapping_hosts_in_one_virtual_service_are_duplicates() -> None:
    paths = schema_paths(virtual_service(ROUTE, hosts="[a.example.com, '*.example.com']"))
    assert paths == ["spec.hosts[1]"]


def test_invalid_host_names_are_rejected() -> None:
    assert schema_paths(virtual_service(ROUTE, hosts="[bad_host.example.com]")) == ["spec.hosts[0]"]


def test_mirror_and_mirrors_cannot_both_be_set() -> None:
    http = """
    - route:
      - destination: {host: reviews}
      mirror: {host: shadow}
      mirrors:
      - destination: {host: shadow2}
    """
    assert "HTTP route cannot contain both mirror and mirrors" in schema_messages(virtual_service(http))


def test_fault_abort_needs_http_status() -> None:
    http = """
    - fault: {abort: {percentage: {value: 10}}}
      route:
      - destination: {host: reviews}
    """
    result = load_text(virtual_service(http))
    (finding,) = with_code(result, "IST0106")
    assert (finding.path, finding.message) == ("spec.http[0].fault.abort", "fault abort needs httpStatus")


def test_fault_delay_needs_fixed_delay() -> None:
    http = """
    - fault: {delay: {percentage: {value: 10}}}
      route:
      - destination: {host: reviews}
    """
    assert schema_paths(virtual_service(http)) == ["spec.http[0].fault.delay"]


def test_fault_delay_with_fixed_delay_is_valid() -> None:
    http = """
    - fault: {delay: {fixedDelay: 7s, percentage: {value: 100}}}
      route:
      - destination: {host: reviews}
    """
    assert schema_paths(virtual_service(http)) == []


def test_tiny_non_zero_percentages_are_rejected() -> None:
    http = """
    - fault: {delay: {fixedDelay: 1s, percentage: {value: 0.00001}}}
      route:
      - destination: {host: reviews}
    """
    assert schema_paths(virtual_service(http)) == ["spec.http[0].fault.delay.percentage.value"]


def test_retry_on_accepts_envoy_conditions_and_status_codes() -> None:
    http = """
    - route:
      - destination: {host: reviews}
      retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure,503,unavailable"}
    """
    assert schema_paths(virtual_service(http)) == []


def test_retry_on_rejects_unknown_conditions_and_hints_at_spaces() -> None:
    http = """
    - route:
      - destination: {host: reviews}
      retries: {attempts: 3, retryOn: "5xx, reset,bogus"}
    """
    findings = with_code(load_text(virtual_service(http)), "IST0106")
    assert [f.message for f in findings] == [
        "' reset' is not a valid retryOn policy",
        "'bogus' is not a valid retryOn policy",
    ]
    assert findings[0].hint == "remove the spaces around commas"
    assert {f.path for f in findings} == {"spec.http[0].retries.retryOn"}


def test_retry_settings_with_zero_attempts_are_an_error() -> None:
    http = """
    - route:
      - destination: {host: reviews}
      retries: {attempts: 0, perTryTimeout: 2s}
    """
    assert schema_paths(virtual_service(http)) == ["spec.http[0].retries.attempts"]


def test_destination_host_star_is_invalid() -> None:
    assert schema_paths(virtual_service('- route:\n  - destination: {host: "*"}')) == [
        "spec.http[0].route[0].destination.host"
    ]


def test_setting_pseudo_headers_is_rejected() -> None:
    http = """
    - route:
      - destination: {host: reviews}
      headers:
        request:
          set: {":path": /x, x-ok: "1"}
        response:
          remove: [host]
    """
    assert schema_paths(virtual_service(http)) == [
        'spec.http[0].headers.request.set[":path"]',
        "spec.http[0].headers.response.remove[0]",
    ]


def test_authority_rewritten_twice_is_an_error() -> None:
    http = """
    - route:
      - destination: {host: reviews}
      rewrite: {authority: a.example.com}
      headers:
        request:
          set: {":authority": b.example.com}
    """
    messages = schema_messages(virtual_service(http))
    assert any("authority header cannot be set multiple times" in m for m in messages)


def test_tcp_routes_need_a_destination() -> None:
    document = virtual_service(ROUTE) + "  tcp:\n  - match: [{port: 3306}]\n"
    assert schema_paths(document) == ["spec.tcp[0]"]


def test_gateway_references_must_be_names() -> None:
    document = virtual_service(ROUTE, hosts="[a.example.com]", extra="  gateways: [istio-system/Bad_Name]\n")
    assert "spec.gateways[0]" in schema_paths(document)


# DestinationRule -----------------------------------------------------------------------------------

DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
"""


def test_destination_rule_subsets_are_valid() -> None:
    assert schema_paths(DR + "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2}\n") == []


def test_subset_names_must_be_unique() -> None:
    result = load_text(
        DR + "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n"
    )
    (finding,) = with_code(result, "IST0106")
    assert finding.path == "spec.subsets[1].name"
    assert finding.message == "duplicate subset names: v1"
    assert finding.line == 8
    assert "spec.subsets[0]" in finding.hint


def test_subset_names_must_be_dns_labels() -> None:
    assert schema_paths(DR + "  subsets:\n  - {name: v1.0}\n") == ["spec.subsets[0].name"]


def test_subset_label_values_must_be_kubernetes_label_values() -> None:
    assert schema_paths(DR + "  subsets:\n  - {name: v1, labels: {version: 'v 1'}}\n") == [
        "spec.subsets[0].labels.version"
    ]


def test_an_empty_traffic_policy_is_an_error() -> None:
    assert schema_paths(DR + "  trafficPolicy: {}\n") == ["spec.trafficPolicy"]


def test_outlier_ejection_percent_is_at_most_100() -> None:
    document = DR + "  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 150, interval: 10s}\n"
    assert schema_paths(document) == ["spec.trafficPolicy.outlierDetection.maxEjectionPercent"]


def test_mutual_tls_to_upstream_needs_a_client_certificate() -> None:
    document = DR + "  trafficPolicy:\n    tls: {mode: MUTUAL, privateKey: /k.pem}\n"
    assert schema_messages(document) == ["client certificate required for mutual tls"]


def test_port_level_settings_need_a_port() -> None:
    document = DR + "  trafficPolicy:\n    portLevelSettings:\n    - loadBalancer: {simple: RANDOM}\n"
    assert schema_paths(document) == ["spec.trafficPolicy.portLevelSettings[0]"]


# Gateway -------------------------------------------------------------------------------------------


def test_gateway_servers_are_valid() -> None:
    document = GATEWAY + server("{number: 80, name: http, protocol: HTTP}", tls="{httpsRedirect: true}")
    document += server("{number: 443, name: https, protocol: HTTPS}", tls="{mode: SIMPLE, credentialName: cert}")
    assert schema_paths(document) == []


def test_gateway_port_protocol_must_be_known() -> None:
    result = load_text(GATEWAY + server("{number: 80, name: http, protocol: HTTPX}"))
    (finding,) = with_code(result, "IST0106")
    assert finding.path == "spec.servers[0].port.protocol"
    assert finding.line == 7
    assert "HTTP, HTTPS, GRPC" in finding.hint


def test_https_server_needs_tls_settings() -> None:
    assert schema_messages(GATEWAY + server("{number: 443, name: https, protocol: HTTPS}")) == [
        "server must have TLS settings for HTTPS/TLS protocols"
    ]


def test_plain_http_server_cannot_carry_certificates() -> None:
    document = GATEWAY + server("{number: 80, name: http, protocol: HTTP}", tls="{mode: SIMPLE, credentialName: c}")
    assert schema_paths(document) == ["spec.servers[0].tls"]


def test_simple_tls_needs_a_certificate_source() -> None:
    document = GATEWAY + server("{number: 443, name: https, protocol: HTTPS}", tls="{mode: SIMPLE}")
    assert sorted(schema_messages(document)) == [
        "SIMPLE TLS requires a private key",
        "SIMPLE TLS requires a server certificate",
    ]


def test_server_hosts_must_be_non_empty() -> None:
    assert schema_paths(GATEWAY + server("{number: 80, name: http, protocol: HTTP}", hosts="[]")) == [
        "spec.servers[0].hosts"
    ]


def test_server_hosts_in_namespace_form_must_be_fqdns() -> None:
    document = GATEWAY + server("{number: 80, name: http, protocol: HTTP}", hosts="[shop/web, ./a.example.com, '*/*']")
    result = load_text(document)
    (finding,) = with_code(result, "IST0106")
    assert (finding.path, finding.message) == ("spec.servers[0].hosts[0]", "short names (non FQDN) are not allowed")


def test_server_port_names_must_be_unique() -> None:
    document = GATEWAY + server("{number: 80, name: web, protocol: HTTP}")
    document += server("{number: 8080, name: web, protocol: HTTP}")
    assert schema_paths(document) == ["spec.servers[1].port.name"]


def test_a_gateway_needs_servers() -> None:
    assert schema_paths(GATEWAY.replace("  servers:\n", "  servers: []\n")) == ["spec.servers"]


# ServiceEntry --------------------------------------------------------------------------------------

SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
"""
HTTP_80 = "[{number: 80, name: http, protocol: HTTP}]"


def service_entry(
    *,
    hosts: str = "[api.example.com]",
    resolution: str | None = "DNS",
    ports: str = HTTP_80,
    endpoints: str | None = None,
) -> str:
    """ServiceEntry ``api`` with these spec fields (YAML flow text); ``None`` leaves a field out."""
    spec = f"  hosts: {hosts}\n"
    if resolution is not None:
        spec += f"  resolution: {resolution}\n"
    spec += f"  ports: {ports}\n"
    if endpoints is not None:
        spec += f"  endpoints: {endpoints}\n"
    return SE + spec


def test_a_dns_service_entry_is_valid() -> None:
    document = service_entry(ports="[{number: 443, name: https, protocol: TLS}]")
    assert schema_paths(document) == []


def test_service_entry_hosts_are_required() -> None:
    assert schema_paths(service_entry(hosts="[]", resolution=None)) == ["spec.hosts"]


def test_service_entry_port_numbers_and_names_must_be_unique() -> None:
    document = service_entry(
        ports="[{number: 80, name: http, protocol: HTTP}, {number: 80, name: http, protocol: HTTP}]"
    )
    assert sorted(schema_paths(document)) == ["spec.ports[1].name", "spec.ports[1].number"]


def test_service_entry_port_protocol_must_be_known() -> None:
    document = service_entry(ports="[{number: 80, name: http, protocol: HTTQ}]")
    assert schema_paths(document) == ["spec.ports[0].protocol"]


def test_static_resolution_requires_endpoints() -> None:
    document = service_entry(resolution="STATIC")
    assert schema_paths(document) == ["spec.resolution"]


def test_static_endpoints_must_be_ip_addresses() -> None:
    document = service_entry(resolution="STATIC", endpoints="[{address: 10.0.0.1}, {address: db.example.com}]")
    result = load_text(document)
    (finding,) = with_code(result, "IST0106")
    assert finding.path == "spec.endpoints[1].address"
    assert "resolution: DNS" in finding.hint


def test_wildcard_host_with_dns_resolution_and_no_endpoints_is_an_error() -> None:
    document = service_entry(hosts="['*.example.com']", ports="[{number: 443, name: tls, protocol: TLS}]")
    assert schema_paths(document) == ["spec.hosts[0]"]


def test_endpoints_with_resolution_none_are_an_error() -> None:
    document = service_entry(resolution=None, endpoints="[{address: 10.0.0.1}]")
    assert schema_paths(document) == ["spec.endpoints"]


def test_endpoint_ports_must_name_service_ports() -> None:
    document = service_entry(resolution="STATIC", endpoints="[{address: 10.0.0.1, ports: {htp: 8080}}]")
    assert schema_paths(document) == ["spec.endpoints[0].ports.htp"]


def test_several_hosts_on_a_tcp_port_are_indistinguishable() -> None:
    document = service_entry(hosts="[a.example.com, b.example.com]", ports="[{number: 5432, name: pg, protocol: TCP}]")
    assert schema_paths(document) == ["spec.ports[0].protocol"]


# The function itself -------------------------------------------------------------------------------


def test_check_resource_fills_in_subject_and_line() -> None:
    result = load_text(virtual_service("- name: empty\n  timeout: 1s"))
    (resource,) = result.config.virtual_services
    (finding,) = check_resource(resource)
    assert (finding.kind, finding.namespace, finding.name, finding.file) == (
        "VirtualService",
        "default",
        "reviews",
        "mesh.yaml",
    )
    assert finding.line == 7


def test_wildcard_domain_rules_follow_istio() -> None:
    assert wildcard_domain_error("*.example.com") == ""
    assert wildcard_domain_error("reviews") == ""
    assert wildcard_domain_error("a.*.example.com") != ""
    assert wildcard_domain_error("example.123") != ""
    assert wildcard_domain_error("api.example.com.") == ""
    assert wildcard_domain_error("*.example.com", wildcard=False) != ""
