"""The safety net: every emitted resource is checked against Envoy's own proto constraints (PGV annotations)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from translate_support import PROJECT_ROOT, SIDECAR

from reconciler.errors import TranslationError
from reconciler.loader import load_files
from reconciler.translate import translate
from reconciler.translate.constraints import SUPPORTED_RULES, Verdicts, rules_used, violations
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


# Bad messages of every emitted type (and the types packed in their Any fields), each breaking
# rules of a kind the others do not (77 messages, about 100 kinds of problem: lengths, patterns,
# header-name/value regexes, enums, number and duration bounds, item and pair counts, item rules,
# required fields and oneofs, Envoy's duration range), with every violation the interpreting
# checker found before the checker was compiled per type. Read from their bytes, so the file
# does not depend on how they were made.
_CASES = json.loads((PROJECT_ROOT / "tests" / "fixtures" / "constraints" / "violations.json").read_text())


def _case(case: dict[str, Any]) -> Message:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(case["type"])
    message = message_factory.GetMessageClass(descriptor)()
    message.ParseFromString(base64.b64decode(case["message"]))
    return message


@pytest.mark.parametrize(
    "case", _CASES, ids=[f"{i}-{case['type'].rsplit('.', 1)[-1]}" for i, case in enumerate(_CASES)]
)
def test_the_compiled_checker_finds_the_violations_the_interpreting_checker_found(case: dict[str, Any]) -> None:
    found = violations(_case(case))

    assert [[v.path, v.message] for v in found] == case["violations"]


def test_remembering_passed_parts_across_messages_changes_no_result() -> None:
    # Twice through, so every clean part is met again after it was remembered.
    verdicts = Verdicts()
    messages = [_case(case) for case in _CASES] * 2

    found = [[[v.path, v.message] for v in violations(message, verdicts=verdicts)] for message in messages]

    assert found == [case["violations"] for case in _CASES] * 2


def test_a_part_equal_to_one_that_broke_a_rule_is_reported_wherever_it_appears() -> None:
    verdicts = Verdicts()
    routes = []
    for _ in range(2):
        route = _route()
        route.request_headers_to_add.add(header=base_pb2.HeaderValue(key="x", value="a\nb"))
        routes.append(route)

    found = [[v.path for v in violations(route, verdicts=verdicts)] for route in routes]

    assert found == [["request_headers_to_add[0].header.value"]] * 2


def test_a_part_that_passed_is_still_checked_against_its_containers_rules() -> None:
    # The same (valid) WeightedCluster.ClusterWeight items pass alone; their container's sum rule still applies.
    verdicts = Verdicts()
    fine, heavy = _route(), _route()
    fine.route.weighted_clusters.clusters.add(name="a").weight.value = 1
    for _ in range(2):
        heavy.route.weighted_clusters.clusters.add(name="a").weight.value = 2**31

    assert violations(fine, verdicts=verdicts) == []
    assert [v.path for v in violations(heavy, verdicts=verdicts)] == ["route.weighted_clusters.clusters"]
