"""Analysis stays roughly linear: thousands of resources are analysed in well under a second or two.

A quadratic step over all resources (every VirtualService against every ServiceEntry, say)
would take tens of seconds here; the analyzers index by host instead.
"""

from __future__ import annotations

import importlib
import time

import pytest

from reconciler.loader import load_files
from reconciler.validate import analyze

SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}}}
spec:
  hosts: [svc-{i}.shop.example.com]
  resolution: STATIC
  ports: [{{number: 8080, name: http, protocol: HTTP}}, {{number: 9090, name: grpc, protocol: GRPC}}]
  endpoints: [{{address: 10.0.{a}.{b}, labels: {{version: v1}}}}, {{address: 10.1.{a}.{b}, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}}}
spec:
  host: svc-{i}.shop.example.com
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}}}
spec:
  hosts: [svc-{i}.shop.example.com]
  http:
  - match: [{{uri: {{prefix: /v2}}}}]
    route:
    - destination: {{host: svc-{i}.shop.example.com, subset: v2, port: {{number: 8080}}}}
  - route:
    - destination: {{host: svc-{i}.shop.example.com, subset: v1, port: {{number: 8080}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw-{i}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [svc-{i}.shop.example.com]
    tls: {{mode: SIMPLE, credentialName: cert-{i}}}
"""


def test_four_thousand_resources_are_analysed_quickly_and_cleanly() -> None:
    files = {f"svc-{i}.yaml": SERVICE.format(i=i, a=i // 250, b=i % 250) for i in range(1000)}
    result = load_files(files)
    assert result.findings == ()
    assert result.config.resource_count == 4000
    started = time.perf_counter()
    findings = analyze(result.config)
    elapsed = time.perf_counter() - started
    assert findings == []
    assert elapsed < 2.0


@pytest.mark.parametrize(
    "module",
    [
        "reconciler.validate.rules",
        "reconciler.validate.report",
        "reconciler.validate.analyze",
        "reconciler.validate.analyzers",
        "reconciler.validate.analyzers.context",
        "reconciler.cli.validate",
    ],
)
def test_public_names_exist(module: str) -> None:
    imported = importlib.import_module(module)
    assert imported.__all__
    assert all(hasattr(imported, name) for name in imported.__all__)
