"""A well-formed use of each Envoy header variable reconciler knows, for tests that hand them to real Envoy."""

from __future__ import annotations

from reconciler.validate.rules.header_format import ENVOY_HEADER_VARIABLES, Arguments

__all__ = ["variable_example"]

# A representative argument for the variables that need one (or whose argument is a format).
_ARGUMENTS = {
    "REQ": "x-request-id?x-b3-traceid",
    "REQUEST_HEADER": ":authority",
    "RESP": "content-type",
    "RESPONSE_HEADER": "server",
    "TRAILER": "grpc-status",
    "RESPONSE_TRAILER": "grpc-message",
    "DYNAMIC_METADATA": "envoy.lb:version",
    "CLUSTER_METADATA": "istio:services",
    "UPSTREAM_METADATA": "envoy.lb:version",
    "FILTER_STATE": "envoy.string:FIELD:value",
    "UPSTREAM_FILTER_STATE": "envoy.string",
    "ENVIRONMENT": "HOME",
    "QUERY_PARAM": "page",
    "METADATA": "ROUTE:envoy.lb:version",
    "COMMON_DURATION": "DS_RX_BEG:DS_TX_END:ms",
}


def variable_example(name: str) -> str:
    """``%NAME%`` with a representative argument (and a ``:length`` where the variable takes one)."""
    variable = ENVOY_HEADER_VARIABLES[name]
    argument = _ARGUMENTS.get(name)
    if argument is None and variable.arguments is Arguments.OPTIONAL:
        choices = [sorted(allowed)[0] for allowed in variable.parts if allowed is not None]
        # The time variables take an strftime format, the *_WITHOUT_PORT ones a mask length.
        argument = ":".join(choices) or ("16" if name.endswith("_WITHOUT_PORT") else "%s.%3f")
    text = f"%{name}" + (f"({argument})" if argument is not None else "")
    return text + (":8%" if variable.length else "%")
