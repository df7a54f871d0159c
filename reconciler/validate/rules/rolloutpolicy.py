"""RolloutPolicy rules (our own kind, no Istio counterpart).

Targets, rising steps strictly between 0 and 100, interval and maxInterval, the failure
threshold, and each metric check (confidence, latency percentile and limit). Pure.
"""

from __future__ import annotations

from reconciler.model.rolloutpolicy import LatencyCheck, RolloutPolicySpec
from reconciler.validate.rules.checker import Checker

__all__ = ["check_rollout_policy"]


def check_rollout_policy(check: Checker, spec: RolloutPolicySpec) -> None:
    if not spec.targets:
        check.error("spec.targets", "a RolloutPolicy needs at least one target", hint="add `- name: <VirtualService>`")
    if not spec.steps:
        check.error(
            "spec.steps",
            "steps must not be empty",
            hint="list how far each step goes, e.g. [10, 25, 50]; without a policy a change is served at once",
        )
    previous = 0.0
    for index, step in enumerate(spec.steps):
        if not 0.0 < step < 100.0:
            check.error(f"spec.steps[{index}]", f"step {step:g} must be between 0 and 100 (exclusive)")
        elif step <= previous:
            check.error(f"spec.steps[{index}]", f"step {step:g} must be larger than the step before it ({previous:g})")
        previous = max(previous, step)
    if spec.interval.nanos <= 0:
        check.error("spec.interval", "interval must be longer than 0s")
    if spec.max_interval.nanos < spec.interval.nanos:
        check.error(
            "spec.maxInterval",
            f"maxInterval {spec.max_interval.text} is shorter than interval {spec.interval.text}",
            hint="a step observes for interval, then may wait up to maxInterval for minRequests",
        )
    if spec.failure_threshold < 1:
        check.error("spec.failureThreshold", f"failureThreshold {spec.failure_threshold} must be at least 1")
    seen: set[str] = set()
    for index, policy_check in enumerate(spec.checks):
        path = f"spec.checks[{index}]"
        metric = policy_check.METRIC.value
        if metric in seen:
            check.warning(f"{path}.metric", f"metric {metric} is checked twice; both must pass")
        seen.add(metric)
        if not 50.0 <= policy_check.confidence.value < 100.0:
            check.error(
                f"{path}.confidence",
                f"confidence {policy_check.confidence.value:g}% must be at least 50% and below 100%",
                hint="99% fails a canary that is exactly at its limit about once in a hundred analyses",
            )
        if isinstance(policy_check, LatencyCheck):
            if not 0.0 < policy_check.percentile < 100.0:
                check.error(f"{path}.percentile", f"percentile {policy_check.percentile:g} must be between 0 and 100")
            if policy_check.max.nanos <= 0:
                check.error(f"{path}.max", "the latency limit must be longer than 0s")
