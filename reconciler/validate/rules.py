"""Per-resource rules beyond types: what Istio's own validation rejects (or warns about).

The schema decoder has already checked types, required fields, enums, one-ofs and value
ranges; these rules look at fields together, the way istio/istio ``pkg/config/validation``
does (``ValidateVirtualService``, ``ValidateDestinationRule``, ``ValidateGateway``,
``ValidateServiceEntry``). Each finding is code IST0106 (Istio's ``SchemaValidationError``),
error-level where Istio rejects the object and warning-level where Istio only warns.

A few rules are stricter than Istio, where this product has no other source of the
information Istio would use (no Kubernetes yet): a ``STATIC`` ServiceEntry needs endpoints
or a workload selector; a fault ``abort`` needs ``httpStatus`` and a ``delay`` needs
``fixedDelay`` (the alternatives are fields reconciler does not act on). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.model.common import Duration, Percent
from reconciler.model.config import Kind, Resource
from reconciler.model.destinationrule import (
    ConnectionPool,
    DestinationRuleSpec,
    OutlierDetection,
    TLSSettings,
    TrafficPolicy,
)
from reconciler.model.gateway import GatewaySpec, Server, ServerTLSSettings
from reconciler.model.hosts import host_matches, is_ip_address
from reconciler.model.protocols import HTTP_PROTOCOLS, KNOWN_HTTP_STATUS_CODES, PROTOCOLS, TLS_PROTOCOLS
from reconciler.model.rolloutpolicy import LatencyCheck, RolloutPolicySpec
from reconciler.model.serviceentry import ServiceEntrySpec
from reconciler.model.source import child_path
from reconciler.model.text import quote
from reconciler.model.virtualservice import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPFaultInjection,
    HTTPRoute,
    HTTPRouteDestination,
    RouteDestination,
    VirtualServiceSpec,
)
from reconciler.validate.findings import Code, Finding, Severity
from reconciler.validate.report import resource_finding
from reconciler.validate.schema import MAX_UINT32

__all__ = [
    "MAX_HEADER_VALUE_BYTES",
    "RETRY_ON_POLICIES",
    "check_resource",
    "dns1123_label_error",
    "wildcard_domain_error",
]

#: Envoy's ``x-envoy-retry-on`` and ``x-envoy-retry-grpc-on`` conditions, as Istio accepts them.
RETRY_ON_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)

_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_WILDCARD_LABEL = re.compile(rf"^(?:\*|(?:\*|\*-)?{_LABEL})$")
_QUALIFIED_NAME = re.compile(r"^(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$")
_MILLISECOND = 1_000_000
#: Envoy's limit on one header value it adds (``HeaderValue.value``: 16 KiB).
MAX_HEADER_VALUE_BYTES = 16 * 1024
_KB = 1024


def dns1123_label_error(name: str) -> str:
    """Why ``name`` is not a DNS-1123 label (as Istio's ``IsDNS1123Label`` checks), or ``""``."""
    if not name:
        return "must not be empty"
    if len(name) > 63:
        return f"{quote(name)} is longer than 63 characters"
    if not _DNS1123_LABEL.match(name):
        return (
            f"{quote(name)} is not a DNS-1123 label"
            " (letters, digits and '-', starting and ending with a letter or digit)"
        )
    return ""


def wildcard_domain_error(domain: str, *, wildcard: bool = True) -> str:
    """Why ``domain`` is not a valid (wildcard) host name, as Istio's ``ValidateWildcardDomain``, or ``""``.

    A ``*`` is allowed only as (the start of) the first label; ``wildcard=False`` is
    Istio's ``ValidateFQDN``.
    """
    if not domain:
        return "empty domain name not allowed"
    if len(domain) > 255:
        return f"domain name {quote(domain)} too long (max 255)"
    first, dot, rest = domain.partition(".")
    first_ok = _WILDCARD_LABEL.match(first) if wildcard else _DNS1123_LABEL.match(first)
    if not first_ok or len(first) > 63:
        return f"domain name {quote(domain)} invalid (label {quote(first)} invalid)"
    if not dot:
        return ""
    labels = rest.split(".")
    if labels[-1].isdigit():
        return f"domain name {quote(domain)} invalid (top level domain {quote(labels[-1])} cannot be all-numeric)"
    for index, label in enumerate(labels):
        if index == len(labels) - 1 and label == "":
            return ""  # a trailing dot: an absolute name
        if len(label) > 63 or not _DNS1123_LABEL.match(label):
            return f"domain name {quote(domain)} invalid (label {quote(label)} invalid)"
    return ""


class _Checker:
    """Collects the findings about one resource."""

    def __init__(self, resource: Resource[Any]) -> None:
        self.resource = resource
        self.findings: list[Finding] = []

    def error(self, path: str, message: str, *, hint: str = "") -> None:
        self.findings.append(resource_finding(self.resource, code=Code.SCHEMA, path=path, message=message, hint=hint))

    def warning(self, path: str, message: str, *, hint: str = "") -> None:
        self.findings.append(
            resource_finding(
                self.resource, code=Code.SCHEMA, path=path, message=message, severity=Severity.WARNING, hint=hint
            )
        )

    # Shared value checks -----------------------------------------------------------------------

    def duration_at_least_1ms(self, duration: Duration | None, path: str) -> None:
        """Istio's ``ValidateDuration``: Envoy takes these in whole milliseconds, and 0 would disable them."""
        if duration is None:
            return
        if duration.nanos < _MILLISECOND:
            self.error(path, f"duration {duration.text} must be at least 1ms", hint="write e.g. 1ms, 250ms or 2s")
        elif duration.nanos % _MILLISECOND:
            self.error(path, f"duration {duration.text} is finer than a millisecond; only ms precision is supported")

    def percentage(self, percent: Percent | None, path: str) -> None:
        # Envoy keeps fractions to a millionth; smaller non-zero shares would silently become 0.
        if percent is not None and 0.0 < percent.value < 0.0001:
            self.error(child_path(path, "value"), f"percentage {percent.value} is neither 0 nor in 0.0001..100")

    def labels(self, labels: Mapping[str, str] | None, path: str) -> None:
        """Kubernetes label syntax (Istio's ``labels.Instance.Validate``)."""
        for key, value in (labels or {}).items():
            key_path = child_path(path, key)
            prefix, slash, name = key.rpartition("/")
            bad_prefix = bool(slash) and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix))
            if bad_prefix or len(name) > 63 or not _QUALIFIED_NAME.match(name):
                self.error(
                    key_path,
                    f"invalid label key {quote(key)}",
                    hint="an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.'",
                )
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                self.error(
                    key_path, f"invalid label value {quote(value)}", hint="up to 63 letters, digits, '-', '_' or '.'"
                )

    def export_to(self, export_to: tuple[str, ...], path: str, *, allow_none: bool) -> None:
        """``exportTo``: ``.``, ``*``, a namespace (``~`` for ServiceEntries), no duplicates, no mixing with ``*``."""
        seen: set[str] = set()
        namespace = self.resource.namespace
        for index, entry in enumerate(export_to):
            entry_path = f"{path}[{index}]"
            key = namespace if entry == "." else entry
            if key in seen:
                self.error(entry_path, f"duplicate entry {quote(entry)} in exportTo")
                continue
            seen.add(key)
            if entry == "~" and not allow_none:
                self.error(entry_path, "exportTo '~' (visible to no one) is only allowed on ServiceEntries")
            elif entry not in (".", "*", "~") and dns1123_label_error(entry):
                self.error(entry_path, f"exportTo entry {quote(entry)} is not '.', '*' or a namespace name")
        if len(export_to) > 1 and "*" in export_to:
            self.error(
                path, "exportTo cannot mix public (*) with other entries", hint="'*' alone already means everywhere"
            )
        if len(export_to) > 1 and "~" in export_to:
            self.error(path, "cannot export a ServiceEntry to no one (~) and someone")


