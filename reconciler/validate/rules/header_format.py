"""Header values as Envoy reads them: substitution-format strings (``%VARIABLE%``), checked before Envoy sees them.

Envoy treats every value in ``request_headers_to_add`` / ``response_headers_to_add`` as a
format string: ``%%`` is a literal ``%``, ``%COMMAND%``, ``%COMMAND(args)%`` and
``%COMMAND(args):N%`` are variables, and anything else after a ``%`` (a lone ``%``, an unknown
command, an argument the command does not take) makes Envoy refuse the whole route
configuration. Istio passes these values through unchanged and so does reconciler, so users
can write ``%DOWNSTREAM_REMOTE_ADDRESS%``; :func:`header_format_problem` parses a value the way
Envoy's ``SubstitutionFormatParser`` does and says what Envoy would refuse. Pure.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum

from reconciler.model.text import quote

__all__ = ["ENVOY_HEADER_VARIABLES", "HEADER_NAME", "Arguments", "Variable", "header_format_problem"]


class Arguments(Enum):
    """Whether a variable takes ``(args)``: Envoy's ``CommandSyntaxChecker`` flags."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class Variable:
    """How one Envoy variable may be written: arguments, a ``:N`` length, the values each argument part takes."""

    arguments: Arguments = Arguments.NONE
    length: bool = False
    #: Per colon-separated part of the argument, the values Envoy accepts there (``None``: any).
    parts: tuple[frozenset[str] | None, ...] = ()
    #: At most this many colon-separated parts (0: no limit).
    max_parts: int = 0


_PLAIN = Variable()
_TIME = Variable(Arguments.OPTIONAL)  # an strftime format, e.g. %START_TIME(%s.%3f)%
_HEADER = Variable(Arguments.REQUIRED, length=True)  # REQ(x-a?x-b):N
_STATE = Variable(Arguments.REQUIRED, length=True, parts=(None, frozenset({"PLAIN", "TYPED", "FIELD"})), max_parts=3)
_MASKED = Variable(Arguments.OPTIONAL)  # *_WITHOUT_PORT(MASK_PREFIX_LEN)

