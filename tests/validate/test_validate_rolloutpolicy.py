"""RolloutPolicy (reconciler.dev/v1alpha1) is validated like the Istio kinds: decoded with defaults,
every rule on both sides of its boundary, and its targets checked against the VirtualServices."""

from __future__ import annotations

import pytest
from validate_helpers import (
    Case,
    assert_bad_value_is_one_finding_at_its_field_and_line,
    assert_good_values_load_without_findings,
    load_text,
    with_code,
)

from reconciler.model.common import Duration
from reconciler.model.rolloutpolicy import (
    DEFAULT_CONFIDENCE,
    ErrorRateCheck,
    ErrorRateVsStableCheck,
    LatencyCheck,
    OnLowTraffic,
    RolloutPolicySpec,
    RolloutTarget,
)
from reconciler.validate.findings import Severity

REVIEWS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""

#: The policy of the issue, as users will write it.
FULL_POLICY = """
apiVersion: reconciler.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: reviews, namespace: bookinfo}
spec:
  targets:
  - name: reviews
  steps: [10, 25, 50]
  interval: 30s
  minRequests: 100
  maxInterval: 10m
  onLowTraffic: hold
  failureThreshold: 1
  checks:
  - metric: error-rate
    max: 1%
  - metric: latency
    percentile: 99
    max: 500ms
  - metric: error-rate-vs-stable
    confidence: 99%
"""


def policy(spec: str) -> str:
    """A RolloutPolicy in namespace bookinfo with ``spec`` (indented two spaces) beside REVIEWS."""
    return (
        REVIEWS
        + "---\n"
        + (
            "apiVersion: reconciler.dev/v1alpha1\nkind: RolloutPolicy\n"
            "metadata: {name: reviews, namespace: bookinfo}\nspec:\n" + spec
        )
    )


TARGETED = "  targets: [{name: reviews}]\n"

