"""The safety net: every emitted resource is checked against Envoy's own proto constraints (PGV annotations)."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from translate_support import SIDECAR

from reconciler.errors import TranslationError
from reconciler.loader import load_files
from reconciler.translate import translate
from reconciler.translate.constraints import SUPPORTED_RULES, rules_used, violations
from reconciler.translate.snapshot import _MESSAGE_TYPES
from reconciler.validate.findings import Code, Severity

# A header value with a line break: no validation rule knows it, Envoy's HTTP_HEADER_VALUE rule does.
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
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews.shop.example.com
  subsets: [{name: v1, labels: {version: v1}}]
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
        set: {x-note: "two\\nlines"}
    route:
    - destination: {host: reviews.shop.example.com, subset: v1}
"""


def test_a_value_only_envoys_annotations_forbid_is_an_error_at_the_istio_rule_that_made_it() -> None:
    result = load_files({"mesh.yaml": _MESH})

    errors = [finding for finding in result.findings if finding.severity is Severity.ERROR]
    assert [(f.code, f.file, f.line, f.path, f.kind, f.name) for f in errors] == [
        (
            Code.ENVOY_WOULD_REJECT,
            "mesh.yaml",
            _MESH.splitlines().index("  - name: split") + 1,
            "spec.http[0]",
            "VirtualService",
            "reviews",
        )
    ]
    assert "request_headers_to_add[0].header.value" in errors[0].message


def test_translating_such_a_config_raises_a_translation_error_carrying_the_findings() -> None:
    # Any proxy shape, checked or not by the loader, gets the same refusal from translate itself.
    config = load_files({"mesh.yaml": _MESH}).config

    with pytest.raises(TranslationError) as raised:
        translate(config, SIDECAR)

    assert [(f.code, f.file, f.path) for f in raised.value.findings] == [
        (Code.ENVOY_WOULD_REJECT, "mesh.yaml", "spec.http[0]")
    ]
    assert f"mesh.yaml:{raised.value.findings[0].line}:" in str(raised.value)


def _route() -> rc.Route:
    route = rc.Route(match=rc.RouteMatch(prefix="/"))
    route.route.cluster = "c"
    return route


def test_a_valid_route_has_no_violations() -> None:
    assert violations(_route()) == []


def test_weights_summing_past_uint32_are_a_violation_at_the_weighted_clusters() -> None:
    route = _route()
    route.route.weighted_clusters.clusters.add(name="a").weight.value = 2**32 - 1
    route.route.weighted_clusters.clusters.add(name="b").weight.value = 1

    assert [v.path for v in violations(route)] == ["route.weighted_clusters.clusters"]


def test_a_duration_outside_envoys_range_is_a_violation_at_its_field() -> None:
    route = _route()
    route.route.timeout.seconds = 9_223_372_036

    assert [v.path for v in violations(route)] == ["route.timeout"]


def test_a_header_value_over_16_kib_is_a_violation_at_its_field() -> None:
    route = _route()
    route.request_headers_to_add.add(header=base_pb2.HeaderValue(key="x", value="a" * (16 * 1024 + 1)))

    assert [v.path for v in violations(route)] == ["request_headers_to_add[0].header.value"]


def test_a_missing_required_oneof_and_a_too_long_name_inside_an_any_are_found_by_path() -> None:
    route = _route()
    route.typed_per_filter_config["f"].Pack(rc.RouteMatch())  # a RouteMatch without its path specifier
    route.match.query_parameters.add(name="q" * 1025, present_match=True)

    assert sorted(v.path for v in violations(route)) == [
        "match.query_parameters[0].name",
        'typed_per_filter_config["f"].path_specifier',
    ]


def test_an_unset_oneof_member_is_not_checked() -> None:
    # route.cluster_header has min_len 1, but it is not the member that is set.
    assert not [v for v in violations(_route()) if "cluster_header" in v.path]


@pytest.mark.parametrize("type_url", sorted(_MESSAGE_TYPES))
def test_every_rule_kind_the_emitted_types_use_is_one_the_evaluator_applies(type_url: str) -> None:
    assert rules_used(_MESSAGE_TYPES[type_url].DESCRIPTOR) <= SUPPORTED_RULES
