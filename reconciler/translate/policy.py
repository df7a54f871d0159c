"""DestinationRule traffic policy → Envoy Cluster settings, with Istio's merge rules.

The policy for one cluster is assembled the way Istio's ``MergeTrafficPolicy`` does it:

1. the rule's top-level policy, where a ``portLevelSettings`` entry for the cluster's port
   replaces all four components (port-level policies do not inherit);
2. a subset's policy overrides that component by component (load balancer, connection
   pool, outlier detection, TLS);
3. a subset ``portLevelSettings`` entry for the port replaces all four again.

Each component remembers the field path it came from, so a finding about it (TLS
origination is not translated) points at the line that set it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from reconciler.model.config import Resource
from reconciler.model.destinationrule import (
    ConnectionPool,
    LoadBalancer,
    OutlierDetection,
    PortTrafficPolicy,
    TLSSettings,
    TrafficPolicy,
)
from reconciler.translate.notes import Notes
from reconciler.translate.protos import duration

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_NANOS",
    "HTTP_PROTOCOL_OPTIONS",
    "ClusterPolicy",
    "policy_settings",
    "report_policy",
    "rule_policy_for_port",
    "subset_override",
]

#: Istio's mesh-wide default ``connectTimeout``.
DEFAULT_CONNECT_TIMEOUT_NANOS = 10 * 10**9
#: Key of the upstream HTTP options in ``typed_extension_protocol_options``.
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_UINT32_MAX = 2**32 - 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Part(Generic[T]):
    """One policy component and the field path it was written at."""

    value: T | None = None
    path: str = ""


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """The merged policy for one cluster: four components, each with its origin path.

    Compared and hashed by value (clusters with equal policies share a template); the hash
    is computed once, since translation looks a policy up once per cluster.
    """

    load_balancer: _Part[LoadBalancer] = _Part()
    connection_pool: _Part[ConnectionPool] = _Part()
    outlier_detection: _Part[OutlierDetection] = _Part()
    tls: _Part[TLSSettings] = _Part()
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        value = hash((self.load_balancer, self.connection_pool, self.outlier_detection, self.tls))
        object.__setattr__(self, "_hash", value)

    def __hash__(self) -> int:
        return self._hash


_NO_POLICY = ClusterPolicy()


def _components(policy: TrafficPolicy | PortTrafficPolicy, path: str) -> ClusterPolicy:
    """The four components of a policy (top-level or port-level, which share them) with their paths."""
    return ClusterPolicy(
        load_balancer=_Part(policy.load_balancer, f"{path}.loadBalancer"),
        connection_pool=_Part(policy.connection_pool, f"{path}.connectionPool"),
        outlier_detection=_Part(policy.outlier_detection, f"{path}.outlierDetection"),
        tls=_Part(policy.tls, f"{path}.tls"),
    )


def _port_level(policy: TrafficPolicy, port: int, *, path: str) -> ClusterPolicy | None:
    for index, settings in enumerate(policy.port_level_settings):
        if settings.port is not None and settings.port.number == port:
            return _components(settings, f"{path}.portLevelSettings[{index}]")
    return None


def rule_policy_for_port(rule_policy: TrafficPolicy | None, port: int) -> ClusterPolicy:
    """Step 1: the rule's policy for ``port`` (its port-level entry, else its top level)."""
    if rule_policy is None:
        return _NO_POLICY
    return _port_level(rule_policy, port, path="spec.trafficPolicy") or _components(rule_policy, "spec.trafficPolicy")


def subset_override(
    base: ClusterPolicy, subset_policy: TrafficPolicy | None, *, port: int, subset_path: str
) -> ClusterPolicy:
    """Steps 2 and 3: a subset's policy over ``base``, component by component, then its port level."""
    if subset_policy is None:
        return base
    path = f"{subset_path}.trafficPolicy"
    port_level = _port_level(subset_policy, port, path=path)
    if port_level is not None:
        return port_level
    override = _components(subset_policy, path)
    return ClusterPolicy(
        load_balancer=override.load_balancer if override.load_balancer.value is not None else base.load_balancer,
        connection_pool=override.connection_pool
        if override.connection_pool.value is not None
        else base.connection_pool,
        outlier_detection=(
            override.outlier_detection if override.outlier_detection.value is not None else base.outlier_detection
        ),
        tls=override.tls if override.tls.value is not None else base.tls,
    )


def policy_settings(policy: ClusterPolicy, *, http2: bool) -> cluster_pb2.Cluster:
    """A Cluster carrying only what ``policy`` decides: load balancing, limits, timeouts, ejection, HTTP/2.

    Merge it into a cluster (``MergeFrom``); clusters with equal policies share it.
    Istio's defaults apply where the policy is silent: least-request balancing, 10 s
    connect timeout and circuit breakers opened wide (Envoy's own defaults, 1024
    connections and 3 parallel retries, cause 503s during rollouts). ``http2`` says the
    port speaks HTTP/2 (gRPC). :func:`report_policy` tells what is left out.
    """
    cluster = cluster_pb2.Cluster()
    _apply_load_balancer(cluster, policy.load_balancer.value)
    _apply_connection_pool(cluster, policy.connection_pool.value, http2=http2)
    _apply_outlier_detection(cluster, policy.outlier_detection.value)
    return cluster