# VirtualService ----------------------------------------------------------------------------------


def _check_virtual_service(check: _Checker, spec: VirtualServiceSpec) -> None:
    applies_to_mesh = spec.applies_to_mesh
    if not spec.hosts:
        check.error(
            "spec.hosts",
            "a VirtualService needs at least one host",
            hint="list the hosts it routes, e.g. `hosts: [reviews]`; delegate VirtualServices are not supported",
        )
    all_valid = True
    for index, host in enumerate(spec.hosts):
        path = f"spec.hosts[{index}]"
        problem = wildcard_domain_error(host)
        if problem and not is_ip_address(host):
            check.error(path, f"invalid host: {problem}")
            all_valid = False
        elif applies_to_mesh and host == "*":
            check.error(
                path,
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                hint="name the hosts, or bind the VirtualService to a Gateway with `gateways:`",
            )
            all_valid = False
    if all_valid:
        _check_duplicate_hosts(check, spec.hosts)
    for index, gateway in enumerate(spec.gateways):
        _check_gateway_name(check, gateway, f"spec.gateways[{index}]")
    if not spec.http and not spec.tcp and not spec.tls:
        check.error("spec", "http, tcp or tls must be provided in virtual service", hint="add an `http:` route")
    for index, route in enumerate(spec.http):
        _check_http_route(check, route, f"spec.http[{index}]")
    for index, tcp in enumerate(spec.tcp):
        path = f"spec.tcp[{index}]"
        if not tcp.route:
            check.error(path, "TCP route is required", hint="add `route:` with at least one destination")
        _check_l4_destinations(check, tcp.route, f"{path}.route")
    for index, tls in enumerate(spec.tls):
        path = f"spec.tls[{index}]"
        if not tls.match:
            check.error(
                path, "TLS route must have at least one match condition", hint="add `match: [{sniHosts: [...]}]`"
            )
        for match_index, match in enumerate(tls.match):
            match_path = f"{path}.match[{match_index}]"
            if not match.sni_hosts:
                check.error(f"{match_path}.sniHosts", "TLS match must have at least one SNI host")
            for sni_index, sni in enumerate(match.sni_hosts):
                _check_sni_host(check, sni, spec.hosts, f"{match_path}.sniHosts[{sni_index}]")
        if not tls.route:
            check.error(path, "TLS route is required", hint="add `route:` with at least one destination")
        _check_l4_destinations(check, tls.route, f"{path}.route")
    check.export_to(spec.export_to, "spec.exportTo", allow_none=False)


