"""Each distinct Envoy resource is checked against Envoy's constraints once per scope (the pass cache)."""

from __future__ import annotations

import pytest
from translate_support import GATEWAY, SIDECAR, load

from reconciler.errors import TranslationError
from reconciler.loader import DecodeCache, load_files
from reconciler.translate import translate
from reconciler.translate.envoy_check import PassCache, envoy_findings
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, Snapshot
from reconciler.validate.findings import Code

_MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.shop.example.com]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews.shop.example.com]
  http:
  - name: split
    headers:
      request:
        set: {x-note: "NOTE"}
    route:
    - destination: {host: reviews.shop.example.com}
"""


def _nowhere(*_: object) -> None:
    return None


def test_a_resource_whose_bytes_passed_is_not_checked_again() -> None:
    fine = translate(load(_MESH), SIDECAR).snapshot
    (route,) = (message for message in fine.resources(ROUTE).values())
    broken_route = type(route)()
    broken_route.CopyFrom(route)
    # A header value with a line break breaks Envoy's rule (no validation rule of ours knows it).
    broken_route.virtual_hosts[0].routes[0].request_headers_to_add[0].header.value = "two\nlines"  # type: ignore[attr-defined]
    broken = Snapshot.build(
        clusters=fine.resources(CLUSTER).values(),
        endpoints=fine.resources(ENDPOINT).values(),
        listeners=fine.resources(LISTENER).values(),
        routes=[broken_route],
    )
    passed = PassCache()
    assert len(envoy_findings(broken, locate=_nowhere, passed=passed)) == 1

    (digest,) = broken.digests(ROUTE).values()
    passed.add(ROUTE, digest)

    assert envoy_findings(broken, locate=_nowhere, passed=passed) == []
    assert len(passed) == sum(len(broken.resources(url)) for url in PUSH_ORDER)


def test_a_resource_that_breaks_a_rule_is_reported_every_time_it_is_met() -> None:
    config = load_files({"mesh.yaml": _MESH.replace("NOTE", "two\\nlines")}).config

    passed = PassCache()
    for _ in range(2):
        with pytest.raises(TranslationError) as raised:
            translate(config, SIDECAR, passed=passed)
        assert [finding.code for finding in raised.value.findings] == [Code.ENVOY_WOULD_REJECT]
    route_digests = set(translate(load(_MESH), SIDECAR).snapshot.digests(ROUTE).values())
    assert not any(passed.known(ROUTE, digest) for digest in route_digests)


def test_the_shapes_of_one_config_share_the_passes_of_their_common_clusters() -> None:
    config = load(_MESH)
    passed = PassCache()
    sidecar = translate(config, SIDECAR, passed=passed).snapshot
    after_sidecar = len(passed)
    gateway = translate(config, GATEWAY, passed=passed).snapshot

    shared = set(sidecar.digests(CLUSTER).values()) & set(gateway.digests(CLUSTER).values())
    assert shared
    new_in_gateway = {
        (url, digest)
        for url in PUSH_ORDER
        for digest in gateway.digests(url).values()
        if digest not in set(sidecar.digests(url).values())
    }
    assert len(passed) == after_sidecar + len(new_in_gateway)


def test_a_load_keeps_only_the_passes_of_the_resources_it_met() -> None:
    cache = DecodeCache()
    load_files({"mesh.yaml": _MESH.replace("NOTE", "first")}, cache=cache)
    first = translate(load(_MESH.replace("NOTE", "first")), SIDECAR).snapshot
    load_files({"mesh.yaml": _MESH.replace("NOTE", "second")}, cache=cache)

    (old_route,) = first.digests(ROUTE).values()
    assert not cache.passed.known(ROUTE, old_route)
    (cluster,) = first.digests(CLUSTER).values()
    assert cache.passed.known(CLUSTER, cluster)
