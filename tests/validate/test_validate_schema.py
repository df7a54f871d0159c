"""Schema decoding (IST0106, RC0201): for each check, valid values pass and one invalid value is one finding.

Each case is a config with ``VALUE`` where the checked value goes. Every good value must load
with no finding at all; the bad value must give exactly one finding, with its code, severity,
field path, line and message (and hint where it teaches the fix).
"""

from __future__ import annotations

import pytest
from validate_helpers import (
    DESTINATION_RULE,
    SERVICE_ENTRY,
    Case,
    assert_bad_value_is_one_finding_at_its_field_and_line,
    assert_good_values_load_without_findings,
    join,
    load_text,
    virtual_service,
)

from reconciler.model.text import quote
from reconciler.validate.findings import Severity

#: Twenty bounded repeats of a character class: ordinary pieces, together past Envoy's program size limit.
BIG_REGEX = "/" + "/".join(f"[a-z{i}]{{1,500}}" for i in range(20))
BIG_REGEX_SIZE = 33504


def route(extra: str = "", destination: str = "{host: reviews}") -> str:
    """A VirtualService with one HTTP rule routing to ``destination``; ``extra`` lines go under the rule."""
    return virtual_service(f"- route:\n  - destination: {destination}\n{extra}")


def uri_match(match: str) -> str:
    return virtual_service(f"- match:\n  - uri: {match}\n  route:\n  - destination: {{host: reviews}}")