def _check_duplicate_hosts(check: _Checker, hosts: tuple[str, ...]) -> None:
    """Istio rejects two hosts of one VirtualService that match each other (``*.foo.com`` and ``a.foo.com``)."""
    lowered = [host.lower() for host in hosts]
    if not any("*" in host for host in lowered):
        # The common case needs no pairwise comparison.
        seen: dict[str, int] = {}
        for index, host in enumerate(lowered):
            if host in seen:
                check.error(f"spec.hosts[{index}]", f"duplicate hosts in virtual service: {host} & {host}")
            seen.setdefault(host, index)
        return
    for i, first in enumerate(lowered):
        for j in range(i + 1, len(lowered)):
            if host_matches(first, lowered[j]) or host_matches(lowered[j], first):
                check.error(f"spec.hosts[{j}]", f"duplicate hosts in virtual service: {first} & {lowered[j]}")


def _check_gateway_name(check: _Checker, gateway: str, path: str) -> None:
    if gateway == "mesh":
        return
    namespace, slash, name = gateway.partition("/")
    if not slash:
        if "." in gateway:
            parts = gateway.split(".")
            check.warning(
                path,
                f"using legacy gatewayName format {quote(gateway)}",
                hint=f"prefer the <namespace>/<name> format: {parts[1]}/{parts[0]}",
            )
        problem = wildcard_domain_error(gateway, wildcard=False)
        if problem:
            check.error(path, f"invalid gateway name: {problem}")
        return
    if not namespace or not name:
        check.error(path, "gateway namespace and name cannot be empty", hint="write namespace/name")
        return
    if dns1123_label_error(namespace):
        check.error(path, f"invalid value for namespace: {quote(namespace)}")
    if dns1123_label_error(name):
        check.error(path, f"invalid value for gateway name: {quote(name)}")


def _check_sni_host(check: _Checker, sni: str, hosts: tuple[str, ...], path: str) -> None:
    if wildcard_domain_error(sni):
        if is_ip_address(sni):
            check.warning(
                path, f"using an IP address ({quote(sni)}) goes against the SNI spec; most clients do not send it"
            )
        else:
            check.error(path, f"invalid SNI host: {wildcard_domain_error(sni)}")
        return
    if not any(host_matches(host.lower(), sni.lower()) for host in hosts):
        check.error(
            path,
            f"SNI host {quote(sni)} is not a compatible subset of any of the virtual service hosts:"
            f" [{', '.join(hosts)}]",
            hint="add the SNI host (or a wildcard covering it) to spec.hosts",
        )


