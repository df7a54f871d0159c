"""Real Envoy: it accepts every translation, and routes traffic the way the VirtualService says.

``envoy --mode validate`` runs on the static form of each snapshot (EDS clusters with
their endpoints inline, RDS route configurations inline), for our fixtures and for
Istio's bookinfo samples when ``../shared`` is there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from translate_support import FIXTURES, GATEWAY, PROJECT_ROOT, SAMPLES, SIDECAR, load, load_fixture

from reconciler.envoy import validate_config
from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.loader import load_paths
from reconciler.translate import ProxyIdentity, static_bootstrap, translate
from reconciler.translate.snapshot import ROUTE

pytestmark = pytest.mark.envoy

SAMPLE_FILES = sorted(path.name for path in SAMPLES.glob("*.yaml")) if SAMPLES.is_dir() else []


@pytest.mark.parametrize("fixture", sorted(path.name for path in FIXTURES.glob("*.yaml")))
@pytest.mark.parametrize("role", ["sidecar", "gateway"])
def test_envoy_accepts_the_rendered_config_of_every_fixture(fixture: str, role: str, envoy_binary: Path) -> None:
    proxy = SIDECAR if role == "sidecar" else GATEWAY

    snapshot = translate(load_fixture(fixture), proxy).snapshot

    validate_config(static_bootstrap(snapshot), envoy_binary=envoy_binary)


@pytest.mark.parametrize("role", ["sidecar", "gateway"])
def test_envoy_accepts_the_rendered_config_of_our_own_bookinfo(role: str, envoy_binary: Path) -> None:
    proxy = SIDECAR if role == "sidecar" else GATEWAY
    # The project's own bookinfo (gateway, service entries, all subsets, every route kind), with or without ../shared.
    config = load_paths([PROJECT_ROOT / "tests" / "fixtures" / "validate" / "valid" / "bookinfo"]).config

    snapshot = translate(config, proxy).snapshot

    assert snapshot.resources(ROUTE)
    validate_config(static_bootstrap(snapshot), envoy_binary=envoy_binary)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="Istio samples need ../shared (absent here)")
@pytest.mark.parametrize("sample", SAMPLE_FILES)
@pytest.mark.parametrize("role", ["sidecar", "gateway"])
def test_envoy_accepts_the_rendered_config_of_every_istio_sample(sample: str, role: str, envoy_binary: Path) -> None:
    proxy = SIDECAR if role == "sidecar" else GATEWAY
    # Each sample alone (several redefine the same resources); samples reference
    # subsets defined in others, which validation reports, but translation must cope.
    config = load_paths([SAMPLES / sample]).config

    snapshot = translate(config, proxy).snapshot

    validate_config(static_bootstrap(snapshot), envoy_binary=envoy_binary)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="Istio samples need ../shared (absent here)")
def test_envoy_accepts_bookinfo_gateway_and_destination_rules_together(envoy_binary: Path) -> None:
    paths = [SAMPLES / name for name in ("bookinfo-gateway.yaml", "destination-rule-all.yaml")]
    config = load_paths([*paths, SAMPLES / "virtual-service-reviews-80-20.yaml"]).config

    for proxy in (SIDECAR, GATEWAY):
        validate_config(static_bootstrap(translate(config, proxy).snapshot), envoy_binary=envoy_binary)


def test_traffic_through_a_translated_sidecar_follows_the_weights_and_the_header_match(
    envoy: Callable[..., EnvoyProcess], upstreams: Callable[..., UpstreamServer], free_port: Callable[[], int]
) -> None:
    v1, v2, v3 = upstreams("v1"), upstreams("v2"), upstreams("v3")
    endpoints = "".join(
        f"  - {{address: 127.0.0.1, ports: {{http: {server.port}}}, labels: {{version: {server.version}}}}}\n"
        for server in (v1, v2, v3)
    )
    config = load(
        f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
{endpoints}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {{end-user: {{exact: jason}}}}
    route:
    - destination: {{host: reviews, subset: v3}}
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: 80}}
    - {{destination: {{host: reviews, subset: v2}}, weight: 20}}
"""
    )
    port = free_port()
    snapshot = translate(config, ProxyIdentity(node_id="sidecar-e2e", outbound_port=port)).snapshot
    proxy = envoy(static_bootstrap(snapshot, admin_port=0))

    split = send_requests(port=port, authority="reviews:9080", count=500, deadline=30)
    jason = send_requests(port=port, authority="reviews", headers={"end-user": "jason"}, count=20)
    unknown = send_requests(port=port, authority="ratings:9080", count=5)

    assert split.by_status == {200: 500}
    assert 70.0 <= split.share("v1") <= 90.0
    assert split.by_version["v1"] + split.by_version["v2"] == 500
    assert jason.by_version == {"v3": 20}
    assert unknown.by_status == {404: 5}
    assert proxy.stat("cluster.outbound|9080|v3|reviews.default.svc.cluster.local.upstream_rq_total") == 20


def test_traffic_through_a_translated_gateway_reaches_the_bound_virtual_service(
    envoy: Callable[..., EnvoyProcess], upstreams: Callable[..., UpstreamServer], free_port: Callable[[], int]
) -> None:
    page = upstreams("productpage")
    port = free_port()
    config = load(
        f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: [shop.example.com]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: productpage}}
spec:
  hosts: [productpage]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {page.port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop.example.com]
  gateways: [edge]
  http:
  - match: [{{uri: {{prefix: /health}}}}]
    directResponse: {{status: 204}}
  - route:
    - destination: {{host: productpage}}
"""
    )
    snapshot = translate(config, GATEWAY).snapshot
    envoy(static_bootstrap(snapshot, admin_port=0))

    served = send_requests(port=port, authority=f"shop.example.com:{port}", path="/productpage", count=10)
    health = send_requests(port=port, authority="shop.example.com", path="/health", count=3)
    other = send_requests(port=port, authority="elsewhere.example.com", count=3)

    assert served.by_version == {"productpage": 10}
    assert health.by_status == {204: 3}
    assert other.by_status == {404: 3}
