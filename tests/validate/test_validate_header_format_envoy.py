"""Real Envoy agrees with the header-format rule: every variable it lists is accepted, the forms it refuses are refused.

Both sides go through ``envoy --mode validate`` with the values in a route's
``request_headers_to_add`` (the bootstrap is built by hand, so validation does not stop the
refused ones first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy_variables import variable_example

from reconciler.envoy import validate_config
from reconciler.errors import EnvoyError
from reconciler.validate.rules.header_format import ENVOY_HEADER_VARIABLES, header_format_problem

pytestmark = [pytest.mark.envoy]

_REFUSED = [
    "%",
    "50%",
    "%FOO%",
    "%FILE_CONTENT(/x)%",
    "%REQ%",
    "%HOSTNAME(x)%",
    "%START_TIME:3%",
    "%CLUSTER_METADATA(a):3%",
    "%REQ(a?b?c)%",
    "%GRPC_STATUS(FOO)%",
    "%FILTER_STATE(k:FOO)%",
    "%METADATA(FOO:a)%",
    f"%REQ(a):{2**64}%",
    "%REQ(()%",
    "%RESP(a b)%",
    "%REQ(a?:)%",
    "%TRAILER(a:b)%",
]
# Header names at the edges of what Envoy takes.
_ACCEPTED_HEADERS = ["%REQ(:authority?X-Host)%", "%REQ(?x-b)%", "%RESP(a!#$%&'*+-.^_`|~9)%"]


def _bootstrap(values: list[str]) -> dict[str, Any]:
    headers = [{"header": {"key": f"x-h{index}", "value": value}} for index, value in enumerate(values)]
    route = {"match": {"prefix": "/"}, "route": {"cluster": "c"}, "request_headers_to_add": headers}
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network"
        ".http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "s",
        "http_filters": [
            {
                "name": "router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
        "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [route]}]},
    }
    listener = {
        "name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": manager}]}],
    }
    cluster = {"name": "c", "connect_timeout": "1s", "load_assignment": {"cluster_name": "c"}}
    return {"static_resources": {"listeners": [listener], "clusters": [cluster]}}


def test_envoy_accepts_every_listed_variable_in_a_request_header(envoy_binary: Path) -> None:
    values = [variable_example(name) for name in ENVOY_HEADER_VARIABLES]
    assert all(header_format_problem(value) is None for value in values)

    validate_config(_bootstrap(values), envoy_binary=envoy_binary)


def test_envoy_accepts_the_header_names_the_rule_accepts(envoy_binary: Path) -> None:
    assert all(header_format_problem(value) is None for value in _ACCEPTED_HEADERS)

    validate_config(_bootstrap(_ACCEPTED_HEADERS), envoy_binary=envoy_binary)


@pytest.mark.parametrize("value", _REFUSED)
def test_envoy_refuses_what_the_rule_refuses(value: str, envoy_binary: Path) -> None:
    assert header_format_problem(value) is not None

    with pytest.raises(EnvoyError):
        validate_config(_bootstrap([value]), envoy_binary=envoy_binary)
