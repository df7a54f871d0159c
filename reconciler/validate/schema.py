"""Schema decoding: plain YAML values → typed model objects, or precise findings.

One generic walker checks every field against the model's type annotations (types,
required fields, enums, one-ofs, unknown keys with a did-you-mean hint, fields Istio
has but we do not act on) and the value rules of the model's ``NewType`` aliases
(ports, weights, header names, RE2 regexes, durations, percentages). Pure.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import re2

from reconciler.model.common import Duration, HeaderName, NonNegative, Percent, Port, Regex, Weight
from reconciler.model.config import API_GROUP, RECONCILER_API_GROUP, Kind, Metadata, Resource
from reconciler.model.destinationrule import DestinationRuleSpec
from reconciler.model.gateway import GatewaySpec
from reconciler.model.rolloutpolicy import Percentage, RolloutPolicySpec
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.source import SourceInfo, child_path
from reconciler.model.text import quote
from reconciler.model.virtualservice import VirtualServiceSpec
from reconciler.validate.findings import Code, Finding, Severity

__all__ = [
    "MAX_DURATION_NANOS",
    "MAX_UINT32",
    "REGEX_PROGRAM_SIZE_LIMIT",
    "SPEC_TYPES",
    "decode_resource",
    "document_subject",
    "istio_name",
    "parse_duration",
]

SPEC_TYPES: Mapping[Kind, type] = MappingProxyType(
    {
        Kind.VIRTUAL_SERVICE: VirtualServiceSpec,
        Kind.DESTINATION_RULE: DestinationRuleSpec,
        Kind.SERVICE_ENTRY: ServiceEntrySpec,
        Kind.GATEWAY: GatewaySpec,
        Kind.ROLLOUT_POLICY: RolloutPolicySpec,
    }
)

_INVALID: Any = object()
#: The longest duration Envoy accepts: its seconds must stay below 2^63 ns (about 292 years), far
#: inside protobuf's own 10,000 years; Envoy says "Duration out-of-range" past it.
MAX_DURATION_NANOS = 9_223_372_035 * 10**9 + 999_999_999
#: Weights, retry attempts and circuit-breaker limits become Envoy ``uint32`` fields.
MAX_UINT32 = 2**32 - 1
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_HEADER_TOKEN = re.compile(r"^:?[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
#: RE2's "program size" (a measure of a compiled regex's cost) Envoy accepts from the bootstrap
#: reconciler generates: Istio's value. Envoy's own default is 100, which a bounded repeat like
#: ``[a-z0-9-]{1,36}`` alone exceeds.
REGEX_PROGRAM_SIZE_LIMIT = 32768
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error comes back in the exception; RE2 would also print it to stderr


def istio_name(field_name: str) -> str:
    """snake_case model field → Istio's camelCase key (``per_try_timeout`` → ``perTryTimeout``)."""
    head, *rest = field_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def parse_duration(text: str) -> int | None:
    """Nanoseconds in a Go/protobuf duration (``1.5s``, ``100ms``, ``1m30s``), or None if malformed."""
    if not text:
        return None
    position, total = 0, Fraction(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        # Exact arithmetic: floats would turn 1000000000000h into a value "finer than a millisecond".
        total += Fraction(Decimal(match.group(1))) * _UNIT_NANOS[match.group(2)]
        position = match.end()
    if position != len(text):
        return None
    return round(total)


class _Decoder:
    """Collects findings for one resource while walking its spec."""

    def __init__(self, *, source: SourceInfo, kind: str, namespace: str, name: str) -> None:
        self.source = source
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.findings: list[Finding] = []

    def report(
        self,
        path: str,
        message: str,
        *,
        code: Code = Code.SCHEMA,
        severity: Severity = Severity.ERROR,
        hint: str = "",
    ) -> None:
        self.findings.append(
            Finding(
                code=code,
                severity=severity,
                message=message,
                file=self.source.file,
                line=self.source.line_of(path),
                path=path,
                kind=self.kind,
                namespace=self.namespace,
                name=self.name,
                hint=hint,
            )
        )

    def decode(self, annotation: Any, value: Any, path: str) -> Any:
        origin, args = _shape(annotation)
        if origin is typing.Union and len(args) > 1:
            return self._tagged(args, value, path)
        if origin is typing.Union:
            return None if value is None else self.decode(args[0], value, path)
        if origin is typing.Literal:
            return self._literal(args, value, path)
        if origin is tuple:
            return self._list(args[0], value, path)
        if origin is Mapping:
            key_type, value_type = args
            return self._mapping(key_type, value_type, value, path)
        if annotation in _NEWTYPE_RULES:
            return _NEWTYPE_RULES[annotation](self, value, path)
        if annotation is Duration:
            return self._duration(value, path)
        if annotation is Percent:
            return self._percent(value, path)
        if annotation is Percentage:
            return self._percentage(value, path)
        if dataclasses.is_dataclass(annotation):
            return self.object(annotation, value, path)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            choice = self._literal(tuple(member.value for member in annotation), value, path)
            return choice if choice is _INVALID else annotation(choice)
        return self._plain(annotation, value, path)

    def _tagged(self, classes: tuple[Any, ...], value: Any, path: str) -> Any:
        """One of several classes, chosen by the ``metric`` key each names in its ``METRIC`` (RolloutPolicy checks)."""
        by_tag = {cls.METRIC.value: cls for cls in classes}
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping with a metric, got {_describe(value)}")
            return _INVALID
        tag = value.get("metric")
        if tag not in by_tag:
            metric_path = child_path(path, "metric")
            close = difflib.get_close_matches(str(tag), list(by_tag), n=1)
            self.report(
                metric_path if "metric" in value else path,
                f"metric {quote(tag)} is not one of {', '.join(by_tag)}"
                if "metric" in value
                else "missing required field 'metric'",
                hint=f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(by_tag)}",
            )
            return _INVALID
        return self.object(by_tag[tag], {key: item for key, item in value.items() if key != "metric"}, path)

    def _plain(self, annotation: type, value: Any, path: str) -> Any:
        if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if annotation is int and isinstance(value, bool):
            return self._type_error("an integer", value, path)
        if isinstance(value, annotation):
            return value
        expected = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}[annotation]
        return self._type_error(expected, value, path)

    def _type_error(self, expected: str, value: Any, path: str) -> Any:
        shown = "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else quote(value)
        hint = (
            "quote the value to make it a string"
            if expected == "a string" and not isinstance(value, dict | list)
            else ""
        )
        self.report(path, f"expected {expected}, got {shown}", hint=hint)
        return _INVALID

    def _literal(self, choices: tuple[str, ...], value: Any, path: str) -> Any:
        if isinstance(value, str) and value in choices:
            return value
        close = difflib.get_close_matches(str(value).upper(), choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else ""
        self.report(path, f"{quote(value)} is not one of {', '.join(choices)}", hint=hint)
        return _INVALID

    def _list(self, item_type: Any, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            self.report(path, f"expected a list, got {_describe(value)}", hint="write it as a YAML list (`- item`)")
            return _INVALID
        items = [self.decode(item_type, item, f"{path}[{index}]") for index, item in enumerate(value)]
        return _INVALID if any(item is _INVALID for item in items) else tuple(items)

    def _mapping(self, key_type: Any, value_type: Any, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping, got {_describe(value)}")
            return _INVALID
        decoded: dict[Any, Any] = {}
        for key, item in value.items():
            item_path = child_path(path, str(key))
            if not isinstance(key, str):
                self.report(item_path, f"map key {quote(key)} must be a string", hint="quote the key")
                decoded[str(key)] = _INVALID
                continue
            checked_key = self.decode(key_type, key, item_path) if key_type is not str else key
            decoded[key] = _INVALID if checked_key is _INVALID else self.decode(value_type, item, item_path)
        if any(item is _INVALID for item in decoded.values()):
            return _INVALID
        return MappingProxyType(decoded)

    def _duration(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            return self._type_error("a duration string such as 1.5s or 100ms", value, path)
        nanos = parse_duration(value)
        if nanos is None:
            self.report(path, f"{quote(value)} is not a duration", hint="write a number and unit: 1.5s, 100ms, 1m, 1h")
            return _INVALID
        if nanos > MAX_DURATION_NANOS:
            self.report(
                path,
                f"duration {value} is longer than Envoy accepts (under 9223372036s, about 292 years)",
                hint="use a shorter duration",
            )
            return _INVALID
        return Duration(text=value, nanos=nanos)

    def _percentage(self, value: Any, path: str) -> Any:
        number: Any = value
        if isinstance(value, str) and value.endswith("%"):
            try:
                number = float(value[:-1])
            except ValueError:
                number = value
        if isinstance(number, bool) or not isinstance(number, int | float):
            return self._type_error("a percentage such as 1% or 99.9%", value, path)
        if not 0.0 <= number <= 100.0:
            self.report(path, f"percentage {quote(value)} is outside 0%..100%")
            return _INVALID
        return Percentage(Percent(float(number)))

    def _percent(self, value: Any, path: str) -> Any:
        decoded = self.object(Percent, value, path)
        if decoded is not _INVALID and not 0.0 <= decoded.value <= 100.0:
            self.report(child_path(path, "value"), f"percentage {decoded.value} is outside 0..100")
            return _INVALID
        return decoded

    def object(self, cls: Any, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping with fields of {cls.__name__}, got {_describe(value)}")
            return _INVALID
        fields = _fields_of(cls)
        unsupported: frozenset[str] = getattr(cls, "UNSUPPORTED", frozenset())
        arguments: dict[str, Any] = {}
        for key, item in value.items():
            key_text = str(key)
            item_path = child_path(path, key_text)
            if key_text in fields:
                attribute, annotation = fields[key_text]
                arguments[attribute] = self.decode(annotation, item, item_path)
            elif key_text in unsupported:
                self.report(
                    item_path,
                    f"unsupported: {item_path} — ignored",
                    code=Code.UNSUPPORTED_FIELD,
                    severity=Severity.WARNING,
                    hint="reconciler does not act on this Istio field yet; traffic is routed as if it were absent",
                )
            else:
                close = difflib.get_close_matches(key_text, [*fields, *unsupported], n=1, cutoff=0.6)
                self.report(
                    item_path,
                    f"unknown field {quote(key_text)} in {cls.__name__}",
                    hint=f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(sorted(fields))}",
                )
                arguments["__invalid__"] = _INVALID
        for key_text, (attribute, _annotation) in fields.items():
            if attribute not in arguments and attribute in _required_of(cls):
                self.report(path, f"missing required field {key_text!r} in {cls.__name__}", hint=f"add `{key_text}:`")
                arguments[attribute] = _INVALID
        self._check_one_of(cls, value, path)
        if any(item is _INVALID for item in arguments.values()):
            return _INVALID
        return cls(**arguments)

    def _check_one_of(self, cls: Any, value: dict[Any, Any], path: str) -> None:
        for group in getattr(cls, "ONE_OF", ()):
            present = [key for key in group if value.get(key) is not None]
            if len(present) > 1:
                self.report(path, f"only one of {', '.join(group)} may be set; found {', '.join(present)}")
        for group in getattr(cls, "ONE_OF_REQUIRED", ()):
            present = [key for key in group if value.get(key) is not None]
            if len(present) != 1:
                self.report(path, f"exactly one of {', '.join(group)} must be set; found {len(present)}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return quote(value)


@functools.cache
def _shape(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """``get_origin``/``get_args`` of an annotation, worked out once (decode asks for every value).

    Optional types come back as ``(typing.Union, (inner,))``.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return typing.Union, tuple(arg for arg in args if arg is not type(None))
    return origin, args


@functools.cache
def _fields_of(cls: type) -> dict[str, tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return {istio_name(f.name): (f.name, hints[f.name]) for f in dataclasses.fields(cls)}


@functools.cache
def _required_of(cls: type) -> frozenset[str]:
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


def _int_rule(low: int, high: int | None, what: str) -> Callable[[_Decoder, Any, str], Any]:
    def check(decoder: _Decoder, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return decoder._type_error("an integer", value, path)
        if value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            decoder.report(path, f"{what} {value} is out of range ({bounds})")
            return _INVALID
        return value

    return check


def _header_name(decoder: _Decoder, value: Any, path: str) -> Any:
    if not isinstance(value, str):
        return decoder._type_error("a header name", value, path)
    if not _HEADER_TOKEN.match(value):
        decoder.report(path, f"{quote(value)} is not a valid HTTP header name", hint="use letters, digits and - only")
        return _INVALID
    return value


def _regex(decoder: _Decoder, value: Any, path: str) -> Any:
    if not isinstance(value, str):
        return decoder._type_error("a regular expression string", value, path)
    # Compiled by RE2 itself, as Envoy will: its syntax, not Python's (no lookaround, no backreferences).
    try:
        compiled = re2.compile(value, _RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else error
        decoder.report(
            path,
            f"regex {quote(value)} is not valid RE2 (Envoy's regex engine): {reason}",
            hint="RE2 has no lookahead/lookbehind, backreferences, atomic groups or possessive quantifiers",
        )
        return _INVALID
    if compiled.programsize > REGEX_PROGRAM_SIZE_LIMIT:
        decoder.report(
            path,
            f"regex {quote(value)} is too complex for Envoy: RE2 program size {compiled.programsize} "
            f"exceeds {REGEX_PROGRAM_SIZE_LIMIT}",
            hint="simplify it: large bounded repeats such as {1,1000} multiply the program size",
        )
        return _INVALID
    return value


_NEWTYPE_RULES: Mapping[Any, Callable[[_Decoder, Any, str], Any]] = MappingProxyType(
    {
        Port: _int_rule(1, 65535, "port"),
        Weight: _int_rule(0, MAX_UINT32, "weight"),
        NonNegative: _int_rule(0, MAX_UINT32, "value"),
        HeaderName: _header_name,
        Regex: _regex,
    }
)


_SERVED_BY = MappingProxyType({API_GROUP: "Istio", RECONCILER_API_GROUP: "reconciler"})

#: Istio's other networking kinds: real, not acted on by reconciler, so ignored with an info finding.
_OTHER_ISTIO_KINDS = ("Sidecar", "EnvoyFilter", "WorkloadEntry", "WorkloadGroup", "ProxyConfig")


def decode_resource(
    data: Any, *, source: SourceInfo, default_namespace: str
) -> tuple[Resource[Any] | None, list[Finding]]:
    """Decode one YAML document into a typed resource; None (with findings) when it cannot be used.

    Non-Istio kinds give one info finding and None; an unknown kind in Istio's networking group
    (a typo) is an error with a did-you-mean hint. Any error-level finding means None:
    a resource is used whole or not at all.
    """
    decoder = _Decoder(source=source, kind="", namespace="", name="")
    if not isinstance(data, dict):
        decoder.report(
            "",
            f"document is {_describe(data)}, not a Kubernetes object",
            code=Code.NOT_A_MAPPING,
            hint="each YAML document must be a mapping with apiVersion, kind, metadata and spec",
        )
        return None, decoder.findings
    api_version, kind_text = data.get("apiVersion"), data.get("kind")
    metadata = data.get("metadata")
    decoder.kind, decoder.namespace, decoder.name = document_subject(data, default_namespace)
    if not isinstance(api_version, str) or not isinstance(kind_text, str):
        decoder.report("", "document has no apiVersion and kind", hint="add `apiVersion:` and `kind:`")
        return None, decoder.findings
    # Split at the first slash: `networking.istio.io` (version left out) or `.../v1/` is our group
    # with a bad version, an error, not a foreign kind quietly ignored.
    group, _, version = api_version.partition("/")
    kinds_of_group = [kind.value for kind in Kind if kind.api_group == group]
    other_istio = _OTHER_ISTIO_KINDS if group == API_GROUP else ()
    if group in (API_GROUP, RECONCILER_API_GROUP) and kind_text not in (*kinds_of_group, *other_istio):
        # The group has no such kind: a typo (or the wrong group) that would drop the resource quietly.
        elsewhere = next((kind for kind in Kind if kind.value == kind_text), None)
        close = difflib.get_close_matches(kind_text, [*kinds_of_group, *other_istio], n=1)
        decoder.report(
            "kind",
            f"{group} has no kind {kind_text!r}",
            code=Code.UNKNOWN_KIND,
            hint=(
                f"{kind_text} is apiVersion {elsewhere.api_group}/{elsewhere.api_versions[0]}"
                if elsewhere is not None
                else f"did you mean {close[0]!r}?"
                if close
                else f"reconciler handles {', '.join(kinds_of_group)}"
            ),
        )
        return None, decoder.findings
    if kind_text not in kinds_of_group:
        decoder.report(
            "kind",
            f"{api_version} {kind_text} is not a kind reconciler handles; ignored",
            code=Code.UNKNOWN_KIND,
            severity=Severity.INFO,
        )
        return None, decoder.findings
    kind = Kind(kind_text)
    if version not in kind.api_versions:
        decoder.report(
            "apiVersion",
            f"apiVersion {quote(api_version)} is not served by {_SERVED_BY[kind.api_group]}",
            hint=f"use one of {', '.join(f'{kind.api_group}/{v}' for v in kind.api_versions)}",
        )
    meta = _decode_metadata(decoder, metadata, default_namespace)
    for key in data:
        if key not in {"apiVersion", "kind", "metadata", "spec", "status"}:
            decoder.report(
                child_path("", str(key)),
                f"unknown top-level field {quote(key)}",
                hint="only apiVersion, kind, metadata, spec",
            )
    spec = decoder.object(SPEC_TYPES[kind], data.get("spec", {}) or {}, "spec")
    if meta is None or spec is _INVALID or any(f.severity is Severity.ERROR for f in decoder.findings):
        return None, decoder.findings
    return Resource(kind=kind, api_version=api_version, metadata=meta, spec=spec, source=source), decoder.findings


def document_subject(data: Any, default_namespace: str) -> tuple[str, str, str]:
    """``(kind, namespace, name)`` of a YAML document as findings about it name it; ``""`` where it has none.

    The namespace is defaulted only when the document has metadata.
    """
    if not isinstance(data, dict):
        return "", "", ""
    kind, metadata = str(data.get("kind") or ""), data.get("metadata")
    if not isinstance(metadata, dict):
        return kind, "", ""
    return kind, str(metadata.get("namespace") or default_namespace), str(metadata.get("name") or "")


def _decode_metadata(decoder: _Decoder, metadata: Any, default_namespace: str) -> Metadata | None:
    if not isinstance(metadata, dict):
        decoder.report("metadata", "missing metadata", hint="add `metadata: {name: ...}`")
        return None
    name, namespace = metadata.get("name"), metadata.get("namespace", default_namespace)
    valid = True
    for key, value in (("name", name), ("namespace", namespace)):
        if not isinstance(value, str) or not _DNS_LABEL.match(value) or len(value) > 253:
            decoder.report(
                f"metadata.{key}",
                f"metadata.{key} {quote(value)} is not a valid Kubernetes name",
                hint="lower-case letters, digits, '-' and '.'; start and end with a letter or digit",
            )
            valid = False
    labels = decoder.decode(Mapping[str, str] | None, metadata.get("labels"), "metadata.labels")
    annotations = decoder.decode(Mapping[str, str] | None, metadata.get("annotations"), "metadata.annotations")
    if not valid or not isinstance(name, str) or labels is _INVALID or annotations is _INVALID:
        return None
    return Metadata(
        name=name,
        namespace=str(namespace),
        labels=labels or MappingProxyType({}),
        annotations=annotations or MappingProxyType({}),
    )