_PLAIN_NAMES = """
REQUEST_HEADERS_BYTES BYTES_RECEIVED BYTES_RETRANSMITTED PACKETS_RETRANSMITTED PROTOCOL UPSTREAM_PROTOCOL
RESPONSE_CODE CONNECTION_TERMINATION_DETAILS RESPONSE_HEADERS_BYTES RESPONSE_TRAILERS_BYTES BYTES_SENT
UPSTREAM_REQUEST_ATTEMPT_COUNT UPSTREAM_WIRE_BYTES_SENT UPSTREAM_WIRE_BYTES_RECEIVED UPSTREAM_HEADER_BYTES_SENT
UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT UPSTREAM_HEADER_BYTES_RECEIVED UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED
DOWNSTREAM_WIRE_BYTES_SENT DOWNSTREAM_WIRE_BYTES_RECEIVED DOWNSTREAM_HEADER_BYTES_SENT
DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT DOWNSTREAM_HEADER_BYTES_RECEIVED DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED
DURATION REQUEST_DURATION REQUEST_TX_DURATION RESPONSE_DURATION ROUNDTRIP_DURATION RESPONSE_TX_DURATION
DOWNSTREAM_HANDSHAKE_DURATION UPSTREAM_CONNECTION_POOL_READY_DURATION RESPONSE_FLAGS RESPONSE_FLAGS_LONG
ROUTE_NAME VIRTUAL_CLUSTER_NAME UPSTREAM_HOST UPSTREAM_HOST_NAME UPSTREAM_HOST_NAME_WITHOUT_PORT
UPSTREAM_HOSTS_ATTEMPTED UPSTREAM_HOSTS_ATTEMPTED_WITHOUT_PORT UPSTREAM_HOST_NAMES_ATTEMPTED
UPSTREAM_HOST_NAMES_ATTEMPTED_WITHOUT_PORT UPSTREAM_CLUSTER UPSTREAM_CLUSTER_RAW UPSTREAM_LOCAL_ADDRESS
UPSTREAM_LOCAL_PORT UPSTREAM_REMOTE_ADDRESS UPSTREAM_REMOTE_PORT UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID
UPSTREAM_TRANSPORT_FAILURE_REASON UPSTREAM_DETECTED_CLOSE_TYPE UPSTREAM_LOCAL_CLOSE_REASON
DOWNSTREAM_TRANSPORT_FAILURE_REASON DOWNSTREAM_LOCAL_CLOSE_REASON DOWNSTREAM_DETECTED_CLOSE_TYPE
DOWNSTREAM_REMOTE_ADDRESS DOWNSTREAM_REMOTE_PORT DOWNSTREAM_DIRECT_REMOTE_ADDRESS DOWNSTREAM_DIRECT_REMOTE_PORT
DOWNSTREAM_LOCAL_ADDRESS DOWNSTREAM_DIRECT_LOCAL_ADDRESS DOWNSTREAM_LOCAL_PORT DOWNSTREAM_DIRECT_LOCAL_PORT
DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID CONNECTION_ID
UPSTREAM_CONNECTION_ID UPSTREAM_CONNECTION_IDS_ATTEMPTED STREAM_ID GRPC_STATUS_NUMBER
DOWNSTREAM_LOCAL_IP_SAN DOWNSTREAM_PEER_IP_SAN DOWNSTREAM_LOCAL_DNS_SAN DOWNSTREAM_PEER_DNS_SAN
DOWNSTREAM_LOCAL_URI_SAN DOWNSTREAM_PEER_URI_SAN DOWNSTREAM_LOCAL_EMAIL_SAN DOWNSTREAM_PEER_EMAIL_SAN
DOWNSTREAM_LOCAL_OTHERNAME_SAN DOWNSTREAM_PEER_OTHERNAME_SAN DOWNSTREAM_LOCAL_SUBJECT DOWNSTREAM_PEER_SUBJECT
DOWNSTREAM_PEER_ISSUER DOWNSTREAM_TLS_SESSION_ID DOWNSTREAM_TLS_CIPHER DOWNSTREAM_TLS_GROUP DOWNSTREAM_TLS_VERSION
DOWNSTREAM_PEER_FINGERPRINT_256 DOWNSTREAM_PEER_FINGERPRINT_1 DOWNSTREAM_PEER_SERIAL
DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256 DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1 DOWNSTREAM_PEER_CHAIN_SERIALS
DOWNSTREAM_PEER_ISSUER_FINGERPRINT_256 DOWNSTREAM_PEER_ISSUER_SERIAL DOWNSTREAM_PEER_CERT
TLS_JA3_FINGERPRINT TLS_JA4_FINGERPRINT UPSTREAM_PEER_SUBJECT UPSTREAM_PEER_ISSUER UPSTREAM_TLS_SESSION_ID
UPSTREAM_TLS_CIPHER UPSTREAM_TLS_GROUP UPSTREAM_TLS_VERSION UPSTREAM_SERVER_NAME UPSTREAM_PEER_CERT
UPSTREAM_PEER_URI_SAN UPSTREAM_PEER_DNS_SAN UPSTREAM_PEER_IP_SAN UPSTREAM_LOCAL_URI_SAN UPSTREAM_LOCAL_DNS_SAN
UPSTREAM_LOCAL_IP_SAN HOSTNAME LOCAL_REPLY_BODY FILTER_CHAIN_NAME ACCESS_LOG_TYPE UNIQUE_ID TRACE_ID SPAN_ID
CUSTOM_FLAGS
"""

_TIME_NAMES = """
START_TIME START_TIME_LOCAL EMIT_TIME EMIT_TIME_LOCAL DOWNSTREAM_PEER_CERT_V_START DOWNSTREAM_PEER_CERT_V_END
UPSTREAM_PEER_CERT_V_START UPSTREAM_PEER_CERT_V_END
"""

