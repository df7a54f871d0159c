"""VirtualService: how requests for a set of hosts are matched and routed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from reconciler.model.common import (
    Duration,
    HeaderName,
    NonNegative,
    Percent,
    Port,
    PortSelector,
    StringMatch,
    Weight,
)

__all__ = [
    "Destination",
    "FaultAbort",
    "FaultDelay",
    "HTTPBody",
    "HTTPDirectResponse",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "HeaderOperations",
    "Headers",
    "L4MatchAttributes",
    "RouteDestination",
    "TCPRoute",
    "TLSMatchAttributes",
    "TLSRoute",
    "VirtualServiceSpec",
]


@dataclass(frozen=True, slots=True)
class Destination:
    """A service (host), optionally one subset of it and one of its ports."""

    host: str
    subset: str | None = None
    port: PortSelector | None = None


@dataclass(frozen=True, slots=True)
class HeaderOperations:
    """Headers to set, append or remove."""

    set: Mapping[HeaderName, str] | None = None
    add: Mapping[HeaderName, str] | None = None
    remove: tuple[HeaderName, ...] = ()


@dataclass(frozen=True, slots=True)
class Headers:
    """Header manipulation for requests (to the upstream) and responses (to the client)."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@dataclass(frozen=True, slots=True)
class HTTPRouteDestination:
    """One weighted destination of an HTTP route."""

    destination: Destination
    weight: Weight | None = None
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class HTTPMatchRequest:
    """Conditions a request must meet for its rule to apply; all set fields must match (AND)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {
            "scheme",
            "authority",
            "port",
            "sourceLabels",
            "gateways",
            "sourceNamespace",
            "withoutHeaders",
            "statPrefix",
        }
    )

    name: str | None = None
    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: Mapping[HeaderName, StringMatch] | None = None
    query_params: Mapping[str, StringMatch] | None = None
    ignore_uri_case: bool = False


@dataclass(frozen=True, slots=True)
class HTTPRetry:
    """Retry policy; unset fields take Istio's defaults at translation."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"retryRemoteLocalities", "retryIgnorePreviousHosts", "backoff"})

    attempts: NonNegative | None = None
    per_try_timeout: Duration | None = None
    retry_on: str | None = None


@dataclass(frozen=True, slots=True)
class FaultDelay:
    """Delay a percentage of requests before forwarding."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"exponentialDelay"})

    fixed_delay: Duration | None = None
    percentage: Percent | None = None
    percent: NonNegative | None = None


@dataclass(frozen=True, slots=True)
class FaultAbort:
    """Abort a percentage of requests with an HTTP status."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"grpcStatus", "http2Error"})

    http_status: int | None = None
    percentage: Percent | None = None


@dataclass(frozen=True, slots=True)
class HTTPFaultInjection:
    """Delay and/or abort injected before routing (chaos testing)."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True)
class HTTPRewrite:
    """Rewrite the path prefix and/or authority before forwarding."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"uriRegexRewrite"})

    uri: str | None = None
    authority: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPRedirect:
    """Answer with a redirect instead of forwarding."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"derivePort", "prefixRewrite"})

    uri: str | None = None
    authority: str | None = None
    port: Port | None = None
    scheme: str | None = None
    redirect_code: int | None = None


@dataclass(frozen=True, slots=True)
class HTTPBody:
    """A direct response body, as text."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"bytes"})

    string: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPDirectResponse:
    """Answer with a fixed status and body instead of forwarding."""

    status: int
    body: HTTPBody | None = None


@dataclass(frozen=True, slots=True)
class HTTPMirrorPolicy:
    """One entry of ``mirrors``: a shadow destination and the share of traffic copied to it."""

    destination: Destination
    percentage: Percent | None = None


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    """One HTTP rule: match conditions and what to do with matching requests."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"corsPolicy", "delegate", "mirror_percent", "mirrorPercent"})
    ONE_OF: ClassVar[tuple[tuple[str, ...], ...]] = (("route", "redirect", "directResponse"),)

    name: str | None = None
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    mirror_percentage: Percent | None = None
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class L4MatchAttributes:
    """TCP match: destination port (other L4 attributes are recognised but not acted on)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {"destinationSubnets", "sourceLabels", "gateways", "sourceNamespace", "sourceSubnet"}
    )

    port: Port | None = None


@dataclass(frozen=True, slots=True)
class TLSMatchAttributes:
    """TLS match by SNI (and port)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {"destinationSubnets", "sourceLabels", "gateways", "sourceNamespace"}
    )

    sni_hosts: tuple[str, ...]
    port: Port | None = None


@dataclass(frozen=True, slots=True)
class RouteDestination:
    """A weighted L4 destination."""

    destination: Destination
    weight: Weight | None = None


@dataclass(frozen=True, slots=True)
class TCPRoute:
    """Opaque TCP routing (modelled and validated; not yet translated)."""

    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class TLSRoute:
    """SNI-based routing of unterminated TLS (modelled and validated; not yet translated)."""

    match: tuple[TLSMatchAttributes, ...]
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class VirtualServiceSpec:
    """``spec`` of a VirtualService."""

    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    export_to: tuple[str, ...] = ()

    @property
    def applies_to_mesh(self) -> bool:
        """True when sidecars use this VirtualService: no ``gateways`` or ``mesh`` listed."""
        return not self.gateways or "mesh" in self.gateways