def report_policy(policy: ClusterPolicy, *, rule: Resource[Any] | None, notes: Notes) -> None:
    """Findings for the parts of ``policy`` that :func:`policy_settings` cannot express."""
    tls = policy.tls.value
    if tls is not None and tls.mode not in (None, "DISABLE"):
        notes.about(
            rule,
            path=policy.tls.path,
            message=f"TLS origination (mode {tls.mode}) is not translated: requests are sent in plaintext",
            hint="terminate TLS at the upstream or leave tls unset until TLS origination is supported",
        )
    balancer = policy.load_balancer.value
    if balancer is not None and balancer.simple == "PASSTHROUGH":
        notes.about(
            rule,
            path=f"{policy.load_balancer.path}.simple",
            message=(
                "loadBalancer PASSTHROUGH (connect to the address the client dialled) is not translated: "
                "requests are balanced by least request"
            ),
        )


def _apply_load_balancer(cluster: cluster_pb2.Cluster, balancer: LoadBalancer | None) -> None:
    simple = balancer.simple if balancer is not None else None
    if simple == "RANDOM":
        cluster.lb_policy = cluster_pb2.Cluster.RANDOM
    elif simple == "ROUND_ROBIN":
        cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
    else:
        # LEAST_CONN is Istio's deprecated alias of LEAST_REQUEST, which is also its default.
        cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST


def _apply_connection_pool(cluster: cluster_pb2.Cluster, pool: ConnectionPool | None, *, http2: bool) -> None:
    connect_timeout = DEFAULT_CONNECT_TIMEOUT_NANOS
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=wrappers_pb2.UInt32Value(value=_UINT32_MAX),
        max_pending_requests=wrappers_pb2.UInt32Value(value=_UINT32_MAX),
        max_requests=wrappers_pb2.UInt32Value(value=_UINT32_MAX),
        max_retries=wrappers_pb2.UInt32Value(value=_UINT32_MAX),
        track_remaining=True,
    )
    http = pool.http if pool is not None else None
    tcp = pool.tcp if pool is not None else None
    if tcp is not None:
        if tcp.connect_timeout is not None:
            connect_timeout = tcp.connect_timeout.nanos
        # Istio cannot tell an explicit 0 from unset and keeps its default for both; so do we.
        if tcp.max_connections:
            thresholds.max_connections.value = tcp.max_connections
    if http is not None:
        if http.http1_max_pending_requests:
            thresholds.max_pending_requests.value = http.http1_max_pending_requests
        if http.http2_max_requests:
            thresholds.max_requests.value = http.http2_max_requests
        if http.max_retries:
            thresholds.max_retries.value = http.max_retries
    cluster.connect_timeout.CopyFrom(duration(connect_timeout))
    cluster.circuit_breakers.thresholds.append(thresholds)

    upgrade = http.h2_upgrade_policy if http is not None else None
    http2 = upgrade == "UPGRADE" or (http2 and upgrade != "DO_NOT_UPGRADE")
    max_requests = http.max_requests_per_connection if http is not None else None
    if not http2 and not max_requests:
        return
    options = http_protocol_options_pb2.HttpProtocolOptions()
    if max_requests:
        options.common_http_protocol_options.max_requests_per_connection.value = max_requests
    if http2:
        options.explicit_http_config.http2_protocol_options.SetInParent()
    else:
        # HttpProtocolOptions must name the upstream protocol; without an upgrade it stays HTTP/1.1.
        options.explicit_http_config.http_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(options)


def _apply_outlier_detection(cluster: cluster_pb2.Cluster, outlier: OutlierDetection | None) -> None:
    if outlier is None:
        return
    out = outlier_detection_pb2.OutlierDetection(enforcing_success_rate=wrappers_pb2.UInt32Value(value=0))
    if outlier.consecutive_5xx_errors is not None:
        value = outlier.consecutive_5xx_errors
        out.consecutive_5xx.value = value
        # Enforcing 0 % switches the detector off; Istio uses that for an explicit 0.
        out.enforcing_consecutive_5xx.value = 100 if value > 0 else 0
    if outlier.consecutive_gateway_errors is not None:
        value = outlier.consecutive_gateway_errors
        out.consecutive_gateway_failure.value = value
        out.enforcing_consecutive_gateway_failure.value = 100 if value > 0 else 0
    elif outlier.consecutive_errors:
        # The deprecated field counts gateway errors only (istio/api#617), as old Istio translated it.
        out.consecutive_gateway_failure.value = outlier.consecutive_errors
        out.enforcing_consecutive_gateway_failure.value = 100
        if outlier.consecutive_5xx_errors is None:
            out.enforcing_consecutive_5xx.value = 0
    if outlier.interval is not None:
        out.interval.CopyFrom(duration(outlier.interval.nanos))
    if outlier.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(outlier.base_ejection_time.nanos))
    if outlier.max_ejection_percent:
        out.max_ejection_percent.value = outlier.max_ejection_percent
    cluster.outlier_detection.CopyFrom(out)
    # Istio turns Envoy's panic mode (route to all hosts below 50 % healthy) off unless
    # minHealthPercent asks for it: with few pods per service it defeats ejection.
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=float(outlier.min_health_percent or 0))
    )
