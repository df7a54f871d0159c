"""DestinationRule rules (Istio's ``ValidateDestinationRule``).

The host, subsets (unique DNS-1123 names, labels), traffic policies at every level
(connection pool, outlier detection, client-side TLS), ``exportTo`` and the workload
selector. Pure.
"""

from __future__ import annotations

from reconciler.model.destinationrule import (
    ConnectionPool,
    DestinationRuleSpec,
    OutlierDetection,
    TLSSettings,
    TrafficPolicy,
)
from reconciler.model.text import quote
from reconciler.validate.rules.checker import Checker, dns1123_label_error, wildcard_domain_error

__all__ = ["check_destination_rule"]


def check_destination_rule(check: Checker, spec: DestinationRuleSpec) -> None:
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


def _check_traffic_policy(check: Checker, policy: TrafficPolicy | None, path: str) -> None:
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
    check: Checker,
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


def _check_client_tls(check: Checker, tls: TLSSettings, path: str) -> None:
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