CASES = {
    "steps ascending within (0, 100)": Case(
        policy(TARGETED + "  steps: VALUE\n"),
        good=("[10, 25, 50]", "[0.5, 99.5]", "[50]"),
        bad="[10, 10, 50]",
        path="spec.steps[1]",
        message="step 10 must be larger than the step before it (10)",
    ),
    "a step of 100": Case(
        policy(TARGETED + "  steps: VALUE\n"),
        good=("[99]",),
        bad="[50, 100]",
        path="spec.steps[1]",
        message="step 100 must be between 0 and 100 (exclusive)",
    ),
    "a step of 0": Case(
        policy(TARGETED + "  steps: VALUE\n"),
        good=("[1]",),
        bad="[0, 50]",
        path="spec.steps[0]",
        message="step 0 must be between 0 and 100 (exclusive)",
    ),
    "no steps": Case(
        policy(TARGETED + "  steps: VALUE\n"),
        good=("[20]",),
        bad="[]",
        path="spec.steps",
        message="steps must not be empty",
    ),
    "maxInterval at least interval": Case(
        policy(TARGETED + "  interval: 1m\n  maxInterval: VALUE\n"),
        good=("1m", "10m"),
        bad="59s",
        path="spec.maxInterval",
        message="maxInterval 59s is shorter than interval 1m",
    ),
    "interval above zero": Case(
        policy(TARGETED + "  interval: VALUE\n"),
        good=("1ms", "30s"),
        bad="0s",
        path="spec.interval",
        message="interval must be longer than 0s",
    ),
    "failureThreshold at least 1": Case(
        policy(TARGETED + "  failureThreshold: VALUE\n"),
        good=("1", "3"),
        bad="0",
        path="spec.failureThreshold",
        message="failureThreshold 0 must be at least 1",
    ),
    "onLowTraffic one of hold, promote, rollback": Case(
        policy(TARGETED + "  onLowTraffic: VALUE\n"),
        good=("hold", "promote", "rollback"),
        bad="roll-back",
        path="spec.onLowTraffic",
        message="'roll-back' is not one of hold, promote, rollback",
    ),
    "a percentage written with %": Case(
        policy(TARGETED + "  checks: [{metric: error-rate, max: VALUE}]\n"),
        good=("1%", "0.5%", "0%", "100%", "2"),
        bad="101%",
        path="spec.checks[0].max",
        message="percentage '101%' is outside 0%..100%",
    ),
    "a percentage that is not a number": Case(
        policy(TARGETED + "  checks: [{metric: error-rate, max: VALUE}]\n"),
        good=("5%",),
        bad="five%",
        path="spec.checks[0].max",
        message="expected a percentage such as 1% or 99.9%, got 'five%'",
    ),
    "confidence at least 50% and below 100%": Case(
        policy(TARGETED + "  checks: [{metric: error-rate-vs-stable, confidence: VALUE}]\n"),
        good=("50%", "99%", "99.99%"),
        bad="100%",
        path="spec.checks[0].confidence",
        message="confidence 100% must be at least 50% and below 100%",
    ),
    "confidence below 50%": Case(
        policy(TARGETED + "  checks: [{metric: error-rate, confidence: VALUE}]\n"),
        good=("95%",),
        bad="49%",
        path="spec.checks[0].confidence",
        message="confidence 49% must be at least 50% and below 100%",
    ),
    "a latency percentile within (0, 100)": Case(
        policy(TARGETED + "  checks: [{metric: latency, max: 500ms, percentile: VALUE}]\n"),
        good=("50", "99.9"),
        bad="100",
        path="spec.checks[0].percentile",
        message="percentile 100 must be between 0 and 100",
    ),
    "a latency limit above zero": Case(
        policy(TARGETED + "  checks: [{metric: latency, max: VALUE}]\n"),
        good=("1ms", "2s"),
        bad="0ms",
        path="spec.checks[0].max",
        message="the latency limit must be longer than 0s",
    ),
    "a known metric": Case(
        policy(TARGETED + "  checks: [{metric: VALUE}]\n"),
        good=("error-rate", "error-rate-vs-stable"),
        bad="eror-rate",
        path="spec.checks[0].metric",
        message="metric 'eror-rate' is not one of error-rate, latency, error-rate-vs-stable",
        hint="did you mean 'error-rate'?",
    ),
    "a latency check needs its limit": Case(
        policy(TARGETED + "  checks: [{metric: latency, VALUE}]\n"),
        good=("max: 1s",),
        bad="percentile: 95",
        path="spec.checks[0]",
        message="missing required field 'max' in LatencyCheck",
        marker="metric: latency",
    ),
    "a target by name or by host, not both": Case(
        policy("  targets: [VALUE]\n"),
        good=("{name: reviews}", "{host: reviews}", "{host: reviews.bookinfo.svc.cluster.local}"),
        bad="{name: reviews, host: reviews}",
        path="spec.targets[0]",
        message="exactly one of name, host must be set; found 2",
    ),
    "a target that exists": Case(
        policy("  targets: [VALUE]\n"),
        good=("{name: reviews}",),
        bad="{name: ratings}",
        code="IST0101",
        path="spec.targets[0].name",
        message='Referenced virtualservice not found: "ratings"',
        hint="VirtualServices in namespace bookinfo: reviews",
    ),
    "a target host that a VirtualService lists": Case(
        policy("  targets: [VALUE]\n"),
        good=("{host: reviews}",),
        bad="{host: ratings}",
        code="IST0101",
        path="spec.targets[0].host",
        message='Referenced virtualservice host not found: "ratings"',
    ),
    "a metric checked twice": Case(
        policy(TARGETED + "  checks: [{metric: error-rate}, VALUE]\n"),
        good=("{metric: latency, max: 1s}",),
        bad="{metric: error-rate, max: 2%}",
        severity=Severity.WARNING,
        path="spec.checks[1].metric",
        message="metric error-rate is checked twice; both must pass",
    ),
}


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_valid_policy_values_load_without_findings(case: Case) -> None:
    assert_good_values_load_without_findings(case)


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_an_invalid_policy_value_is_one_finding_at_its_field_and_line(case: Case) -> None:
    assert_bad_value_is_one_finding_at_its_field_and_line(case)