def _check_http_route(check: _Checker, route: HTTPRoute, path: str) -> None:
    if route.redirect is not None:
        for other, present in (("fault", route.fault), ("rewrite", route.rewrite)):
            if present is not None:
                check.error(path, f"HTTP route cannot contain both {other} and redirect")
    elif route.direct_response is not None:
        for other, present in (("fault", route.fault), ("rewrite", route.rewrite)):
            if present is not None:
                check.error(path, f"HTTP route cannot contain both {other} and directResponse")
    elif not route.route:
        check.error(
            path,
            "HTTP route, redirect or directResponse is required",
            hint="add `route:` with at least one destination",
        )
    if route.mirror is not None and route.mirrors:
        check.error(path, "HTTP route cannot contain both mirror and mirrors", hint="move the mirror into `mirrors:`")
    _check_headers(check, route.headers, f"{path}.headers")
    _check_authority_rewrite(check, route, path)
    if route.fault is not None:
        _check_fault(check, route.fault, f"{path}.fault")
    if route.redirect is not None:
        redirect, redirect_path = route.redirect, f"{path}.redirect"
        if not (redirect.uri or redirect.authority or redirect.port or redirect.scheme):
            check.error(redirect_path, "redirect must specify URI, authority, scheme, or port")
        if redirect.redirect_code is not None and not 300 <= redirect.redirect_code <= 399:
            check.error(
                f"{redirect_path}.redirectCode",
                f"{redirect.redirect_code} is not a valid redirect code, must be 3xx",
                hint="use 301, 302, 303, 307 or 308",
            )
        if redirect.scheme is not None and redirect.scheme not in ("http", "https"):
            check.error(f"{redirect_path}.scheme", 'invalid redirect scheme, must be "http" or "https"')
    if route.direct_response is not None:
        response, response_path = route.direct_response, f"{path}.directResponse"
        if not 200 <= response.status <= 599:
            check.error(f"{response_path}.status", f"HTTP status {response.status} is not in range 200-599")
        size = len((response.body.string or "").encode()) if response.body else 0
        if size > 1024 * _KB:
            check.error(f"{response_path}.body", "direct responses must be smaller than 1MB")
        elif size > 100 * _KB:
            check.warning(f"{response_path}.body", "large direct responses may impact control plane performance")
    if route.rewrite is not None and not (route.rewrite.uri or route.rewrite.authority):
        check.error(f"{path}.rewrite", "rewrite must specify URI, authority, or both")
    if route.retries is not None:
        retries, retries_path = route.retries, f"{path}.retries"
        if not retries.attempts and (retries.per_try_timeout is not None or retries.retry_on is not None):
            # Istio reads unset attempts as 0, and 0 attempts disables retries: the rest would be ignored.
            check.error(
                f"{retries_path}.attempts" if retries.attempts == 0 else retries_path,
                "http retry policy configured when attempts are set to 0 (disabled)",
                hint="set `attempts:` to the number of retries, or remove `retries:`",
            )
        check.duration_at_least_1ms(retries.per_try_timeout, f"{retries_path}.perTryTimeout")
        if retries.retry_on is not None:
            _check_retry_on(check, retries.retry_on, f"{retries_path}.retryOn")
    for index, destination in enumerate(route.route):
        _check_destination(check, destination.destination, f"{path}.route[{index}].destination")
        _check_headers(check, destination.headers, f"{path}.route[{index}].headers")
    _check_total_weight(check, route.route, f"{path}.route")
    if route.mirror is not None:
        _check_destination(check, route.mirror, f"{path}.mirror")
    for index, mirror in enumerate(route.mirrors):
        _check_destination(check, mirror.destination, f"{path}.mirrors[{index}].destination")
        check.percentage(mirror.percentage, f"{path}.mirrors[{index}].percentage")
    check.percentage(route.mirror_percentage, f"{path}.mirrorPercentage")


def _check_total_weight(
    check: _Checker, destinations: tuple[HTTPRouteDestination, ...] | tuple[RouteDestination, ...], path: str
) -> None:
    """Weights are relative (they need not sum to 100), but they must not sum to 0, nor past Envoy's uint32."""
    total = sum(d.weight or 0 for d in destinations)
    if len(destinations) > 1 and total == 0:
        check.error(
            path,
            "total destination weight = 0",
            hint="give at least one destination a positive weight; weights are relative and need not sum to 100",
        )
    elif total > MAX_UINT32:
        check.error(
            path,
            f"destination weights sum to {total}, more than Envoy accepts ({MAX_UINT32})",
            hint="weights are relative: scale them down, e.g. to percentages that sum to 100",
        )


def _check_l4_destinations(check: _Checker, destinations: tuple[RouteDestination, ...], path: str) -> None:
    for index, destination in enumerate(destinations):
        _check_destination(check, destination.destination, f"{path}[{index}].destination")
    _check_total_weight(check, destinations, path)


def _check_destination(check: _Checker, destination: Destination, path: str) -> None:
    if destination.host == "*":
        check.error(f"{path}.host", "invalid destination host *", hint="route to a named service host")
    else:
        problem = wildcard_domain_error(destination.host)
        if problem:
            check.error(f"{path}.host", f"invalid destination host: {problem}")
    if destination.subset is not None:
        problem = dns1123_label_error(destination.subset)
        if problem:
            check.error(f"{path}.subset", f"subset name is invalid: {problem}")
    if destination.port is not None and destination.port.number is None:
        check.error(f"{path}.port", "destination port needs a number", hint="write `port: {number: 9080}`")


def _check_retry_on(check: _Checker, retry_on: str, path: str) -> None:
    for policy in retry_on.split(","):
        if policy in RETRY_ON_POLICIES or (policy.isdigit() and int(policy) in KNOWN_HTTP_STATUS_CODES):
            continue
        stripped = policy.strip()
        hint = (
            "remove the spaces around commas"
            if stripped != policy and (stripped in RETRY_ON_POLICIES or stripped.isdigit())
            else "use Envoy retry conditions (5xx, gateway-error, reset, connect-failure, retriable-4xx, "
            "refused-stream, retriable-status-codes, ...) or HTTP status codes, separated by commas"
        )
        check.error(path, f"{quote(policy)} is not a valid retryOn policy", hint=hint)