_MASKED_NAMES = """
UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT
DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT
DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT
"""

_HEADER_NAMES = "REQ REQUEST_HEADER RESP RESPONSE_HEADER TRAILER RESPONSE_TRAILER"
_STATE_NAMES = "FILTER_STATE UPSTREAM_FILTER_STATE"

#: Envoy's substitution-format variables (1.40, ``configuration/advanced/substitution_formatter``) a header
#: value may use, and how each is written. Every entry is checked with a representative argument against
#: real ``envoy --mode validate`` (tests/validate/test_validate_header_format_envoy.py).
#: Left out on purpose: ``CEL``/``TYPED_CEL`` and ``COALESCE`` (their argument is an expression or JSON that
#: only Envoy can check, so validation could not promise Envoy accepts it) and the extensions
#: ``FILE_CONTENT``/``SECRET`` (they need formatter configuration reconciler never emits); ``REQ_WITHOUT_QUERY``
#: is documented but Envoy 1.40 does not know it in a header.
ENVOY_HEADER_VARIABLES: dict[str, Variable] = {
    **dict.fromkeys(_PLAIN_NAMES.split(), _PLAIN),
    **dict.fromkeys(_TIME_NAMES.split(), _TIME),
    **dict.fromkeys(_MASKED_NAMES.split(), _MASKED),
    **dict.fromkeys(_HEADER_NAMES.split(), _HEADER),
    **dict.fromkeys(_STATE_NAMES.split(), _STATE),
    "DYNAMIC_METADATA": Variable(Arguments.REQUIRED, length=True),
    "RESPONSE_CODE_DETAILS": Variable(Arguments.OPTIONAL, parts=(frozenset({"ALLOW_WHITESPACES"}),), max_parts=1),
    "GRPC_STATUS": Variable(
        Arguments.OPTIONAL, parts=(frozenset({"CAMEL_STRING", "SNAKE_STRING", "NUMBER"}),), max_parts=1
    ),
    "REQUESTED_SERVER_NAME": Variable(
        Arguments.OPTIONAL,
        parts=(frozenset({"SNI_ONLY", "SNI_FIRST", "HOST_FIRST"}), frozenset({"ORIG", "HOST", "ORIG_OR_HOST"})),
        max_parts=2,
    ),
    # Envoy 1.40 refuses a :length on these two, whatever its docs say.
    "CLUSTER_METADATA": Variable(Arguments.REQUIRED),
    "UPSTREAM_METADATA": Variable(Arguments.REQUIRED),
    "ENVIRONMENT": Variable(Arguments.REQUIRED, length=True),
    "QUERY_PARAM": Variable(Arguments.REQUIRED, length=True),
    "QUERY_PARAMS": Variable(Arguments.OPTIONAL, length=True, parts=(frozenset({"ORIG", "DECODED"}),), max_parts=1),
    "PATH": Variable(
        Arguments.OPTIONAL,
        length=True,
        parts=(frozenset({"WQ", "NQ"}), frozenset({"ORIG", "PATH", "ORIG_OR_PATH"})),
        max_parts=2,
    ),
    "METADATA": Variable(
        Arguments.REQUIRED,
        length=True,
        parts=(
            frozenset(
                {"DYNAMIC", "CLUSTER", "ROUTE", "UPSTREAM_HOST", "LISTENER", "LISTENER_FILTER_CHAIN", "VIRTUAL_HOST"}
            ),
        ),
    ),
    "COMMON_DURATION": Variable(Arguments.REQUIRED, parts=(None, None, frozenset({"ms", "us", "ns"})), max_parts=3),
}

_MAX_LENGTH = 2**64 - 1  # Envoy parses the :length into a size_t
_HEADER_VARIABLES = frozenset(_HEADER_NAMES.split())

