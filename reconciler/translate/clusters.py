"""Clusters and ClusterLoadAssignments: one cluster per service port and DestinationRule subset.

Named like Istio (``outbound|9080|v1|reviews.default.svc.cluster.local``; empty subset for
a port's default cluster). How endpoints reach Envoy follows the service's resolution:

* ``STATIC``: an EDS cluster (over the ADS stream) and a ClusterLoadAssignment; each
  subset cluster gets only the endpoints carrying all of the subset's labels.
* ``DNS``: a ``STRICT_DNS`` cluster with the endpoints (or the host itself) inline.
* ``DNS_ROUND_ROBIN``: ``LOGICAL_DNS`` (one address at a time) when there is one name.
* ``NONE``, ``DYNAMIC_DNS``, hosts outside the registry: an EDS cluster with no endpoints,
  and a finding, so routes stay valid and requests get a clear 503 instead of a NACK.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import wrappers_pb2

from reconciler.model.config import Resource
from reconciler.model.destinationrule import Subset
from reconciler.translate.names import cluster_name
from reconciler.translate.notes import Notes
from reconciler.translate.policy import ClusterPolicy, apply_policy, cluster_policy
from reconciler.translate.registry import Endpoint, Resolution, Service, ServicePort
from reconciler.translate.scope import RuleMatch, Scope

__all__ = ["ClusterSet", "socket_address"]

_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def socket_address(address: str, port: int) -> address_pb2.Address:
    """An Envoy address: ``unix://PATH`` becomes a pipe, anything else host (or IP) and port."""
    if address.startswith("unix://"):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address[len("unix://") :]))
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


