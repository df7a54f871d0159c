"""The sidecar role: one outbound listener, a virtual host per service port, VirtualServices for the mesh."""

from __future__ import annotations

from translate_support import (
    REVIEWS,
    SIDECAR,
    connection_manager,
    gateway,
    listeners,
    load,
    not_translated,
    render,
    route_config,
    service_entry,
    virtual_host,
    virtual_service,
)

from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole, translate

EDGE = gateway("edge")
JASON = """\
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
"""


def test_sidecar_gets_one_outbound_http_listener_on_its_port_fetching_routes_over_rds() -> None:
    result = render(REVIEWS, ProxyIdentity(node_id="s", outbound_port=15123))

    (listener,) = listeners(result.snapshot).values()
    assert listener.name == "0.0.0.0_15123"
    assert (listener.address.socket_address.address, listener.address.socket_address.port_value) == ("0.0.0.0", 15123)
    manager = connection_manager(listener)
    assert manager.rds.route_config_name == "15123"
    assert manager.rds.config_source.HasField("ads")
    assert route_config(result.snapshot, "15123").virtual_hosts


def test_virtual_host_domains_cover_fqdn_short_name_namespace_and_port_forms() -> None:
    result = render(REVIEWS)

    vhost = virtual_host(result.snapshot, "reviews.default.svc.cluster.local:9080")
    assert list(vhost.domains) == [
        "reviews.default.svc.cluster.local",
        "reviews.default.svc.cluster.local:9080",
        "reviews",
        "reviews:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
        "reviews.default",
        "reviews.default:9080",
    ]


def test_short_name_is_only_offered_to_proxies_in_the_service_namespace() -> None:
    config = load(service_entry("reviews", namespace="shop"))

    result = translate(config, ProxyIdentity(node_id="s", namespace="other"))

    domains = set(virtual_host(result.snapshot, "reviews.shop.svc.cluster.local:9080").domains)
    assert "reviews" not in domains
    assert {"reviews.shop", "reviews.shop:9080", "reviews.shop.svc"} <= domains


def test_bare_host_names_go_to_port_80_of_a_multi_port_service() -> None:
    text = service_entry("web.example.com", port=8080).replace(
        "  - {number: 8080, name: http, protocol: HTTP}",
        "  - {number: 8080, name: http-alt, protocol: HTTP}\n  - {number: 80, name: http, protocol: HTTP}",
    )
    result = render(text)

    on_80 = virtual_host(result.snapshot, "web.example.com:80")
    on_8080 = virtual_host(result.snapshot, "web.example.com:8080")
    assert list(on_80.domains) == ["web.example.com", "web.example.com:80"]
    assert list(on_8080.domains) == ["web.example.com:8080"]


def test_service_without_virtual_service_gets_a_default_route_to_its_default_cluster() -> None:
    result = render(REVIEWS)

    (route,) = virtual_host(result.snapshot, "reviews.default.svc.cluster.local:9080").routes
    assert route.name == "default"
    assert route.match.prefix == "/"
    assert route.route.cluster == "outbound|9080||reviews.default.svc.cluster.local"
    assert route.route.timeout.ToNanoseconds() == 0
    assert route.route.retry_policy.num_retries.value == 2


def test_mesh_virtual_service_routes_its_host() -> None:
    result = render(REVIEWS + virtual_service("reviews", JASON))

    jason, rest = virtual_host(result.snapshot, "reviews.default.svc.cluster.local:9080").routes
    assert jason.route.cluster == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert rest.route.cluster == "outbound|9080|v1|reviews.default.svc.cluster.local"


def test_gateway_bound_virtual_service_does_not_apply_to_sidecars() -> None:
    result = render(EDGE + REVIEWS + virtual_service("reviews", "  gateways: [edge]\n" + JASON))

    (route,) = virtual_host(result.snapshot, "reviews.default.svc.cluster.local:9080").routes
    assert route.name == "default"


def test_virtual_service_listing_mesh_applies_to_sidecars_too() -> None:
    result = render(EDGE + REVIEWS + virtual_service("reviews", "  gateways: [edge, mesh]\n" + JASON))

    routes = virtual_host(result.snapshot, "reviews.default.svc.cluster.local:9080").routes
    assert len(routes) == 2


def test_export_to_hides_a_virtual_service_from_other_namespaces() -> None:
    config = load(REVIEWS + virtual_service("reviews", '  exportTo: ["."]\n' + JASON))

    same = translate(config, ProxyIdentity(node_id="a", namespace="default"))
    other = translate(config, ProxyIdentity(node_id="b", namespace="other"))

    assert len(virtual_host(same.snapshot, "reviews.default.svc.cluster.local:9080").routes) == 2
    (route,) = virtual_host(other.snapshot, "reviews.default.svc.cluster.local:9080").routes
    assert route.name == "default"


