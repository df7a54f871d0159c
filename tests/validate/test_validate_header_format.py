"""Header values Envoy reads as substitution formats: what validation refuses, and what it lets through."""

from __future__ import annotations

import pytest
from validate_helpers import SERVICE_ENTRY, line_containing, load_text

from reconciler.validate.rules.header_format import ENVOY_HEADER_VARIABLES, header_format_problem

ACCEPTED = [
    "plain",
    "",
    "100%%",
    "%%",
    "%%%%",
    "%DOWNSTREAM_REMOTE_ADDRESS%",
    "ip=%DOWNSTREAM_REMOTE_ADDRESS% at %START_TIME(%s.%3f)%",
    "%REQ(x-a?x-b):8%",
    "%REQ(x-a)%",
    "%HOSTNAME()%",  # Envoy reads an empty argument as none
    "%GRPC_STATUS(NUMBER)%",
    "%PATH(NQ:ORIG):5%",
    "%FILTER_STATE(k:FIELD:f)%",
    "%METADATA(ROUTE:ns:key)%",
    f"%REQ(x):{2**64 - 1}%",
    "%REQ(:authority?X-Host)%",
    "%REQ(?x-b)%",  # an empty header is taken
    "%RESP(a!#$%&'*+-.^_`|~9)%",
]

REFUSED = [
    pytest.param("%", "a % at character 1 starts no Envoy variable", id="lone"),
    pytest.param("50%", "a % at character 3", id="trailing"),
    pytest.param("%%%", "a % at character 3", id="odd-escape"),
    pytest.param("%DOWNSTREAM_REMOTE_ADDRESS", "starts no Envoy variable", id="unterminated"),
    pytest.param("%hostname%", "starts no Envoy variable", id="lower-case"),
    pytest.param("%REQ(x%", "starts no Envoy variable", id="open-argument"),
    pytest.param("%FOO%", "unknown Envoy variable '%FOO%'", id="unknown"),
    pytest.param("%CEL(request.path)%", "unknown Envoy variable '%CEL%'", id="cel-left-out"),
    pytest.param("ok %HOSTNAME% then %NOPE%", "unknown Envoy variable '%NOPE%'", id="second-unknown"),
    pytest.param("%REQ%", "needs an argument", id="argument-missing"),
    pytest.param("%REQ()%", "needs an argument", id="argument-empty"),
    pytest.param("%HOSTNAME(x)%", "takes no argument", id="argument-extra"),
    pytest.param("%HOSTNAME:3%", "takes no :length", id="length-extra"),
    pytest.param("%START_TIME:3%", "takes no :length", id="length-on-time"),
    pytest.param("%CLUSTER_METADATA(ns):3%", "takes no :length", id="length-on-cluster-metadata"),
    pytest.param(f"%REQ(x):{2**64}%", "has a :length beyond", id="length-overflow"),
    pytest.param("%REQ(a?b?c)%", "at most one alternative", id="two-alternatives"),
    pytest.param("%REQ(()%", "names the header '('", id="header-not-a-token"),
    pytest.param("%RESP(x y)%", "names the header 'x y'", id="header-with-space"),
    pytest.param("%REQ(a?:)%", "names the header ':'", id="pseudo-header-without-name"),
    pytest.param("%TRAILER(a:b)%", "no valid header name", id="header-with-colon"),
    pytest.param("%GRPC_STATUS(FOO)%", "does not take 'FOO'", id="bad-choice"),
    pytest.param("%PATH(NQ:ORIG:X)%", "at most 2 ':'-separated parts", id="too-many-parts"),
    pytest.param("%FILTER_STATE(k:FOO)%", "does not take 'FOO'", id="bad-second-part"),
    pytest.param("%METADATA(FOO:ns)%", "does not take 'FOO'", id="bad-metadata-type"),
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_values_envoy_accepts_pass(value: str) -> None:
    assert header_format_problem(value) is None


@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_values_envoy_refuses_are_found(value: str, message: str) -> None:
    problem = header_format_problem(value)

    assert problem is not None
    assert message in problem[0]


def test_a_lone_percent_hints_at_the_escape() -> None:
    problem = header_format_problem("%")

    assert problem is not None
    assert "write %% for a literal %" in problem[1]


def test_a_misspelt_variable_gets_a_did_you_mean() -> None:
    problem = header_format_problem("%DOWNSTREAM_REMOTE_ADRESS%")

    assert problem is not None
    assert "did you mean %DOWNSTREAM_REMOTE_ADDRESS%?" in problem[1]


def test_an_unknown_variable_name_is_shortened_in_the_message() -> None:
    problem = header_format_problem(f"%{'X' * 5000}%")

    assert problem is not None
    assert len(problem[0]) < 200


def test_every_known_variable_is_upper_case_like_envoy_parses_them() -> None:
    assert all(name == name.upper() and name.replace("_", "").isalnum() for name in ENVOY_HEADER_VARIABLES)


_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews.shop.example.com]
  http:
  - headers:
      {direction}:
        {operation}:
          x-client: {value}
    route:
    - destination: {{host: reviews.shop.example.com}}
"""


@pytest.mark.parametrize("direction", ["request", "response"])
@pytest.mark.parametrize("operation", ["set", "add"])
def test_a_lone_percent_in_a_header_operation_is_an_error_at_its_line(direction: str, operation: str) -> None:
    text = _VS.format(direction=direction, operation=operation, value="'50%'")

    result = load_text(SERVICE_ENTRY, text)

    (finding,) = [f for f in result.findings if "starts no Envoy variable" in f.message]
    assert finding.path == f"spec.http[0].headers.{direction}.{operation}.x-client"
    assert finding.line == line_containing("x-client", SERVICE_ENTRY, text)
    assert "'x-client'" in finding.message


def test_a_variable_in_a_header_operation_passes() -> None:
    text = _VS.format(direction="request", operation="set", value="'%DOWNSTREAM_REMOTE_ADDRESS%'")

    result = load_text(SERVICE_ENTRY, text)

    assert result.ok, [f.message for f in result.findings]
