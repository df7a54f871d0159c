"""Against Istio's own reference material in ../shared/istio (each test that reads it is skipped where it is absent).

* Every bookinfo sample loads and validates with no error-level finding. The samples are
  alternatives that reuse names, so each file is loaded on its own; the VirtualService
  samples route to subsets that Istio's docs create first with ``destination-rule-all.yaml``,
  so each file is loaded together with those DestinationRules (minus any it redefines),
  exactly as Istio's tasks apply them.
* The model agrees with the official CRD schemas (v1 of each kind): every field the model
  accepts exists in the CRD with the same type (and enum values), and every CRD property
  the model does not accept is listed in the class's ``UNSUPPORTED``.
* Our analyzer codes, levels and message wording match Istio's analyzer catalogue.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from validate_helpers import DESTINATION_RULE, GATEWAY, SERVICE_ENTRY, load_text, server, virtual_service, with_code

from reconciler.loader import load_files
from reconciler.model.common import Duration
from reconciler.model.config import API_GROUP, Kind
from reconciler.validate import analyzers
from reconciler.validate.analyzers import ANALYZERS
from reconciler.validate.findings import Code, Severity
from reconciler.validate.schema import SPEC_TYPES, istio_name

ISTIO = Path(__file__).resolve().parents[2].parent / "shared" / "istio"
# Per test, not per module: a test that does not read ../shared must still run without it.
needs_istio = pytest.mark.skipif(not ISTIO.is_dir(), reason="../shared/istio (Istio reference material) is absent")

SAMPLES = sorted((ISTIO / "samples").glob("*.yaml")) if ISTIO.is_dir() else []
BASE_RULES = "destination-rule-all.yaml"


def _names(text: str) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(text) if d}


@needs_istio
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_istio_sample_validates_without_errors(sample: Path) -> None:
    text = sample.read_text()
    files = {sample.name: text}
    if sample.name != BASE_RULES:
        redefined = _names(text)
        base = [
            d
            for d in yaml.safe_load_all((ISTIO / "samples" / BASE_RULES).read_text())
            if d and (d["kind"], d["metadata"]["name"]) not in redefined
        ]
        files[BASE_RULES] = yaml.safe_dump_all(base)
    result = load_files(files)
    errors = [f.format() for f in result.findings if f.severity is Severity.ERROR]
    assert errors == []
    assert result.config.resource_count >= len(_names(text))


@needs_istio
def test_without_their_destination_rules_only_subset_references_fail() -> None:
    for sample in SAMPLES:
        result = load_files({sample.name: sample.read_text()})
        for finding in result.findings:
            if finding.severity is Severity.ERROR:
                assert finding.code is Code.REFERENCED_RESOURCE_NOT_FOUND
                assert "host+subset in destinationrule" in finding.message


# The model against the CRDs ------------------------------------------------------------------------


def _crd_spec_schemas() -> dict[str, Any]:
    schemas = {}
    for document in yaml.safe_load_all((ISTIO / "networking-crds.yaml").read_text()):
        if not document:
            continue
        (version,) = [v for v in document["spec"]["versions"] if v["name"] == "v1"]
        schemas[document["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schemas


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return annotation


def _leaf_type(annotation: Any) -> str:
    while hasattr(annotation, "__supertype__"):  # NewType → its base
        annotation = annotation.__supertype__
    if typing.get_origin(annotation) is typing.Literal:
        return "string"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}[annotation]


def _compare(annotation: Any, schema: Mapping[str, Any], path: str, gaps: list[str]) -> None:
    annotation = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if schema.get("type") != "array":
            gaps.append(f"{path}: model has a list, CRD {schema.get('type')}")
        _compare(typing.get_args(annotation)[0], schema.get("items", {}), f"{path}[]", gaps)
    elif origin is Mapping:
        if schema.get("type") != "object" or "additionalProperties" not in schema:
            gaps.append(f"{path}: model has a map, CRD does not")
        _compare(typing.get_args(annotation)[1], schema.get("additionalProperties", {}), f"{path}{{}}", gaps)
    elif annotation is Duration:
        if schema.get("type") != "string":
            gaps.append(f"{path}: model has a duration, CRD {schema.get('type')}")
    elif dataclasses.is_dataclass(annotation):
        if schema.get("type") != "object":
            gaps.append(f"{path}: model has an object, CRD {schema.get('type')}")
        _walk(annotation, schema, path, gaps)
    else:
        if schema.get("type") != _leaf_type(annotation):
            gaps.append(f"{path}: model type {_leaf_type(annotation)}, CRD {schema.get('type')}")
        if origin is typing.Literal and set(typing.get_args(annotation)) != set(schema.get("enum", ())):
            gaps.append(f"{path}: enum {typing.get_args(annotation)} != CRD {schema.get('enum')}")


def _walk(cls: Any, schema: Mapping[str, Any], path: str, gaps: list[str]) -> None:
    properties = schema.get("properties", {})
    hints = typing.get_type_hints(cls)
    unsupported: frozenset[str] = getattr(cls, "UNSUPPORTED", frozenset())
    accepted = set()
    for field in dataclasses.fields(cls):
        key = istio_name(field.name)
        accepted.add(key)
        if key not in properties:
            gaps.append(f"{path}.{key}: {cls.__name__} accepts a field the CRD does not have")
        else:
            _compare(hints[field.name], properties[key], f"{path}.{key}", gaps)
    for key in properties:
        if key not in accepted and key not in unsupported:
            gaps.append(f"{path}.{key}: CRD property neither in {cls.__name__} nor in its UNSUPPORTED")
    for key in unsupported - set(properties):
        gaps.append(f"{path}.{key}: {cls.__name__}.UNSUPPORTED names a key the CRD does not have")


@needs_istio
def test_the_model_matches_the_v1_crd_schema_of_every_istio_kind() -> None:
    schemas = _crd_spec_schemas()
    istio_kinds = [kind for kind in Kind if kind.api_group == API_GROUP]
    gaps: list[str] = []
    for kind in istio_kinds:
        _walk(SPEC_TYPES[kind], schemas[kind.value], kind.value, gaps)
    assert gaps == []
    assert {kind.value for kind in istio_kinds} <= set(schemas)


# Our findings against Istio's analyzer catalogue ----------------------------------------------------

SHOP_GATEWAY = GATEWAY + server("{number: 80, name: http, protocol: HTTP}", hosts="[shop.example.com]")


def _triggering_config() -> tuple[str, ...]:
    """One config that makes every analyzer report something."""
    http = """
    - match: [{uri: {prefix: /a}}]
      route:
      - destination: {host: reviews.shop.example.com, port: {number: 9080}}
    - match: [{uri: {prefix: /a/b}}]
      route:
      - destination: {host: reviews.shop.example.com, port: {number: 9080}}
    - route:
      - destination: {host: reviews.shop.example.com, subset: v9}
    - route:
      - destination: {host: reviews.shop.example.com, port: {number: 9080}}
    """
    multi_port = SERVICE_ENTRY.replace(
        "  - {number: 9080, name: http, protocol: HTTP}\n",
        "  - {number: 9080, name: http, protocol: HTTP}\n  - {number: 9443, name: https, protocol: HTTPS}\n",
    )
    rules = DESTINATION_RULE + "  - {name: v3, labels: {version: v3}}\n"
    unknown = DESTINATION_RULE.replace("{name: reviews}", "{name: unknown}").replace(
        "host: reviews.shop.example.com", "host: nowhere.example.com"
    )
    twice = virtual_service(http, name="twice")
    on_gateway = virtual_service(http, name="edge", hosts="[blog.example.com]", extra="  gateways: [gw]\n")
    second_gateway = SHOP_GATEWAY.replace("{name: gw}", "{name: gw2}")
    return (multi_port, rules, unknown, virtual_service(http), twice, on_gateway, SHOP_GATEWAY, second_gateway)


def _catalogue() -> dict[str, dict[str, Any]]:
    messages = yaml.safe_load((ISTIO / "analysis-messages.yaml").read_text())["messages"]
    return {message["code"]: message for message in messages}


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"%[sqvd]", template)
    return re.compile("^" + ".+".join(re.escape(part) for part in parts) + "$")


ANALYZER_CODES = [
    Code.REFERENCED_RESOURCE_NOT_FOUND,
    Code.CONFLICTING_MESH_GATEWAY_HOSTS,
    Code.DESTINATION_PORT_SELECTOR_REQUIRED,
    Code.UNREACHABLE_RULE,
    Code.INEFFECTIVE_MATCH,
    Code.HOST_NOT_IN_GATEWAY,
    Code.CONFLICTING_GATEWAYS,
    Code.SUBSET_SELECTS_NO_PODS,
    Code.HOST_MATCHES_NO_SERVICE,
]


@needs_istio
@pytest.mark.parametrize("code", ANALYZER_CODES, ids=[c.value for c in ANALYZER_CODES])
def test_analyzer_findings_use_istio_code_level_and_wording(code: Code) -> None:
    entry = _catalogue()[code.value]
    findings = with_code(load_text(*_triggering_config()), code.value)
    assert findings, f"the triggering config produced no {code.value}"
    pattern = _template_pattern(entry["template"])
    for finding in findings:
        assert finding.severity.value == entry["level"].lower()
        assert pattern.match(finding.message), finding.message


@needs_istio
def test_schema_findings_use_istio_schema_code_and_level() -> None:
    entry = _catalogue()[Code.SCHEMA.value]
    assert entry["name"] == "SchemaValidationError"
    assert entry["level"].lower() == Severity.ERROR.value


def test_every_analyzer_module_is_registered() -> None:
    # Every module of the package named for a code (istNNNN, rcNNNN), in code order: Istio's, then ours.
    names = sorted(
        (info.name for info in pkgutil.iter_modules(analyzers.__path__) if re.match(r"(ist|rc)\d{4}", info.name)),
        key=lambda name: (not name.startswith("ist"), name),
    )
    assert len(names) >= 9
    modules = [importlib.import_module(f"{analyzers.__name__}.{name}") for name in names]
    assert tuple(module.analyze for module in modules) == ANALYZERS
