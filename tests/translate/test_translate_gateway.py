"""The gateway role: listeners per server port, routes from the VirtualServices bound to the Gateway."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2
from translate_support import (
    GATEWAY,
    connection_manager,
    listeners,
    load,
    load_fixture,
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
from reconciler.translate.gateway import intersect_hosts


def gateway(
    servers: str, *, name: str = "edge", namespace: str = "default", selector: str = "istio: ingressgateway"
) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{{selector}}}
  servers:
{servers}---
"""


def http_server(port: int, *hosts: str) -> str:
    listed = ", ".join(f'"{host}"' for host in hosts)
    return f"  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    hosts: [{listed}]\n"


PRODUCTPAGE = service_entry("productpage", endpoints=(("10.0.4.1", "v1"),))


def to_productpage(
    name: str, hosts: str, *, gateways: str = "[edge]", namespace: str = "default", path: str = "/"
) -> str:
    body = (
        f"  gateways: {gateways}\n  http:\n  - match: [{{uri: {{prefix: {path}}}}}]\n"
        "    route:\n    - destination: {host: productpage.default.svc.cluster.local}\n"
    )
    return virtual_service(name, body, hosts=hosts, namespace=namespace)


def test_gateway_proxy_gets_listener_per_server_port() -> None:
    result = translate(load_fixture("gateway-two-ports.yaml"), GATEWAY)

    assert result.role is ProxyRole.GATEWAY
    assert result.gateways == ("default/edge",)
    assert sorted(listeners(result.snapshot)) == ["0.0.0.0_8080", "0.0.0.0_8081"]
    for port in (8080, 8081):
        listener = listeners(result.snapshot)[f"0.0.0.0_{port}"]
        assert listener.address.socket_address.port_value == port
        manager = connection_manager(listener)
        assert manager.rds.route_config_name == f"http.{port}"
        assert manager.use_remote_address.value is True
        assert [f.name for f in manager.http_filters] == ["envoy.filters.http.fault", "envoy.filters.http.router"]


def test_gateway_routes_come_from_the_virtual_services_bound_to_it() -> None:
    result = translate(load_fixture("gateway-two-ports.yaml"), GATEWAY)

    shop = virtual_host(result.snapshot, "shop.example.com:8080", route_name="http.8080")
    assert list(shop.domains) == ["shop.example.com"]
    assert [r.route.cluster for r in shop.routes] == ["outbound|9080||productpage.default.svc.cluster.local"] * 3
    admin = virtual_host(result.snapshot, "admin.example.com:8081", route_name="http.8081")
    (route,) = admin.routes
    assert route.route.cluster == "outbound|8000||admin.default.svc.cluster.local"
    assert route_config(result.snapshot, "http.8080").ignore_port_in_host_matching


def test_virtual_host_is_the_intersection_of_server_and_virtual_service_hosts() -> None:
    result = translate(load_fixture("gateway-two-ports.yaml"), GATEWAY)

    names = [vhost.name for vhost in route_config(result.snapshot, "http.8080").virtual_hosts]
    # api.shop.example.com is admitted by the server's *.shop.example.com.
    assert names == ["api.shop.example.com:8080", "shop.example.com:8080"]
    assert intersect_hosts(["*.example.com"], ["a.example.com", "other.org"]) == ["a.example.com"]
    assert intersect_hosts(["a.example.com"], ["*"]) == ["a.example.com"]
    assert intersect_hosts(["*"], ["*"]) == ["*"]


def test_virtual_service_not_bound_to_the_gateway_adds_no_routes() -> None:
    text = (
        gateway(http_server(8080, "*"))
        + PRODUCTPAGE
        + to_productpage("mesh-only", "[shop.example.com]", gateways="[mesh]")
    )

    result = render(text, GATEWAY)

    (vhost,) = route_config(result.snapshot, "http.8080").virtual_hosts
    # Istio's answer for a port nothing is bound to: one virtual host that 404s everything.
    assert (vhost.name, list(vhost.domains), len(vhost.routes)) == ("blackhole:8080", ["*"], 0)