def _check_fault(check: _Checker, fault: HTTPFaultInjection, path: str) -> None:
    if fault.abort is None and fault.delay is None:
        check.error(path, "HTTP fault injection must have an abort and/or a delay")
    if fault.abort is not None:
        abort_path = f"{path}.abort"
        if fault.abort.http_status is None:
            check.error(abort_path, "fault abort needs httpStatus", hint="add e.g. `httpStatus: 503`")
        elif not 200 <= fault.abort.http_status <= 599:
            check.error(f"{abort_path}.httpStatus", f"HTTP status {fault.abort.http_status} is not in range 200-599")
        check.percentage(fault.abort.percentage, f"{abort_path}.percentage")
    if fault.delay is not None:
        delay_path = f"{path}.delay"
        if fault.delay.fixed_delay is None:
            check.error(delay_path, "fault delay needs fixedDelay", hint="add e.g. `fixedDelay: 5s`")
        check.duration_at_least_1ms(fault.delay.fixed_delay, f"{delay_path}.fixedDelay")
        check.percentage(fault.delay.percentage, f"{delay_path}.percentage")
        if fault.delay.percent is not None:
            if fault.delay.percent > 100:
                check.error(f"{delay_path}.percent", f"percentage {fault.delay.percent} is not in range 0..100")
            check.warning(f"{delay_path}.percent", "`percent` is deprecated", hint="use `percentage: {value: N}`")


def _check_headers(check: _Checker, headers: Headers | None, path: str) -> None:
    """Envoy refuses to touch pseudo-headers, and Host is only set through the authority."""
    if headers is None:
        return
    _check_header_operations(check, headers.request, f"{path}.request", request=True)
    _check_header_operations(check, headers.response, f"{path}.response", request=False)


def _check_header_operations(check: _Checker, operations: HeaderOperations | None, path: str, *, request: bool) -> None:
    if operations is None:
        return
    for field in ("set", "add"):
        for name, value in (getattr(operations, field) or {}).items():
            lowered = name.lower()
            name_path = child_path(f"{path}.{field}", name)
            size = len(value.encode())
            if size > MAX_HEADER_VALUE_BYTES:
                check.error(
                    name_path,
                    f"header value of {name!r} is {size} bytes, more than Envoy accepts ({MAX_HEADER_VALUE_BYTES})",
                )
            if request and lowered in (":authority", "host"):
                continue  # rewriting the authority on requests is allowed (checked for conflicts elsewhere)
            if not request and lowered == "host":
                check.error(name_path, f"invalid header {quote(name)}: cannot set Host header")
            elif lowered.startswith(":"):
                check.error(name_path, f'invalid header {quote(name)}: header cannot have ":" prefix')
    for index, name in enumerate(operations.remove):
        lowered = name.lower()
        if lowered == "host":
            check.error(f"{path}.remove[{index}]", f"invalid header {quote(name)}: cannot remove Host header")
        elif lowered.startswith(":"):
            check.error(f"{path}.remove[{index}]", f'invalid header {quote(name)}: header cannot have ":" prefix')


def _check_authority_rewrite(check: _Checker, route: HTTPRoute, path: str) -> None:
    current = route.rewrite.authority if route.rewrite is not None else None
    request = route.headers.request if route.headers is not None else None
    for field in ("set", "add"):
        for name, value in (getattr(request, field, None) or {}).items():
            if name.lower() not in (":authority", "host"):
                continue
            if current:
                check.error(
                    child_path(f"{path}.headers.request.{field}", name),
                    f"authority header cannot be set multiple times: have {quote(current)},"
                    f" attempting to set {quote(value)}",
                )
            current = value


# DestinationRule ---------------------------------------------------------------------------------


def _check_destination_rule(check: _Checker, spec: DestinationRuleSpec) -> None:
    problem = wildcard_domain_error(spec.host)
    if problem:
        check.error("spec.host", f"invalid host: {problem}")
    _check_traffic_policy(check, spec.traffic_policy, "spec.trafficPolicy")
    seen: dict[str, int] = {}
    for index, subset in enumerate(spec.subsets):
        path = f"spec.subsets[{index}]"
        if subset.name in seen:
            check.error(
                f"{path}.name",
                f"duplicate subset names: {subset.name}",
                hint=f"subset {quote(subset.name)} is already spec.subsets[{seen[subset.name]}]",
            )
        seen.setdefault(subset.name, index)
        problem = dns1123_label_error(subset.name)
        if problem:
            check.error(f"{path}.name", f"subset name is invalid: {problem}")
        check.labels(subset.labels, f"{path}.labels")
        _check_traffic_policy(check, subset.traffic_policy, f"{path}.trafficPolicy")
    check.export_to(spec.export_to, "spec.exportTo", allow_none=False)
    if spec.workload_selector is not None:
        check.labels(spec.workload_selector.match_labels, "spec.workloadSelector.matchLabels")
        if spec.export_to and tuple(spec.export_to) not in ((".",), (check.resource.namespace,)):
            check.error(
                "spec.exportTo",
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            )


