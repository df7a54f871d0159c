"""Helpers for translation tests: load YAML, translate for a proxy, look resources up by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole, Translation, translate
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot
from reconciler.validate.findings import Code, Finding, Severity

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "translate"
GOLDEN = PROJECT_ROOT / "tests" / "golden"
SAMPLES = PROJECT_ROOT.parent / "shared" / "istio" / "samples"

SIDECAR = ProxyIdentity(node_id="sidecar-1", namespace="default", role=ProxyRole.SIDECAR)
GATEWAY = ProxyIdentity(node_id="gateway-1", namespace="default", labels={"istio": "ingressgateway"})


def load(text: str, *, namespace: str = "default") -> MeshConfig:
    """Validated config from YAML text; fails the test if validation reports an error."""
    result = load_files({"mesh.yaml": text}, default_namespace=namespace)
    errors = [finding.format() for finding in result.findings if finding.severity is Severity.ERROR]
    assert not errors, "\n".join(errors)
    return result.config


def load_fixture(name: str) -> MeshConfig:
    return load((FIXTURES / name).read_text(encoding="utf-8"))


def render(text: str, proxy: ProxyIdentity = SIDECAR, **kwargs: Any) -> Translation:
    return translate(load(text), proxy, **kwargs)


def clusters(snapshot: Snapshot) -> Mapping[str, cluster_pb2.Cluster]:
    return snapshot.resources(CLUSTER)  # type: ignore[return-value]


def assignment(snapshot: Snapshot, name: str) -> endpoint_pb2.ClusterLoadAssignment:
    found = snapshot.resources(ENDPOINT)[name]
    assert isinstance(found, endpoint_pb2.ClusterLoadAssignment)
    return found


def endpoint_addresses(load_assignment: endpoint_pb2.ClusterLoadAssignment) -> list[tuple[str, int]]:
    return [
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for locality in load_assignment.endpoints
        for lb in locality.lb_endpoints
    ]


def listeners(snapshot: Snapshot) -> Mapping[str, listener_pb2.Listener]:
    return snapshot.resources(LISTENER)  # type: ignore[return-value]


def route_config(snapshot: Snapshot, name: str) -> route_pb2.RouteConfiguration:
    found = snapshot.resources(ROUTE)[name]
    assert isinstance(found, route_pb2.RouteConfiguration)
    return found


def virtual_host(snapshot: Snapshot, name: str, *, route_name: str = "15001") -> route_components_pb2.VirtualHost:
    for vhost in route_config(snapshot, route_name).virtual_hosts:
        if vhost.name == name:
            return vhost
    names = [vhost.name for vhost in route_config(snapshot, route_name).virtual_hosts]
    raise AssertionError(f"no virtual host {name!r} in {route_name}: {names}")


def connection_manager(listener: listener_pb2.Listener) -> http_connection_manager_pb2.HttpConnectionManager:
    manager = http_connection_manager_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


def not_translated(findings: tuple[Finding, ...]) -> list[Finding]:
    return [finding for finding in findings if finding.code is Code.NOT_TRANSLATED]


# -- YAML building blocks ----------------------------------------------------------------


def service_entry(
    host: str,
    *,
    name: str | None = None,
    port: int = 9080,
    protocol: str = "HTTP",
    endpoints: tuple[tuple[str, str], ...] = (("10.0.0.1", "v1"), ("10.0.0.2", "v2"), ("10.0.0.3", "v3")),
    resolution: str = "STATIC",
    namespace: str = "default",
    extra: str = "",
) -> str:
    """A ServiceEntry with one port and endpoints labelled ``version``."""
    listed = "".join(f"\n  - address: {address}\n    labels: {{version: {version}}}" for address, version in endpoints)
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name or host.split(".", maxsplit=1)[0]}
  namespace: {namespace}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  ports:
  - {{number: {port}, name: http, protocol: {protocol}}}
  resolution: {resolution}
  endpoints:{listed if endpoints else " []"}
{extra}---
"""


def subsets_rule(host: str, *versions: str, namespace: str = "default", extra: str = "") -> str:
    """A DestinationRule with one subset per version (labels ``version: <name>``)."""
    listed = "".join(f"\n  - {{name: {version}, labels: {{version: {version}}}}}" for version in versions)
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {host.split(".", maxsplit=1)[0]}-rule
  namespace: {namespace}
spec:
  host: {host}
{extra}  subsets:{listed}
---
"""


def virtual_service(name: str, body: str, *, hosts: str = "[reviews]", namespace: str = "default") -> str:
    """A VirtualService; ``body`` is its spec below ``hosts`` (indented two spaces)."""
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {namespace}
spec:
  hosts: {hosts}
{body}---
"""


def gateway(name: str, *, namespace: str = "default", hosts: str = '["*"]', port: int = 8080) -> str:
    """A Gateway selecting ``istio: ingressgateway`` with one plain-HTTP server on ``port`` for ``hosts``."""
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: {hosts}
---
"""


REVIEWS = service_entry("reviews") + subsets_rule("reviews", "v1", "v2", "v3")