CASES = {
    "duration": Case(
        route("  timeout: VALUE"),
        good=("1.5s", "100ms", "1m30s"),
        bad="1.5x",
        path="spec.http[0].timeout",
        message="'1.5x' is not a duration",
        hint="write a number and unit: 1.5s, 100ms, 1m, 1h",
    ),
    "duration given as a number": Case(
        route("  timeout: VALUE"),
        good=("5s",),
        bad="5",
        marker="timeout:",
        path="spec.http[0].timeout",
        message="expected a duration string such as 1.5s or 100ms, got 5",
    ),
    "port range": Case(
        route(destination="{host: reviews, port: {number: VALUE}}"),
        good=("1", "9080", "65535"),
        bad="70000",
        path="spec.http[0].route[0].destination.port.number",
        message="port 70000 is out of range (1..65535)",
    ),
    "percentage range": Case(
        route("  mirror: {host: reviews}\n  mirrorPercentage: {value: VALUE}"),
        good=("0", "50.5", "100"),
        bad="150",
        path="spec.http[0].mirrorPercentage.value",
        message="percentage 150.0 is outside 0..100",
    ),
    "header name": Case(
        virtual_service("- match:\n  - headers: {VALUE: {exact: canary}}\n  route:\n  - destination: {host: reviews}"),
        good=("x-canary", "X_Debug.1"),
        bad="'bad header'",
        path='spec.http[0].match[0].headers["bad header"]',
        message="'bad header' is not a valid HTTP header name",
        hint="use letters, digits and - only",
    ),
    **{
        f"regex: {feature}": Case(
            uri_match("{regex: 'VALUE'}"),
            good=("^/api/v[0-9]+(/.*)?$", "/(a|b)/x", "\\(?=x", "/users/[a-z0-9-]{1,36}/orders"),
            bad=bad,
            path="spec.http[0].match[0].uri.regex",
            message=f"regex {bad!r} is not valid RE2 (Envoy's regex engine): {reason}",
            hint="RE2 has no lookahead/lookbehind, backreferences, atomic groups or possessive quantifiers",
        )
        for feature, bad, reason in [
            ("lookahead", "/a(?=b)", "invalid perl operator: (?="),
            ("backreference", "/(a|b)/\\1", "invalid escape sequence: \\1"),
            ("atomic group", "/(?>ab)", "invalid perl operator: (?>"),
            ("possessive quantifier", "/a*+", "bad repetition operator: *+"),
            ("syntax", "/v[12", "missing ]: [12"),
        ]
    },
    "regex too complex for Envoy": Case(
        uri_match("{regex: 'VALUE'}"),
        good=("/[a-z]{1,1000}",),
        bad=BIG_REGEX,
        path="spec.http[0].match[0].uri.regex",
        message=f"regex {quote(BIG_REGEX)} is too complex for Envoy: RE2 program size {BIG_REGEX_SIZE} exceeds 32768",
        hint="simplify it: large bounded repeats such as {1,1000} multiply the program size",
    ),
    "enum": Case(
        join(SERVICE_ENTRY, DESTINATION_RULE + "  trafficPolicy:\n    loadBalancer: {simple: VALUE}\n"),
        good=("ROUND_ROBIN", "LEAST_REQUEST"),
        bad="ROUND_ROBINX",
        path="spec.trafficPolicy.loadBalancer.simple",
        message="'ROUND_ROBINX' is not one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST",
        hint="did you mean 'ROUND_ROBIN'?",
    ),
    "integer type": Case(
        route("    weight: VALUE"),
        good=("100",),
        bad='"abc"',
        path="spec.http[0].route[0].weight",
        message="expected an integer, got 'abc'",
    ),
    "negative weight": Case(
        route("    weight: VALUE"),
        good=("0", "100"),
        bad="-1",
        path="spec.http[0].route[0].weight",
        message="weight -1 is out of range (0..4294967295)",
    ),
    "negative count": Case(
        route("  retries: {attempts: VALUE}"),
        good=("0", "3"),
        bad="-1",
        path="spec.http[0].retries.attempts",
        message="value -1 is out of range (0..4294967295)",
    ),
    "list type": Case(
        virtual_service("- route:\n  - destination: {host: reviews}", hosts="VALUE"),
        good=("[reviews]",),
        bad="reviews",
        marker="hosts:",
        path="spec.hosts",
        message="expected a list, got 'reviews'",
        hint="write it as a YAML list (`- item`)",
    ),
    "required field": Case(
        route(destination="{VALUE}"),
        good=("host: reviews",),
        bad="port: {number: 80}",
        path="spec.http[0].route[0].destination",
        message="missing required field 'host' in Destination",
        hint="add `host:`",
    ),
    "one of route, redirect, directResponse": Case(
        route("  VALUE"),
        good=("timeout: 1s",),
        bad="directResponse: {status: 503}",
        marker="- route:",
        path="spec.http[0]",
        message="only one of route, redirect, directResponse may be set; found route, directResponse",
    ),
    "exactly one of exact, prefix, regex": Case(
        uri_match("{VALUE}"),
        good=("prefix: /api",),
        bad="prefix: /api, exact: /api",
        path="spec.http[0].match[0].uri",
        message="exactly one of exact, prefix, regex must be set; found 2",
    ),
    "api version": Case(
        route().replace("networking.istio.io/v1\n", "VALUE\n"),
        good=("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        bad="networking.istio.io/v2",
        path="apiVersion",
        message="apiVersion 'networking.istio.io/v2' is not served by Istio",
        hint="use one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3",
    ),
    # Was taken for a foreign group: the VirtualService was ignored with an info finding.
    "api version without a version": Case(
        route().replace("networking.istio.io/v1\n", "VALUE\n"),
        good=("networking.istio.io/v1",),
        bad="networking.istio.io",
        path="apiVersion",
        message="apiVersion 'networking.istio.io' is not served by Istio",
    ),
    "metadata name": Case(
        route().replace("{name: reviews}", "{name: VALUE}"),
        good=("reviews", "reviews-v2.shop"),
        bad="Reviews_2",
        path="metadata.name",
        message="metadata.name 'Reviews_2' is not a valid Kubernetes name",
    ),
    "unknown top-level field": Case(
        route() + "VALUE: {}\n",
        good=("status",),
        bad="specs",
        path="specs",
        message="unknown top-level field 'specs'",
        hint="only apiVersion, kind, metadata, spec",
    ),
    # A key that is not a plain name is quoted in the path; its line was once looked up by a path that crashed.
    "unknown top-level field named like a path": Case(
        route() + "VALUE: {}\n",
        good=("status",),
        bad="']'",
        marker="']': {}",
        path='["]"]',
        message="unknown top-level field ']'",
        hint="only apiVersion, kind, metadata, spec",
    ),
    "unknown field": Case(
        route("  VALUE: 5s"),
        good=("timeout",),
        bad="timeuot",
        path="spec.http[0].timeuot",
        message="unknown field 'timeuot' in HTTPRoute",
        hint="did you mean 'timeout'?",
    ),
    "unsupported field": Case(
        route("  VALUE"),
        good=("timeout: 1s",),
        bad="corsPolicy: {allowOrigins: [{exact: https://shop.example.com}]}",
        code="RC0201",
        severity=Severity.WARNING,
        path="spec.http[0].corsPolicy",
        message="unsupported: spec.http[0].corsPolicy — ignored",
    ),
}


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_valid_values_load_without_findings(case: Case) -> None:
    assert_good_values_load_without_findings(case)


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_an_invalid_value_is_one_finding_at_its_field_and_line(case: Case) -> None:
    assert_bad_value_is_one_finding_at_its_field_and_line(case)


def test_an_unsupported_field_is_ignored_and_the_resource_still_applies() -> None:
    result = load_text(route("  corsPolicy: {allowOrigins: [{exact: https://shop.example.com}]}"))
    assert result.ok
    (service,) = result.config.virtual_services
    assert service.spec.http[0].route[0].destination.host == "reviews"


def test_an_error_anywhere_in_a_resource_drops_the_whole_resource() -> None:
    result = load_text(route("  timeout: 1.5x"), route().replace("{name: reviews}", "{name: other}"))
    assert not result.ok
    assert [service.name for service in result.config.virtual_services] == ["other"]


def test_a_misspelt_istio_kind_is_an_error_with_a_did_you_mean_hint() -> None:
    result = load_text(route().replace("kind: VirtualService", "kind: VirtualSevice"))

    assert not result.ok
    (finding,) = result.findings
    assert (finding.severity, finding.code, finding.path) == (Severity.ERROR, "RC0101", "kind")
    assert finding.hint == "did you mean 'VirtualService'?"


def test_an_istio_networking_kind_reconciler_does_not_handle_is_only_noted() -> None:
    sidecar = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec: {}\n"

    result = load_text(sidecar, route())

    assert result.ok
    assert [(f.severity, f.code) for f in result.findings] == [(Severity.INFO, "RC0101")]
