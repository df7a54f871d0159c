"""Property: every config ``validate`` passes is one real Envoy accepts (``envoy --mode validate``).

Configs are drawn across the translated field set with a bias to the boundaries (uint32-max
weights and counts, the longest duration Envoy takes, header values just under 16 KiB) and
just past them, which validation must refuse; header values mix Envoy's ``%VARIABLE%`` formats. Each
example runs Envoy once, so the example count is small; the CI profile replays fixed ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy_variables import variable_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from translate_support import SIDECAR

from reconciler.envoy import validate_config
from reconciler.loader import load_files
from reconciler.translate import static_bootstrap, translate
from reconciler.validate.rules.header_format import ENVOY_HEADER_VARIABLES

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

_UINT32_MAX = 2**32 - 1
_HEADER_LIMIT = 16 * 1024
_HOST = "reviews.shop.example.com"

_SERVICE_ENTRY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {"name": "reviews"},
    "spec": {
        "hosts": [_HOST],
        "resolution": "STATIC",
        "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
        "endpoints": [
            {"address": "10.0.0.1", "labels": {"version": "v1"}},
            {"address": "10.0.0.2", "labels": {"version": "v2"}},
        ],
    },
}

counts = st.one_of(st.sampled_from([0, 1, _UINT32_MAX - 1, _UINT32_MAX]), st.integers(0, _UINT32_MAX))
durations = st.one_of(
    st.sampled_from(["1ms", "9223372035s", "9223372035.999s", "9223372036s", "87600h"]),
    st.integers(1, 10**9).map(lambda ms: f"{ms}ms"),
)
header_names = st.from_regex(r"\Ax-[a-z0-9]{1,12}\Z")
# Envoy reads header values as substitution formats: known variables (with their arguments and
# lengths), unknown ones, wrong arguments, lone and escaped % mixed with plain text.
format_pieces = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="%"), max_size=8),
    st.sampled_from(["%", "%%", "%%%", "%FOO%", "%hostname%", "%REQ(x%", "%REQ()%", "%HOSTNAME()%", "()", ":8"]),
    st.sampled_from(sorted(ENVOY_HEADER_VARIABLES)).map(variable_example),
    st.builds(
        "%{}{}{}%".format,
        st.sampled_from(sorted(ENVOY_HEADER_VARIABLES)),
        st.sampled_from(["", "(x-a)", "(x-a?x-b)", "(a?b?c)", "(FOO)", "(NQ:ORIG)", "(k:FIELD:f)", "(ROUTE:ns)"]),
        st.sampled_from(["", ":0", ":8", f":{2**64}"]),
    ),
)
# Printable ASCII (what Envoy's strict header-value rule takes), formats, a few long values near the limit.
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.lists(format_pieces, max_size=4).map("".join),
    st.integers(_HEADER_LIMIT - 2, _HEADER_LIMIT + 1).map(lambda size: "v" * size),
)
percents = st.one_of(st.sampled_from([0.0, 0.0001, 100.0]), st.floats(0.0001, 100.0))


@st.composite
def http_rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    first = draw(counts)
    # Mostly a split that fits in uint32 (its sum at the boundary included), sometimes one that does not.
    second = draw(st.one_of(st.just(_UINT32_MAX - first), st.integers(0, _UINT32_MAX - first), counts))
    weights = draw(st.sampled_from([[first], [first, second]]))
    rule["route"] = [
        {"destination": {"host": _HOST, "subset": f"v{index + 1}"}, "weight": weight}
        for index, weight in enumerate(weights)
    ]
    if draw(st.booleans()):
        rule["match"] = [{"uri": {"prefix": "/" + draw(st.from_regex(r"\A[a-z0-9/]{0,20}\Z"))}}]
    if draw(st.booleans()):
        rule["timeout"] = draw(st.one_of(st.just("0s"), durations))
    if draw(st.booleans()):
        rule["retries"] = {"attempts": draw(st.integers(1, _UINT32_MAX)), "perTryTimeout": draw(durations)}
    if draw(st.booleans()):
        direction, operation = draw(st.sampled_from(["request", "response"])), draw(st.sampled_from(["set", "add"]))
        rule["headers"] = {direction: {operation: draw(st.dictionaries(header_names, header_values, max_size=2))}}
    if draw(st.booleans()):
        rule["fault"] = {
            "delay": {"fixedDelay": draw(durations), "percentage": {"value": draw(percents)}},
            "abort": {"httpStatus": draw(st.integers(200, 599)), "percentage": {"value": draw(percents)}},
        }
    if draw(st.booleans()):
        rule["mirror"] = {"host": _HOST, "subset": "v1"}
        rule["mirrorPercentage"] = {"value": draw(percents)}
    return rule


@st.composite
def meshes(draw: st.DrawFn) -> str:
    pool: dict[str, Any] = {"tcp": {"maxConnections": draw(counts), "connectTimeout": draw(durations)}}
    pool["http"] = {"http1MaxPendingRequests": draw(counts), "maxRetries": draw(counts)}
    destination_rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {
            "host": _HOST,
            "trafficPolicy": {
                "connectionPool": pool,
                "outlierDetection": {
                    "consecutive5xxErrors": draw(counts),
                    "interval": draw(durations),
                    "baseEjectionTime": draw(durations),
                    "maxEjectionPercent": draw(st.integers(0, 100)),
                },
            },
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
        },
    }
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {"hosts": [_HOST], "http": draw(st.lists(http_rules(), min_size=1, max_size=3))},
    }
    return yaml.safe_dump_all([_SERVICE_ENTRY, destination_rule, virtual_service], width=2**20)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mesh=meshes())
def test_envoy_accepts_every_snapshot_of_a_config_that_validates(mesh: str, envoy_binary: Path) -> None:
    result = load_files({"mesh.yaml": mesh})
    if not result.ok:
        return  # validation refused it: nothing reaches Envoy, which is the other half of the promise

    snapshot = translate(result.config, SIDECAR).snapshot

    validate_config(static_bootstrap(snapshot), envoy_binary=envoy_binary)
