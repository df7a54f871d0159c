"""Values Envoy would refuse are validation errors at their Istio field, never a crash or a NACK later.

Each case passed ``reconciler validate`` before (and then crashed ``render`` or was NACKed).
"""

from __future__ import annotations

import pytest
from validate_helpers import DESTINATION_RULE, SERVICE_ENTRY, line_containing, load_text

from reconciler.validate.findings import Severity

_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews.shop.example.com]
  http:
  - {rule}
    route:
    - destination: {{host: reviews.shop.example.com, subset: v1}}
      weight: {w1}
    - destination: {{host: reviews.shop.example.com, subset: v2}}
      weight: {w2}
"""


def _vs(*, rule: str = "name: main", w1: int = 80, w2: int = 20) -> str:
    return _VS.format(rule=rule, w1=w1, w2=w2)


_BIG_VALUE = "a" * (16 * 1024 + 1)

CASES = [
    pytest.param(
        _vs(w1=2**32),
        "weight: 4294967296",
        "spec.http[0].route[0].weight",
        "weight 4294967296 is out of range (0..4294967295)",
        id="weight above uint32",
    ),
    pytest.param(
        _vs(w1=2**32 - 1, w2=1),
        "route:",
        "spec.http[0].route",
        "destination weights sum to 4294967296",
        id="weights summing above uint32",
    ),
    pytest.param(
        _vs(rule="timeout: 99999999999999s"),
        "timeout:",
        "spec.http[0].timeout",
        "duration 99999999999999s is longer than Envoy accepts",
        id="timeout beyond Envoy's range",
    ),
    pytest.param(
        _vs(rule="retries: {attempts: 3, perTryTimeout: 1000000000000h}"),
        "perTryTimeout",
        "spec.http[0].retries.perTryTimeout",
        "duration 1000000000000h is longer than Envoy accepts",
        id="perTryTimeout beyond Envoy's range",
    ),
    pytest.param(
        _vs(rule="timeout: 9223372036s"),
        "timeout:",
        "spec.http[0].timeout",
        "duration 9223372036s is longer than Envoy accepts",
        id="timeout within protobuf's range but past Envoy's",
    ),
    pytest.param(
        _vs(rule="retries: {attempts: 100000000000000000000}"),
        "attempts",
        "spec.http[0].retries.attempts",
        "value 100000000000000000000 is out of range (0..4294967295)",
        id="attempts above uint32",
    ),
    pytest.param(
        _vs(rule=f"headers: {{request: {{set: {{x-big: {_BIG_VALUE}}}}}}}"),
        "x-big",
        "spec.http[0].headers.request.set.x-big",
        "header value of 'x-big' is 16385 bytes, more than Envoy accepts (16384)",
        id="header value over 16 KiB",
    ),
]


@pytest.mark.parametrize(("vs", "line_fragment", "path", "message"), CASES)
def test_a_value_envoy_refuses_is_one_error_at_its_istio_field_and_line(
    vs: str, line_fragment: str, path: str, message: str
) -> None:
    result = load_text(SERVICE_ENTRY, DESTINATION_RULE, vs)

    errors = [finding for finding in result.findings if finding.severity is Severity.ERROR]
    assert [(f.code.value, f.file, f.line, f.path) for f in errors] == [
        ("IST0106", "mesh.yaml", line_containing(line_fragment, SERVICE_ENTRY, DESTINATION_RULE, vs), path)
    ]
    assert message in errors[0].message
    assert not result.ok


@pytest.mark.parametrize(
    "vs",
    [
        pytest.param(_vs(w1=2**32 - 2, w2=1), id="weights summing to exactly uint32 max"),
        pytest.param(_vs(rule="timeout: 9223372035.999s"), id="the longest timeout Envoy holds"),
        pytest.param(_vs(rule="retries: {attempts: 4294967295}"), id="uint32 max attempts"),
        pytest.param(
            _vs(rule=f"headers: {{request: {{set: {{x-big: {'a' * 16 * 1024}}}}}}}"), id="a 16 KiB header value"
        ),
    ],
)
def test_values_right_at_envoys_limits_are_accepted(vs: str) -> None:
    result = load_text(SERVICE_ENTRY, DESTINATION_RULE, vs)

    assert result.ok, [finding.format()[:300] for finding in result.findings]