def test_namespace_scoped_server_host_admits_only_virtual_services_of_that_namespace() -> None:
    text = (
        gateway(http_server(8080, "shop/*.example.com"))
        + PRODUCTPAGE
        + to_productpage("in-shop", "[a.example.com]", gateways="[default/edge]", namespace="shop")
        + to_productpage("in-default", "[b.example.com]")
    )

    result = render(text, GATEWAY)

    names = [vhost.name for vhost in route_config(result.snapshot, "http.8080").virtual_hosts]
    assert names == ["a.example.com:8080"]


def test_two_gateways_on_one_port_share_listener_and_route_configuration() -> None:
    text = (
        gateway(http_server(8080, "a.example.com"), name="edge")
        + gateway(http_server(8080, "b.example.com"), name="partner")
        + PRODUCTPAGE
        + to_productpage("a", "[a.example.com]")
        + to_productpage("b", "[b.example.com]", gateways="[partner]")
    )

    result = render(text, GATEWAY)

    assert list(listeners(result.snapshot)) == ["0.0.0.0_8080"]
    names = [vhost.name for vhost in route_config(result.snapshot, "http.8080").virtual_hosts]
    assert names == ["a.example.com:8080", "b.example.com:8080"]
    assert result.gateways == ("default/edge", "default/partner")


def test_catch_all_routes_of_one_virtual_service_go_after_specific_routes_of_another() -> None:
    text = (
        gateway(http_server(8080, "shop.example.com"))
        + PRODUCTPAGE
        + to_productpage("everything", "[shop.example.com]", path="/")
        + to_productpage("api", "[shop.example.com]", path="/api")
    )

    result = translate(load_files_allowing_conflicts(text), GATEWAY)

    routes = virtual_host(result.snapshot, "shop.example.com:8080", route_name="http.8080").routes
    assert [r.match.prefix for r in routes] == ["/api", "/"]


def test_https_redirect_requires_tls_on_the_virtual_host() -> None:
    server = http_server(8080, "shop.example.com") + "    tls: {httpsRedirect: true}\n"
    result = render(gateway(server) + PRODUCTPAGE + to_productpage("shop", "[shop.example.com]"), GATEWAY)

    vhost = virtual_host(result.snapshot, "shop.example.com:8080", route_name="http.8080")
    assert vhost.require_tls == route_components_pb2.VirtualHost.ALL


def test_https_and_tcp_servers_surface_not_translated_findings_and_get_no_listener() -> None:
    result = translate(load_fixture("not-translated.yaml"), GATEWAY)

    assert not listeners(result.snapshot)
    paths = {f.path for f in not_translated(result.findings) if f.kind == "Gateway"}
    assert paths == {"spec.servers[0]", "spec.servers[1].port.protocol"}


def test_role_is_gateway_when_a_gateway_selects_the_proxy_labels() -> None:
    config = load(gateway(http_server(8080, "*")) + PRODUCTPAGE)

    selected = translate(config, ProxyIdentity(node_id="g", labels={"istio": "ingressgateway", "extra": "x"}))
    other = translate(config, ProxyIdentity(node_id="s", labels={"app": "productpage"}))
    forced = translate(config, ProxyIdentity(node_id="f", role=ProxyRole.GATEWAY))

    assert selected.role is ProxyRole.GATEWAY
    assert other.role is ProxyRole.SIDECAR
    # An explicit gateway role with labels no Gateway selects: a gateway with nothing to serve.
    assert forced.role is ProxyRole.GATEWAY
    assert not listeners(forced.snapshot)


def test_gateway_proxy_also_gets_every_visible_service_cluster() -> None:
    result = translate(load_fixture("gateway-two-ports.yaml"), GATEWAY)

    assert sorted(result.snapshot.resources("type.googleapis.com/envoy.config.cluster.v3.Cluster")) == [
        "outbound|8000||admin.default.svc.cluster.local",
        "outbound|9080||productpage.default.svc.cluster.local",
    ]


def load_files_allowing_conflicts(text: str) -> MeshConfig:
    """Load even if analyzers flag two VirtualServices for one gateway host."""
    return load_files({"mesh.yaml": text}).config