def _check_traffic_policy(check: _Checker, policy: TrafficPolicy | None, path: str) -> None:
    if policy is None:
        return
    if not (policy.load_balancer or policy.connection_pool or policy.outlier_detection or policy.tls) and not (
        policy.port_level_settings
    ):
        check.error(path, "traffic policy must have at least one field", hint="remove the empty trafficPolicy")
        return
    _check_policy_parts(
        check,
        connection_pool=policy.connection_pool,
        outlier=policy.outlier_detection,
        tls=policy.tls,
        path=path,
    )
    for index, port_policy in enumerate(policy.port_level_settings):
        port_path = f"{path}.portLevelSettings[{index}]"
        if port_policy.port is None or port_policy.port.number is None:
            check.error(port_path, "portTrafficPolicy must have valid port", hint="add `port: {number: N}`")
        if not (
            port_policy.load_balancer or port_policy.connection_pool or port_policy.outlier_detection or port_policy.tls
        ):
            check.error(port_path, "port traffic policy must have at least one field")
            continue
        _check_policy_parts(
            check,
            connection_pool=port_policy.connection_pool,
            outlier=port_policy.outlier_detection,
            tls=port_policy.tls,
            path=port_path,
        )


def _check_policy_parts(
    check: _Checker,
    *,
    connection_pool: ConnectionPool | None,
    outlier: OutlierDetection | None,
    tls: TLSSettings | None,
    path: str,
) -> None:
    if connection_pool is not None:
        pool_path = f"{path}.connectionPool"
        if connection_pool.tcp is None and connection_pool.http is None:
            check.error(pool_path, "connection pool must have at least one field")
        if connection_pool.tcp is not None:
            check.duration_at_least_1ms(connection_pool.tcp.connect_timeout, f"{pool_path}.tcp.connectTimeout")
    if outlier is not None:
        outlier_path = f"{path}.outlierDetection"
        check.duration_at_least_1ms(outlier.base_ejection_time, f"{outlier_path}.baseEjectionTime")
        check.duration_at_least_1ms(outlier.interval, f"{outlier_path}.interval")
        for field, value in (
            ("maxEjectionPercent", outlier.max_ejection_percent),
            ("minHealthPercent", outlier.min_health_percent),
        ):
            if value is not None and value > 100:
                check.error(f"{outlier_path}.{field}", f"percentage {value} is not in range 0..100")
        if outlier.consecutive_errors is not None:
            check.warning(
                f"{outlier_path}.consecutiveErrors",
                "outlier detection consecutive errors is deprecated",
                hint="use consecutiveGatewayErrors or consecutive5xxErrors instead",
            )
    if tls is not None:
        _check_client_tls(check, tls, f"{path}.tls")


def _check_client_tls(check: _Checker, tls: TLSSettings, path: str) -> None:
    """Istio's ``ValidateTLS`` for upstream (client-side) TLS."""
    if tls.mode in ("SIMPLE", "MUTUAL") and tls.credential_name:
        if tls.client_certificate or tls.ca_certificates or tls.private_key:
            check.error(
                path,
                "cannot specify client certificates or CA certificate if credentialName is set",
                hint="the credential (a secret) already holds them",
            )
        return
    if tls.mode == "MUTUAL":
        if not tls.client_certificate:
            check.error(
                path, "client certificate required for mutual tls", hint="set clientCertificate or credentialName"
            )
        if not tls.private_key:
            check.error(path, "private key required for mutual tls", hint="set privateKey or credentialName")


# Gateway -----------------------------------------------------------------------------------------


def _check_gateway(check: _Checker, spec: GatewaySpec) -> None:
    if dns1123_label_error(check.resource.name):
        # Gateway names end up in route names as ns/name; dots would make them ambiguous.
        check.error(
            "metadata.name", f"invalid gateway name: {quote(check.resource.name)}", hint="no dots in Gateway names"
        )
    if not spec.servers:
        check.error("spec.servers", "gateway must have at least one server", hint="add a server with port and hosts")
    port_names: dict[str, int] = {}
    for index, server in enumerate(spec.servers):
        path = f"spec.servers[{index}]"
        _check_server(check, server, path)
        name = server.port.name
        if name in port_names:
            check.error(
                f"{path}.port.name",
                f"port names in servers must be unique: duplicate name {name}",
                hint=f"spec.servers[{port_names[name]}] already uses {quote(name)}",
            )
        port_names.setdefault(name, index)