def test_export_to_hides_a_service_entry_from_other_namespaces() -> None:
    config = load(service_entry("reviews", extra='  exportTo: ["."]\n'))

    other = translate(config, ProxyIdentity(node_id="b", namespace="other"))

    assert not route_config(other.snapshot, "15001").virtual_hosts
    assert not other.snapshot.resources("type.googleapis.com/envoy.config.cluster.v3.Cluster")


def test_host_outside_the_registry_is_served_on_port_80_like_istio() -> None:
    result = render(
        service_entry("ratings")
        + virtual_service(
            "bookinfo", "  http:\n  - route:\n    - destination: {host: ratings}\n", hosts="[bookinfo.example.com]"
        )
    )

    vhost = virtual_host(result.snapshot, "bookinfo.example.com:80")
    assert list(vhost.domains) == ["bookinfo.example.com", "bookinfo.example.com:80"]
    assert vhost.routes[0].route.cluster == "outbound|9080||ratings.default.svc.cluster.local"


def test_wildcard_virtual_service_routes_the_services_it_matches() -> None:
    text = (
        service_entry("a.shop.example", name="a")
        + service_entry("b.shop.example", name="b")
        + virtual_service(
            "shop",
            "  http:\n  - route:\n    - destination: {host: a.shop.example}\n",
            hosts='["*.shop.example"]',
        )
    )
    result = render(text)

    for host in ("a.shop.example", "b.shop.example"):
        (route,) = virtual_host(result.snapshot, f"{host}:9080").routes
        assert route.route.cluster == "outbound|9080||a.shop.example"
    # The wildcard matched services, so it gets no virtual host of its own.
    names = [vhost.name for vhost in route_config(result.snapshot, "15001").virtual_hosts]
    assert names == ["a.shop.example:9080", "b.shop.example:9080"]


def test_first_virtual_service_for_a_host_wins_and_every_domain_is_offered_once() -> None:
    first = virtual_service("first", "  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n")
    second = virtual_service("second", "  http:\n  - route:\n    - destination: {host: reviews, subset: v2}\n")
    result = translate(_load_allowing_conflicts(REVIEWS + first + second), SIDECAR)

    (route,) = virtual_host(result.snapshot, "reviews.default.svc.cluster.local:9080").routes
    assert route.route.cluster == "outbound|9080|v1|reviews.default.svc.cluster.local"
    domains = [d for vhost in route_config(result.snapshot, "15001").virtual_hosts for d in vhost.domains]
    assert len(domains) == len(set(domains))


def test_explicit_sidecar_role_ignores_gateway_selectors() -> None:
    proxy = ProxyIdentity(node_id="s", labels={"istio": "ingressgateway"}, role=ProxyRole.SIDECAR)

    result = render(EDGE + REVIEWS, proxy)

    assert result.role is ProxyRole.SIDECAR
    assert list(listeners(result.snapshot)) == ["0.0.0.0_15001"]


def test_tcp_route_surfaces_not_translated_finding() -> None:
    text = service_entry("db.internal", port=5432, protocol="TCP", name="db") + virtual_service(
        "db",
        "  tcp:\n  - route:\n    - destination: {host: db.internal, port: {number: 5432}}\n",
        hosts="[db.internal]",
    )
    result = render(text)

    paths = {(f.kind, f.path) for f in not_translated(result.findings)}
    assert ("VirtualService", "spec.tcp[0]") in paths
    # The TCP port itself is not routed either, and says so.
    assert ("ServiceEntry", "spec.ports[0]") in paths


def test_tls_route_surfaces_not_translated_finding() -> None:
    text = service_entry("api.example.com", port=443, protocol="TLS", name="api", resolution="DNS", endpoints=())
    text += virtual_service(
        "api",
        "  tls:\n  - match: [{sniHosts: [api.example.com]}]\n"
        "    route:\n    - destination: {host: api.example.com, port: {number: 443}}\n",
        hosts="[api.example.com]",
    )
    result = render(text)

    (tls_route,) = [f for f in not_translated(result.findings) if f.kind == "VirtualService"]
    assert tls_route.path == "spec.tls[0]"
    assert tls_route.line > 0


def _load_allowing_conflicts(text: str) -> MeshConfig:
    """Load even if analyzers flag the two VirtualServices for one host (IST0109)."""
    return load_files({"mesh.yaml": text}).config
