"""VirtualService rules (Istio's ``ValidateVirtualService``).

Hosts (no two matching each other), gateway names, HTTP routes (redirect, direct response,
rewrite, retries, fault injection, mirrors, header operations, authority rewrites),
destinations and their weights, TCP and TLS routes with their SNI hosts, ``exportTo``.
Stricter than Istio: a fault ``abort`` needs ``httpStatus`` and a ``delay`` needs
``fixedDelay`` (the alternatives are fields reconciler does not act on). Pure.
"""

from __future__ import annotations

from reconciler.model.hosts import host_matches, is_ip_address
from reconciler.model.protocols import KNOWN_HTTP_STATUS_CODES
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
from reconciler.validate.rules.checker import Checker, dns1123_label_error, wildcard_domain_error
from reconciler.validate.rules.header_format import header_format_problem
from reconciler.validate.schema import MAX_UINT32

__all__ = ["MAX_HEADER_VALUE_BYTES", "RETRY_ON_POLICIES", "check_virtual_service"]

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

#: Envoy's limit on one header value it adds (``HeaderValue.value``: 16 KiB).
MAX_HEADER_VALUE_BYTES = 16 * 1024
_KB = 1024


def check_virtual_service(check: Checker, spec: VirtualServiceSpec) -> None:
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


def _check_duplicate_hosts(check: Checker, hosts: tuple[str, ...]) -> None:
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


def _check_gateway_name(check: Checker, gateway: str, path: str) -> None:
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


def _check_sni_host(check: Checker, sni: str, hosts: tuple[str, ...], path: str) -> None:
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


def _check_http_route(check: Checker, route: HTTPRoute, path: str) -> None:
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
    check: Checker, destinations: tuple[HTTPRouteDestination, ...] | tuple[RouteDestination, ...], path: str
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


def _check_l4_destinations(check: Checker, destinations: tuple[RouteDestination, ...], path: str) -> None:
    for index, destination in enumerate(destinations):
        _check_destination(check, destination.destination, f"{path}[{index}].destination")
    _check_total_weight(check, destinations, path)


def _check_destination(check: Checker, destination: Destination, path: str) -> None:
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


def _check_retry_on(check: Checker, retry_on: str, path: str) -> None:
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


def _check_fault(check: Checker, fault: HTTPFaultInjection, path: str) -> None:
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


def _check_headers(check: Checker, headers: Headers | None, path: str) -> None:
    """Envoy refuses to touch pseudo-headers, and Host is only set through the authority."""
    if headers is None:
        return
    _check_header_operations(check, headers.request, f"{path}.request", request=True)
    _check_header_operations(check, headers.response, f"{path}.response", request=False)


def _check_header_operations(check: Checker, operations: HeaderOperations | None, path: str, *, request: bool) -> None:
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
            elif (problem := header_format_problem(value)) is not None:
                message, hint = problem
                check.error(name_path, f"header value of {quote(name)}: {message}", hint=hint)
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


def _check_authority_rewrite(check: Checker, route: HTTPRoute, path: str) -> None:
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