# Envoy's ``commandWithArgsRegex``: upper-case name, an argument without ')', an optional :length, the closing %.
_COMMAND = re.compile(r"%([A-Z0-9_]+)(?:\(([^)]*)\))?(?::([0-9]+))?%")
#: An HTTP header name as Envoy takes one (``fullmatch``): an HTTP token (RFC 9110 tchar), or one after a ':' for a
#: pseudo-header. Envoy's ``headerNameIsValid`` on each of REQ's headers (an empty one, ``?b``, is taken too), and
#: PGV's strict ``HTTP_HEADER_NAME`` (:mod:`reconciler.translate.constraints`).
HEADER_NAME = re.compile(r":?[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_EXAMPLES = "DOWNSTREAM_REMOTE_ADDRESS, REQ(x-request-id), START_TIME, HOSTNAME, UPSTREAM_CLUSTER"


def header_format_problem(value: str) -> tuple[str, str] | None:
    """What Envoy's substitution formatter would refuse in ``value``, as ``(message, hint)``; ``None`` if nothing.

    Like Envoy, stops at the first problem: a ``%`` that starts no well-formed variable, an
    unknown variable, or a known one written with arguments or a length it does not take.
    """
    position = value.find("%")
    while position >= 0:
        if value.startswith("%%", position):
            position = value.find("%", position + 2)
            continue
        match = _COMMAND.match(value, position)
        if match is None:
            return (
                f"a % at character {position + 1} starts no Envoy variable; Envoy refuses the route",
                f"write %% for a literal %, or a variable (known ones: {_EXAMPLES}, …)",
            )
        problem = _variable_problem(match.group(1), match.group(2), match.group(3))
        if problem is not None:
            return problem
        position = value.find("%", match.end())
    return None


def _variable_problem(name: str, argument: str | None, length: str | None) -> tuple[str, str] | None:
    variable = ENVOY_HEADER_VARIABLES.get(name)
    argument = argument or None  # Envoy reads an empty (...) as no argument
    shown = quote(f"%{name}%")
    if variable is None:
        close = difflib.get_close_matches(name, list(ENVOY_HEADER_VARIABLES), n=1)
        suggestion = f"did you mean %{close[0]}%? " if close else ""
        return (
            f"unknown Envoy variable {shown}",
            f"{suggestion}known ones: {_EXAMPLES}, … (Envoy's substitution formatter docs); write %% for a literal %",
        )
    if argument is None and variable.arguments is Arguments.REQUIRED:
        return f"Envoy variable {shown} needs an argument", f"e.g. %{name}(x-request-id)% for a header variable"
    if argument is not None and variable.arguments is Arguments.NONE:
        return f"Envoy variable {shown} takes no argument", f"write %{name}%"
    if length is not None and not variable.length:
        return f"Envoy variable {shown} takes no :length", f"write %{name}% without the :{length}"
    if length is not None and int(length) > _MAX_LENGTH:
        return f"Envoy variable {shown} has a :length beyond {_MAX_LENGTH}", "a length is a character count"
    return _argument_problem(name, variable, argument) if argument is not None else None


def _argument_problem(name: str, variable: Variable, argument: str) -> tuple[str, str] | None:
    if name in _HEADER_VARIABLES:
        headers = argument.split("?")
        if len(headers) > 2:
            return (
                f"Envoy variable %{name}% takes one header and at most one alternative (a?b), not {quote(argument)}",
                "",
            )
        bad = next((header for header in headers if header and not HEADER_NAME.fullmatch(header)), None)
        if bad is not None:
            return (
                f"Envoy variable %{name}% names the header {quote(bad)}, which is no valid header name",
                "a header name is letters, digits and !#$%&'*+-.^_`|~ (a leading : for a pseudo-header)",
            )
    parts = argument.split(":")
    if variable.max_parts and len(parts) > variable.max_parts:
        return (
            f"Envoy variable %{name}% takes at most {variable.max_parts} ':'-separated parts, not {quote(argument)}",
            "",
        )
    for part, allowed in zip(parts, variable.parts, strict=False):
        if allowed is not None and part not in allowed:
            return (
                f"Envoy variable %{name}% does not take {quote(part)} in its argument",
                f"one of: {', '.join(sorted(allowed))}",
            )
    return None