def test_the_issue_policy_decodes_into_the_model() -> None:
    result = load_text(REVIEWS, FULL_POLICY)

    assert result.findings == ()
    (loaded,) = result.config.rollout_policies
    spec = loaded.spec
    assert spec.targets == (RolloutTarget(name="reviews"),)
    assert spec.steps == (10.0, 25.0, 50.0)
    assert (spec.interval.nanos, spec.max_interval.nanos) == (30 * 10**9, 600 * 10**9)
    assert (spec.min_requests, spec.on_low_traffic, spec.failure_threshold) == (100, OnLowTraffic.HOLD, 1)
    error_rate, latency, versus_stable = spec.checks
    assert isinstance(error_rate, ErrorRateCheck)
    assert error_rate.max.value == 1.0
    assert isinstance(latency, LatencyCheck)
    assert (latency.percentile, latency.max) == (99.0, Duration("500ms", 500_000_000))
    assert isinstance(versus_stable, ErrorRateVsStableCheck)
    assert versus_stable.confidence.value == 99.0


def test_a_policy_with_only_targets_gets_every_default() -> None:
    result = load_text(policy(TARGETED))

    assert result.findings == ()
    (loaded,) = result.config.rollout_policies
    assert loaded.spec == RolloutPolicySpec(targets=(RolloutTarget(name="reviews"),))
    (check,) = loaded.spec.checks
    assert isinstance(check, ErrorRateCheck)
    assert check.confidence == DEFAULT_CONFIDENCE


def test_a_rollout_policy_under_istios_api_group_says_where_it_belongs() -> None:
    result = load_text(FULL_POLICY.replace("reconciler.dev/v1alpha1", "networking.istio.io/v1"))

    (finding,) = result.findings
    assert (finding.code, finding.severity, finding.path) == ("RC0101", Severity.ERROR, "kind")
    assert finding.hint == "RolloutPolicy is apiVersion reconciler.dev/v1alpha1"


def test_a_misspelt_reconciler_kind_is_an_error_with_a_did_you_mean_hint() -> None:
    result = load_text(REVIEWS, FULL_POLICY.replace("kind: RolloutPolicy", "kind: RolloutPolcy"))

    (finding,) = result.findings
    assert (finding.code, finding.severity) == ("RC0101", Severity.ERROR)
    assert finding.hint == "did you mean 'RolloutPolicy'?"


def test_a_reconciler_api_version_that_does_not_exist_is_an_error() -> None:
    result = load_text(REVIEWS, FULL_POLICY.replace("reconciler.dev/v1alpha1", "reconciler.dev/v1"))

    (finding,) = result.findings
    assert (finding.code, finding.path) == ("IST0106", "apiVersion")
    assert finding.hint == "use one of reconciler.dev/v1alpha1"


def test_a_virtual_service_under_two_policies_is_an_error_on_the_second() -> None:
    second = FULL_POLICY.replace("name: reviews, namespace", "name: reviews-too, namespace")

    result = load_text(REVIEWS, FULL_POLICY, second)

    (finding,) = with_code(result, "RC0401")
    assert (finding.name, finding.path, finding.severity) == ("reviews-too", "spec.targets[0]", Severity.ERROR)
    assert "already governed by RolloutPolicy bookinfo/reviews" in finding.message


def test_a_policy_governs_only_its_own_namespace() -> None:
    elsewhere = FULL_POLICY.replace("namespace: bookinfo", "namespace: shop")

    result = load_text(REVIEWS, elsewhere)

    (finding,) = with_code(result, "IST0101")
    assert finding.namespace == "shop"
    assert "a policy governs its own namespace only" in finding.hint
