"""A real ADS server with the metrics service on one port, sidecar Envoys bootstrapped by
``build_bootstrap``, and a service ``app.metrics.internal`` whose subsets ``v1`` and ``v2`` are
real upstreams; a request with header ``canary: yes`` goes to v2, every other one to v1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc
from xds_thread import XdsThread

from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.upstream import UpstreamServer
from reconciler.loader import load_files
from reconciler.metrics import MetricsService, MetricsStore
from reconciler.translate.names import cluster_name

T = TypeVar("T")

HOST = "app.metrics.internal"
STABLE = cluster_name(host=HOST, port=80, subset="v1")
CANARY = cluster_name(host=HOST, port=80, subset="v2")
#: Envoy flushes every second; this is headroom for a loaded machine.
DEADLINE = 30.0

_CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: app}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: {host}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app}}
spec:
  hosts: [{host}]
  http:
  - match: [{{headers: {{canary: {{exact: "yes"}}}}}}]
    route: [{{destination: {{host: {host}, subset: v2}}}}]
  - route: [{{destination: {{host: {host}, subset: v1}}}}]
"""


class MetricsHarness(XdsThread):
    """The daemon's gRPC server (ADS + StreamMetrics) on an asyncio loop in a background thread."""

    def __init__(self, *, services: Sequence[Callable[[grpc.aio.Server], None]] | None = None) -> None:
        self.store = MetricsStore()
        #: Proxies report into ``store`` (not into test-given services instead).
        self.reports_to_store = services is None
        own = [MetricsService(self.store).add_to]
        super().__init__(services=own if services is None else services, name="metrics-loop")

    def serve(self, *, v1: UpstreamServer, v2: UpstreamServer) -> None:
        result = load_files({"app.yaml": _CONFIG.format(host=HOST, v1=v1.port, v2=v2.port)})
        assert result.ok, [str(finding) for finding in result.findings]
        self.publish(ConfigSnapshots(config=result.config))


Sidecar = Callable[[MetricsHarness, str], tuple[int, EnvoyProcess]]