class ClusterSet:
    """Builds each cluster (and its load assignment) once, on first use, for one translation."""

    def __init__(self, *, scope: Scope, notes: Notes, report_ports: bool) -> None:
        self._scope = scope
        self._notes = notes
        #: Sidecars route by port protocol; gateways never see a service's non-HTTP ports.
        self._report_ports = report_ports
        self.clusters: dict[str, cluster_pb2.Cluster] = {}
        self.assignments: dict[str, endpoint_pb2.ClusterLoadAssignment] = {}
        self._reported_services: set[tuple[str, str]] = set()
        self._lb_endpoints: dict[tuple[str, str, int], list[tuple[Endpoint, endpoint_components_pb2.LbEndpoint]]] = {}

    # -- public ----------------------------------------------------------------------

    def add_service(self, service: Service) -> None:
        """Every cluster of ``service``: per port, the default one and one per DestinationRule subset."""
        rule = self._scope.destination_rule(service.host, service_namespace=service.namespace)
        for port in service.ports:
            self._service_cluster(service=service, port=port, rule=rule, subset=None)
            if rule is not None:
                for index, subset in enumerate(rule.rule.spec.subsets):
                    self._service_cluster(service=service, port=port, rule=rule, subset=(index, subset))

    def ensure(
        self,
        *,
        host: str,
        port: int,
        subset: str | None,
        referrer: Resource[Any],
        path: str,
    ) -> str:
        """The name of the cluster for ``host:port`` (and ``subset``), built now if needed.

        A destination the registry or the DestinationRules cannot satisfy still gets a
        cluster (without endpoints) so the snapshot stays consistent; the finding says why
        requests to it will get 503.
        """
        name = cluster_name(host=host, port=port, subset=subset)
        if name in self.clusters:
            return name
        service = self._scope.service(host)
        rule = self._scope.destination_rule(host, service_namespace=service.namespace if service else None)
        subset_entry: tuple[int, Subset] | None = None
        if subset:
            subset_entry = rule.subsets.get(subset) if rule is not None else None
            if subset_entry is None:
                self._notes.about(
                    referrer,
                    path=path,
                    message=f"subset {subset!r} of {host} is not defined by a DestinationRule: {name} has no endpoints",
                    hint="add the subset to the host's DestinationRule",
                )
                self._orphan(name=name, rule=rule, subset=None, port=port)
                return name
        if service is None:
            self._notes.about(
                referrer,
                path=path,
                message=f"{host} is not in the service registry: {name} has no endpoints until it is",
                hint="add a ServiceEntry for the host (Kubernetes services are not read yet)",
            )
            self._orphan(name=name, rule=rule, subset=subset_entry, port=port)
            return name
        service_port = service.port(port)
        if service_port is None:
            known = ", ".join(str(p.number) for p in service.ports) or "none"
            self._notes.about(
                referrer,
                path=path,
                message=f"{host} has no port {port} (ports: {known}): {name} has no endpoints",
                hint="route to one of the service's ports",
            )
            self._orphan(name=name, rule=rule, subset=subset_entry, port=port)
            return name
        self._service_cluster(service=service, port=service_port, rule=rule, subset=subset_entry)
        return name

    # -- building ----------------------------------------------------------------------

    def _policy(self, rule: RuleMatch | None, subset: tuple[int, Subset] | None, port: int) -> ClusterPolicy:
        return cluster_policy(
            rule_policy=rule.rule.spec.traffic_policy if rule is not None else None,
            subset_policy=subset[1].traffic_policy if subset is not None else None,
            port=port,
            subset_path=f"spec.subsets[{subset[0]}]" if subset is not None else "",
        )

    def _service_cluster(
        self, *, service: Service, port: ServicePort, rule: RuleMatch | None, subset: tuple[int, Subset] | None
    ) -> None:
        name = cluster_name(host=service.host, port=port.number, subset=subset[1].name if subset else None)
        if name in self.clusters:
            return
        self._report_service(service)
        labels = (subset[1].labels or _NO_LABELS) if subset is not None else _NO_LABELS
        if service.resolution is Resolution.STATIC:
            cluster = _eds_cluster(name)
            selected = [lb for endpoint, lb in self._static_endpoints(service, port) if endpoint.has_labels(labels)]
            self.assignments[name] = _assignment(name, selected)
        elif service.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
            cluster = self._dns_cluster(service=service, port=port, name=name, labels=labels)
        else:
            # NONE and DYNAMIC_DNS: reported once per service by _report_service.
            cluster = _eds_cluster(name)
            self.assignments[name] = _assignment(name, [])
        apply_policy(
            cluster,
            policy=self._policy(rule, subset, port.number),
            port=port,
            rule=rule.rule if rule is not None else None,
            notes=self._notes,
        )
        self.clusters[name] = cluster

    def _orphan(self, *, name: str, rule: RuleMatch | None, subset: tuple[int, Subset] | None, port: int) -> None:
        cluster = _eds_cluster(name)
        apply_policy(
            cluster,
            policy=self._policy(rule, subset, port),
            port=None,
            rule=rule.rule if rule is not None else None,
            notes=self._notes,
        )
        self.clusters[name] = cluster
        self.assignments[name] = _assignment(name, [])

    def _static_endpoints(
        self, service: Service, port: ServicePort
    ) -> list[tuple[Endpoint, endpoint_components_pb2.LbEndpoint]]:
        """Endpoints of ``service`` on ``port`` as LbEndpoints, built once and shared by all subsets."""
        key = (service.host, service.namespace, port.number)
        cached = self._lb_endpoints.get(key)
        if cached is not None:
            return cached
        built = []
        for endpoint in service.endpoints:
            if not (_is_ip(endpoint.address) or endpoint.address.startswith("unix://")):
                # One hostname would make Envoy reject the whole load assignment.
                self._notes.about(
                    service.origin,
                    path=f"spec.endpoints[{endpoint.index}].address",
                    message=f"endpoint {endpoint.address!r} is not an IP address: STATIC resolution needs one; left out",
                    hint="use resolution: DNS for host names",
                )
                continue
            built.append((endpoint, _lb_endpoint(endpoint, port)))
        self._lb_endpoints[key] = built
        return built

    def _dns_cluster(
        self, *, service: Service, port: ServicePort, name: str, labels: Mapping[str, str]
    ) -> cluster_pb2.Cluster:
        if service.endpoints:
            chosen = [endpoint for endpoint in service.endpoints if endpoint.has_labels(labels)]
        elif "*" not in service.host and not labels:
            # Without endpoints the host name itself is resolved, as in Istio.
            chosen = [Endpoint(address=service.host)]
        else:
            chosen = []
        logical = service.resolution is Resolution.DNS_ROUND_ROBIN and len(chosen) == 1
        return cluster_pb2.Cluster(
            name=name,
            type=cluster_pb2.Cluster.LOGICAL_DNS if logical else cluster_pb2.Cluster.STRICT_DNS,
            dns_lookup_family=cluster_pb2.Cluster.V4_ONLY,
            respect_dns_ttl=True,
            load_assignment=_assignment(name, [_lb_endpoint(endpoint, port) for endpoint in chosen]),
        )

    def _report_service(self, service: Service) -> None:
        """Findings about what of a service cannot be expressed, once per service."""
        key = (service.host, service.namespace)
        if key in self._reported_services:
            return
        self._reported_services.add(key)
        origin = service.origin
        if service.resolution in (Resolution.NONE, Resolution.DYNAMIC_DNS):
            self._notes.about(
                origin,
                path="spec.resolution",
                message=(
                    f"resolution {service.resolution.value} is not translated (it needs the address the client "
                    f"dialled): clusters of {service.host} have no endpoints"
                ),
                hint="use resolution STATIC with endpoints, or DNS",
            )
        if service.selects_workloads:
            self._notes.about(
                origin,
                path="spec.workloadSelector",
                message=f"workloadSelector is not translated: {service.host} uses only its listed endpoints",
            )
        if service.resolution is Resolution.DNS and "*" in service.host and not service.endpoints:
            self._notes.about(
                origin,
                path="spec.hosts",
                message=f"wildcard host {service.host} with DNS resolution and no endpoints has nothing to resolve",
                hint="list endpoints, or name concrete hosts",
            )
        if service.resolution is Resolution.DNS_ROUND_ROBIN and len(service.endpoints) > 1:
            self._notes.about(
                origin,
                path="spec.endpoints",
                message=f"DNS_ROUND_ROBIN with {len(service.endpoints)} endpoints: all are resolved (STRICT_DNS)",
                hint="DNS_ROUND_ROBIN takes a single endpoint; use DNS for several",
            )
        if self._report_ports:
            for port in service.ports:
                if not port.is_http:
                    self._notes.about(
                        origin,
                        path=f"spec.ports[{port.index}]",
                        message=(
                            f"port {port.number} ({port.protocol}) of {service.host} is not routed: only HTTP "
                            "traffic is translated (TCP and TLS listeners are not)"
                        ),
                    )


def _eds_cluster(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
            service_name=name,
        ),
    )


def _lb_endpoint(endpoint: Endpoint, port: ServicePort) -> endpoint_components_pb2.LbEndpoint:
    lb = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(endpoint.address, endpoint.port_for(port)))
    )
    if endpoint.weight:
        lb.load_balancing_weight.CopyFrom(wrappers_pb2.UInt32Value(value=endpoint.weight))
    return lb


def _assignment(
    name: str, endpoints: list[endpoint_components_pb2.LbEndpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    if not endpoints:
        return endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=endpoints)]
    )