def _check_server(check: _Checker, server: Server, path: str) -> None:
    if not server.hosts:
        check.error(f"{path}.hosts", "server config must contain at least one host", hint='e.g. `hosts: ["*"]`')
    for index, entry in enumerate(server.hosts):
        _check_gateway_host(check, entry, f"{path}.hosts[{index}]")
    port_path = f"{path}.port"
    protocol = server.port.protocol.upper()
    protocol_ok = protocol in PROTOCOLS
    if not protocol_ok:
        check.error(
            f"{port_path}.protocol",
            f"invalid protocol {quote(server.port.protocol)}",
            hint="use one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS",
        )
    if server.port.target_port is not None:
        check.error(f"{port_path}.targetPort", "targetPort has no impact on Gateways", hint="remove targetPort")
    if not server.port.name:
        check.error(f"{port_path}.name", "port name must be set")
    if server.tls is not None:
        _check_server_tls(check, server.tls, f"{path}.tls")
    if not protocol_ok:
        return
    tls = server.tls
    if protocol in TLS_PROTOCOLS and tls is None:
        check.error(
            path,
            "server must have TLS settings for HTTPS/TLS protocols",
            hint="add `tls: {mode: SIMPLE, credentialName: ...}` (or PASSTHROUGH for TLS)",
        )
    elif protocol not in TLS_PROTOCOLS and tls is not None:
        if protocol in HTTP_PROTOCOLS:
            # Plain-text HTTP servers may carry only httpsRedirect.
            if (
                tls.server_certificate
                or tls.private_key
                or tls.ca_certificates
                or (tls.mode not in (None, "PASSTHROUGH"))
            ):
                check.error(f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports")
        else:
            check.error(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")
    if tls is not None and tls.https_redirect and protocol not in HTTP_PROTOCOLS:
        check.warning(f"{path}.tls.httpsRedirect", "tls.httpsRedirect should only be used with http servers")


def _check_gateway_host(check: _Checker, entry: str, path: str) -> None:
    """A server host: ``host`` (old form), or ``namespace/host`` with namespace ``*``, ``.`` or a name."""
    namespace, slash, host = entry.partition("/")
    if not slash:
        problem = wildcard_domain_error(entry)
        if problem:
            check.error(path, f"invalid host: {problem}")
        return
    if not namespace or not host:
        check.error(path, "config namespace and dnsName in host entry cannot be empty", hint="write ns/host, e.g. */*")
        return
    if namespace not in ("*", ".") and dns1123_label_error(namespace):
        check.error(path, f"invalid namespace value {quote(namespace)} in gateway")
    if host != "*" and "." not in host:
        check.error(
            path,
            "short names (non FQDN) are not allowed",
            hint=f"write the full name, e.g. {namespace}/{host}.example.com",
        )
    problem = wildcard_domain_error(host)
    if problem and not is_ip_address(host):
        check.error(path, f"invalid host: {problem}")


def _check_server_tls(check: _Checker, tls: ServerTLSSettings, path: str) -> None:
    """Istio's ``validateTLSOptions`` for a gateway server."""
    if tls.mode == "ISTIO_MUTUAL":
        for field, value in (
            ("serverCertificate", tls.server_certificate),
            ("privateKey", tls.private_key),
            ("caCertificates", tls.ca_certificates),
            ("credentialName", tls.credential_name),
        ):
            if value:
                check.error(f"{path}.{field}", f"ISTIO_MUTUAL TLS cannot have associated {field}")
        return
    has_files = bool(tls.server_certificate and tls.private_key)
    if tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
        tls.server_certificate or tls.private_key or tls.ca_certificates or tls.credential_name
    ):
        check.warning(path, f"{tls.mode} mode does not use certificates, they will be ignored")
    if has_files and tls.credential_name:
        check.error(path, "only one of credentialName, serverCertificate/privateKey should be specified")
    if tls.mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
        if tls.credential_name:
            return  # the credential holds certificate, key and CA
        prefix = "SIMPLE TLS" if tls.mode == "SIMPLE" else "MUTUAL TLS"
        if tls.mode != "SIMPLE" and not tls.ca_certificates:
            check.error(path, f"{prefix} requires a client CA bundle", hint="set caCertificates or credentialName")
        if not tls.server_certificate:
            check.error(
                path,
                f"{prefix} requires a server certificate",
                hint="set credentialName (a secret) or serverCertificate",
            )
        if not tls.private_key:
            check.error(path, f"{prefix} requires a private key", hint="set credentialName (a secret) or privateKey")


# ServiceEntry ------------------------------------------------------------------------------------


def _check_service_entry(check: _Checker, spec: ServiceEntrySpec) -> None:
    if spec.workload_selector is not None:
        check.labels(spec.workload_selector.labels, "spec.workloadSelector.labels")
        if not spec.workload_selector.labels:
            check.warning(
                "spec.workloadSelector", "workload selector without labels selects every workload in the namespace"
            )
        if spec.endpoints:
            check.error("spec", "only one of workloadSelector or endpoints is allowed in a ServiceEntry")
    if not spec.hosts:
        check.error(
            "spec.hosts", "service entry must have at least one host", hint="list the hosts, e.g. api.example.com"
        )
    for index, host in enumerate(spec.hosts):
        path = f"spec.hosts[{index}]"
        if host == "*":
            check.error(
                path, "invalid host *", hint="a ServiceEntry cannot capture every host; name them or use *.domain"
            )
            continue
        problem = wildcard_domain_error(host)
        if problem:
            check.error(path, f"invalid host: {problem}")
        elif host.startswith("*") and not host.startswith("*."):
            check.warning(
                path,
                f"partial wildcard {quote(host)} not allowed",
                hint="wildcards must be a whole first label: *.example.com",
            )
    names: dict[str, int] = {}
    numbers: dict[int, int] = {}
    service_port_names = frozenset(port.name for port in spec.ports)
    for index, port in enumerate(spec.ports):
        path = f"spec.ports[{index}]"
        if port.name in names:
            check.error(f"{path}.name", f"service entry port name {quote(port.name)} already defined")
        names.setdefault(port.name, index)
        if port.number in numbers:
            check.error(f"{path}.number", f"service entry port {port.number} already defined")
        numbers.setdefault(port.number, index)
        problem = dns1123_label_error(port.name)
        if problem:
            check.error(f"{path}.name", f"invalid port name: {problem}")
        if port.protocol and port.protocol.upper() not in PROTOCOLS:
            check.error(
                f"{path}.protocol",
                f"unsupported protocol: {port.protocol}",
                hint="use one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS",
            )
    resolution = spec.resolution or "NONE"
    if resolution == "NONE" and spec.endpoints:
        check.error(
            "spec.endpoints",
            "no endpoints should be provided for resolution type none",
            hint="use resolution: STATIC or DNS",
        )
    if resolution == "STATIC":
        if not spec.endpoints and spec.workload_selector is None:
            check.error(
                "spec.resolution",
                "resolution STATIC needs endpoints",
                hint="list the endpoints' IP addresses under `endpoints:` (or use resolution: DNS)",
            )
        for index, endpoint in enumerate(spec.endpoints):
            path = f"spec.endpoints[{index}]"
            address = endpoint.address or ""
            if not address:
                check.error(path, "address is required")
            elif address.startswith("unix://"):
                if not address.startswith("unix:///") and not address.startswith("unix://@"):
                    check.error(f"{path}.address", f"{address[7:]} is not an absolute path to a file")
            elif not is_ip_address(address):
                check.error(
                    f"{path}.address",
                    f"endpoint address {quote(address)} is not a valid IP address",
                    hint="STATIC endpoints are IP addresses; use resolution: DNS for host names",
                )
            _check_endpoint(check, endpoint.ports, endpoint.labels, service_port_names, path)
    if resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not spec.endpoints:
            for index, host in enumerate(spec.hosts):
                if host != "*" and wildcard_domain_error(host, wildcard=False):
                    check.error(
                        f"spec.hosts[{index}]",
                        f"hosts must be FQDN if no endpoints are provided for resolution mode {resolution}",
                        hint="a wildcard host cannot be resolved by DNS: add endpoints or use resolution: NONE",
                    )
        if resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
            check.error("spec.endpoints", f"there must only be 0 or 1 endpoint for resolution mode {resolution}")
        for index, endpoint in enumerate(spec.endpoints):
            path = f"spec.endpoints[{index}]"
            address = endpoint.address or ""
            if not is_ip_address(address) and wildcard_domain_error(address, wildcard=False):
                check.error(
                    f"{path}.address", f"endpoint address {quote(address)} is not a valid FQDN or an IP address"
                )
            _check_endpoint(check, endpoint.ports, endpoint.labels, service_port_names, path)
    if resolution != "NONE" and len(spec.hosts) > 1:
        for index, port in enumerate(spec.ports):
            protocol = (port.protocol or "").upper()
            if protocol not in HTTP_PROTOCOLS and protocol not in TLS_PROTOCOLS:
                check.error(
                    f"spec.ports[{index}].protocol",
                    "multiple hosts provided with non-HTTP, non-TLS ports",
                    hint="plain TCP cannot tell the hosts apart: split the ServiceEntry or use resolution: NONE",
                )
                break
    check.export_to(spec.export_to, "spec.exportTo", allow_none=True)


def _check_endpoint(
    check: _Checker,
    ports: Mapping[str, int] | None,
    labels: Mapping[str, str] | None,
    service_port_names: frozenset[str],
    path: str,
) -> None:
    for name, number in (ports or {}).items():
        if name not in service_port_names:
            check.error(
                child_path(f"{path}.ports", name),
                f"endpoint port {number} is not defined by the service entry",
                hint="endpoint ports are keyed by service port name: "
                + (", ".join(sorted(service_port_names)) or "(none)"),
            )
    check.labels(labels, f"{path}.labels")


def _check_rollout_policy(check: _Checker, spec: RolloutPolicySpec) -> None:
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


_RULES: Mapping[Kind, Callable[[_Checker, Any], None]] = {
    Kind.VIRTUAL_SERVICE: _check_virtual_service,
    Kind.DESTINATION_RULE: _check_destination_rule,
    Kind.GATEWAY: _check_gateway,
    Kind.SERVICE_ENTRY: _check_service_entry,
    Kind.ROLLOUT_POLICY: _check_rollout_policy,
}


def check_resource(resource: Resource[Any]) -> list[Finding]:
    """Every rule finding about one decoded resource (IST0106, errors and warnings)."""
    check = _Checker(resource)
    _RULES[resource.kind](check, resource.spec)
    return check.findings
