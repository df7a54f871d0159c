"""DestinationRule: subsets of a service and the traffic policy for calling it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from reconciler.model.common import Duration, NonNegative, PortSelector

__all__ = [
    "ConnectionPool",
    "DestinationRuleSpec",
    "HTTPSettings",
    "LoadBalancer",
    "OutlierDetection",
    "PortTrafficPolicy",
    "Subset",
    "TCPSettings",
    "TLSSettings",
    "TrafficPolicy",
]

SimpleLB = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]
ClientTLSMode = Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]
H2UpgradePolicy = Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    """How to pick an endpoint (only the ``simple`` policies are acted on)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {"consistentHash", "localityLbSetting", "warmup", "warmupDurationSecs", "zoneAwareLbSetting"}
    )

    simple: SimpleLB | None = None


@dataclass(frozen=True, slots=True)
class TCPSettings:
    """TCP-level connection limits and timeouts."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"tcpKeepalive", "maxConnectionDuration", "idleTimeout"})

    max_connections: NonNegative | None = None
    connect_timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    """HTTP-level connection pool limits."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {"http2KeepAlive", "maxConcurrentStreams", "useClientProtocol", "idleTimeout"}
    )

    http1_max_pending_requests: NonNegative | None = None
    http2_max_requests: NonNegative | None = None
    max_requests_per_connection: NonNegative | None = None
    max_retries: NonNegative | None = None
    h2_upgrade_policy: H2UpgradePolicy | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    """Connection limits → Envoy circuit breakers."""

    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Passive health checking: eject hosts that keep failing."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {
            "consecutiveLocalOriginFailures",
            "splitExternalLocalOriginErrors",
            "outlierDetectionHttpErrorCodes",
        }
    )

    consecutive_5xx_errors: NonNegative | None = None
    consecutive_gateway_errors: NonNegative | None = None
    consecutive_errors: NonNegative | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: NonNegative | None = None
    min_health_percent: NonNegative | None = None


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """Client-side TLS towards the upstream (modelled; origination is not translated yet)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"caCrl", "insecureSkipVerify"})

    mode: ClientTLSMode | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    sni: str | None = None


@dataclass(frozen=True, slots=True)
class PortTrafficPolicy:
    """A traffic policy for one port of the service."""

    port: PortSelector | None = None
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: TLSSettings | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """Load balancing, connection pool, outlier detection and TLS for a destination."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"proxyProtocol", "retryBudget", "tunnel"})

    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: TLSSettings | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()


@dataclass(frozen=True, slots=True)
class Subset:
    """A named group of endpoints selected by labels (typically one version)."""

    name: str
    labels: Mapping[str, str] | None = None
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class WorkloadSelector:
    """Which workloads a DestinationRule applies to (recognised; not acted on)."""

    match_labels: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DestinationRuleSpec:
    """``spec`` of a DestinationRule."""

    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: WorkloadSelector | None = None
