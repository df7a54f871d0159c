"""A RolloutPolicy for the repo template's ``reviews`` VirtualService, for rollout tests in several folders."""

from __future__ import annotations

__all__ = ["policy_yaml"]

_POLICY = """\
apiVersion: reconciler.dev/v1alpha1
kind: RolloutPolicy
metadata: {{name: reviews}}
spec:
  targets: [{{name: reviews}}]
  steps: [{steps}]
  interval: {interval}
  minRequests: {min_requests}
  maxInterval: {max_interval}
  onLowTraffic: {on_low_traffic}
"""


def policy_yaml(
    *,
    steps: str = "10, 50",
    interval: str = "30s",
    min_requests: int = 100,
    max_interval: str = "10m",
    on_low_traffic: str = "hold",
    checks: tuple[str, ...] = (),
) -> bytes:
    """A policy over ``reviews`` with ``checks`` (flow mappings: ``{metric: latency, max: 200ms}``).

    Without ``checks``, the default check: canary error rate at most 1%.
    """
    policy = _POLICY.format(
        steps=steps,
        interval=interval,
        min_requests=min_requests,
        max_interval=max_interval,
        on_low_traffic=on_low_traffic,
    )
    listed = "".join(f"  - {check}\n" for check in checks)
    return (policy + ("  checks:\n" + listed if checks else "")).encode()
