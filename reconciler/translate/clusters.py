"""Clusters and ClusterLoadAssignments: one cluster per service port and DestinationRule subset.

Named like Istio (``outbound|9080|v1|reviews.default.svc.cluster.local``; empty subset for
a port's default cluster). How endpoints reach Envoy follows the service's resolution:

* ``STATIC``: an EDS cluster (over the ADS stream) and a ClusterLoadAssignment; each
  subset cluster gets only the endpoints carrying all of the subset's labels.
* ``DNS``: a ``STRICT_DNS`` cluster with the endpoints (or the host itself) inline.
* ``DNS_ROUND_ROBIN``: ``LOGICAL_DNS`` (one address at a time) when there is one name.
* ``NONE``, ``DYNAMIC_DNS``, hosts outside the registry: an EDS cluster with no endpoints,
  and a finding, so routes stay valid and requests get a clear 503 instead of a NACK. A
  Kubernetes Service of a watched cluster not listed yet gets the cluster without the finding.

Clusters and load assignments come out encoded (:class:`~reconciler.translate.snapshot.Resource`),
their messages parsed only when asked: a mesh has few distinct cluster templates (kind, merged
policy, HTTP/2) and tens of thousands of clusters, so an EDS cluster is its template's bytes with
its name written in, and a load assignment its name and its endpoints' bytes (each endpoint
encoded once per service port, shared by the subsets). The bytes are those protobuf's
deterministic serialization gives for the message (tests/translate/test_translate_spliced.py), and
each resource says how it was made (:class:`~reconciler.translate.snapshot.Spliced`), so the
Envoy-constraint check proves most of them by construction instead of walking each.
"""

from __future__ import annotations

from collections.abc import ItemsView, Mapping
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.descriptor import Descriptor

from reconciler.model.config import Resource
from reconciler.model.destinationrule import DestinationRuleSpec, Subset, TrafficPolicy
from reconciler.model.hosts import is_ip_address
from reconciler.model.text import quote
from reconciler.translate.memo import ServiceClusters, TranslationCache
from reconciler.translate.names import cluster_name
from reconciler.translate.notes import NoteCall, Notes
from reconciler.translate.policy import (
    ClusterPolicy,
    policy_settings,
    report_policy,
    rule_policy_for_port,
    subset_override,
)
from reconciler.translate.protos import varint
from reconciler.translate.registry import Endpoint, Resolution, Service, ServicePort
from reconciler.translate.scope import Scope, find_subset
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, Part, Spliced, Template, messages
from reconciler.translate.snapshot import Resource as XdsResource

__all__ = ["ClusterSet", "socket_address"]

Rule = Resource[DestinationRuleSpec]
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def socket_address(address: str, port: int) -> address_pb2.Address:
    """An Envoy address: ``unix://PATH`` becomes a pipe, anything else host (or IP) and port."""
    if address.startswith("unix://"):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address[len("unix://") :]))
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


class ClusterSet:
    """Builds each cluster (and its load assignment) once, on first use, for one translation."""

    def __init__(
        self, *, scope: Scope, notes: Notes, report_ports: bool, cache: TranslationCache | None = None
    ) -> None:
        self._scope = scope
        self._notes = notes
        self._cache = cache
        #: Sidecars route by port protocol; gateways never see a service's non-HTTP ports.
        self._report_ports = report_ports
        #: The clusters and load assignments built, encoded, by name.
        self.cluster_items: dict[str, XdsResource] = {}
        self.assignment_items: dict[str, XdsResource] = {}
        #: The same as messages, each parsed when asked.
        self.clusters = messages(self.cluster_items)
        self.assignments = messages(self.assignment_items)
        self._reported_services: set[tuple[str, str]] = set()
        #: Per service port, each endpoint's labels and its serialized LbEndpoint (as an item of ``lb_endpoints``).
        self._lb_endpoints: dict[tuple[str, str, int], list[tuple[ItemsView[str, str], bytes]]] = {}
        self._base_policies: dict[tuple[TrafficPolicy | None, int], ClusterPolicy] = {}
        self._last_base: tuple[TrafficPolicy | None, int, ClusterPolicy] | None = None
        self._subset_policies: dict[tuple[ClusterPolicy, TrafficPolicy, int, int], ClusterPolicy] = {}
        self._templates: dict[tuple[int, ClusterPolicy, bool], tuple[cluster_pb2.Cluster, _EdsSplicer | None]] = {}

    # -- public ----------------------------------------------------------------------

    def add_service(self, service: Service) -> None:
        """Every cluster of ``service``: per port, the default one and one per DestinationRule subset.

        With a cache, what an equal service and rule built before is used (and what is built, kept).
        """
        rule = self._scope.destination_rule(service.host, service_namespace=service.namespace)
        cache = self._cache
        if cache is None:
            self._add_service(service, rule)
            return
        reused = cache.service_clusters(service, rule, report_ports=self._report_ports)
        if reused is not None:
            self._reported_services.add((service.host, service.namespace))
            self.cluster_items.update(reused.clusters)
            self.assignment_items.update(reused.assignments)
            self._notes.replay(reused.notes)
            return
        notes: list[NoteCall] = []
        self._notes.record(notes)
        try:
            names = self._add_service(service, rule)
        finally:
            self._notes.record(None)
        # Hosts are distinct, so every cluster named for this service was built just now.
        clusters, assignments = self.cluster_items, self.assignment_items
        built = ServiceClusters(
            service=service,
            rule=rule,
            clusters={name: clusters[name] for name in names},
            assignments={name: assignments[name] for name in names if name in assignments},
            notes=tuple(notes),
        )
        cache.keep_service_clusters(built, report_ports=self._report_ports)

    @staticmethod
    def names(service: Service, rule: Rule | None) -> list[str]:
        """The clusters :meth:`add_service` makes for ``service`` with ``rule``."""
        subsets = [subset.name for subset in rule.spec.subsets] if rule is not None else []
        return [
            cluster_name(host=service.host, port=port.number, subset=subset)
            for port in service.ports
            for subset in (None, *subsets)
        ]

    def _add_service(self, service: Service, rule: Rule | None) -> list[str]:
        """Every cluster of ``service`` with ``rule``; their names, as :meth:`names` gives them."""
        names = []
        host = service.host
        subsets = list(enumerate(rule.spec.subsets)) if rule is not None else []
        for port in service.ports:
            name = cluster_name(host=host, port=port.number)
            self._service_cluster(name=name, service=service, port=port, rule=rule, subset=None)
            names.append(name)
            for subset in subsets:
                name = cluster_name(host=host, port=port.number, subset=subset[1].name)
                self._service_cluster(name=name, service=service, port=port, rule=rule, subset=subset)
                names.append(name)
            # All clusters of this port exist now; dropping the shared endpoints early keeps
            # the number of live objects (and so garbage-collection work) low on big meshes.
            self._lb_endpoints.pop((host, service.namespace, port.number), None)
        return names

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
        if name in self.cluster_items:
            return name
        service = self._scope.service(host)
        rule = self._scope.destination_rule(host, service_namespace=service.namespace if service else None)
        subset_entry = find_subset(rule, subset) if subset and rule is not None else None
        service_port = service.port(port) if service is not None else None
        if subset and subset_entry is None:
            problem = (
                f"subset {quote(subset)} of {host} is not defined by a DestinationRule",
                "add the subset to the host's DestinationRule",
            )
        elif service is None and self._scope.registry.from_cluster(host):
            # A Service of the watched cluster, not listed (yet): its endpoints arrive with it, nothing is missing.
            self._orphan(name=name, rule=rule, subset=subset_entry, port=port)
            return name
        elif service is None:
            problem = (
                f"{host} is not in the service registry",
                "add a ServiceEntry for the host (or, for a Kubernetes Service, run the daemon with --kubeconfig "
                "or --in-cluster; `reconciler validate --cluster-services` checks as it would)",
            )
        elif service_port is None:
            known = ", ".join(str(p.number) for p in service.ports) or "none"
            problem = (f"{host} has no port {port} (ports: {known})", "route to one of the service's ports")
        else:
            self._service_cluster(name=name, service=service, port=service_port, rule=rule, subset=subset_entry)
            return name
        message, hint = problem
        self._notes.about(referrer, path=path, message=f"{message}: {name} has no endpoints", hint=hint)
        self._orphan(name=name, rule=rule, subset=subset_entry, port=port)
        return name

    # -- building ----------------------------------------------------------------------

    def _policy(self, *, rule: Rule | None, subset: tuple[int, Subset] | None, port: int) -> ClusterPolicy:
        """The merged policy, shared by every cluster whose rule (and subset) reads the same.

        Memoised by value, not by rule: meshes repeat the same few policies across many
        rules, and fewer live objects mean less garbage-collection work.
        """
        rule_policy = rule.spec.traffic_policy if rule is not None else None
        last = self._last_base
        if last is not None and last[0] is rule_policy and last[1] == port:
            # A port's clusters come one after another: the same rule's policy, not hashed again.
            base = last[2]
        else:
            key = (rule_policy, port)
            found = self._base_policies.get(key)
            if found is None:
                found = self._base_policies[key] = rule_policy_for_port(rule_policy, port)
            base = found
            self._last_base = (rule_policy, port, base)
        policy = base
        if subset is not None and subset[1].traffic_policy is not None:
            subset_key = (base, subset[1].traffic_policy, subset[0], port)
            policy = self._subset_policies.get(subset_key) or subset_override(
                base, subset[1].traffic_policy, port=port, subset_path=f"spec.subsets[{subset[0]}]"
            )
            self._subset_policies[subset_key] = policy
        # Equal policies of different rules are reported for each rule; Notes drops repeats.
        report_policy(policy, rule=rule, notes=self._notes)
        return policy

    def _new_cluster(
        self,
        *,
        name: str,
        kind: int,
        rule: Rule | None,
        subset: tuple[int, Subset] | None,
        port: int,
        http2: bool,
    ) -> XdsResource | cluster_pb2.Cluster:
        """A cluster of ``kind`` (an Envoy discovery type) named ``name``, with its merged policy applied.

        Clusters sharing kind and policy are made of one template: an EDS cluster is spliced from its
        bytes (:class:`_EdsSplicer`), encoded; another kind is a copy of it (its endpoints are added).
        """
        policy = self._policy(rule=rule, subset=subset, port=port)
        template, splicer = self._template(kind=kind, policy=policy, http2=http2)
        if splicer is not None:
            return splicer.resource(name)
        cluster = cluster_pb2.Cluster()
        cluster.CopyFrom(template)
        cluster.name = name
        if kind == cluster_pb2.Cluster.EDS:
            cluster.eds_cluster_config.service_name = name
        return cluster

    def _template(
        self, *, kind: int, policy: ClusterPolicy, http2: bool
    ) -> tuple[cluster_pb2.Cluster, _EdsSplicer | None]:
        """What every ``kind`` cluster with ``policy`` is made of: keyed by value, rules written alike share it."""
        key = (kind, policy, http2)
        found = self._templates.get(key)
        if found is None:
            template = cluster_pb2.Cluster(type=kind)
            if kind == cluster_pb2.Cluster.EDS:
                template.eds_cluster_config.eds_config.CopyFrom(
                    config_source_pb2.ConfigSource(
                        ads=config_source_pb2.AggregatedConfigSource(),
                        resource_api_version=config_source_pb2.V3,
                    )
                )
            else:
                template.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
                template.respect_dns_ttl = True
            template.MergeFrom(policy_settings(policy, http2=http2))
            found = (template, _EdsSplicer.of(template) if kind == cluster_pb2.Cluster.EDS else None)
            self._templates[key] = found
        return found

    def _service_cluster(
        self, *, name: str, service: Service, port: ServicePort, rule: Rule | None, subset: tuple[int, Subset] | None
    ) -> None:
        """The cluster ``name`` (that of ``service``, ``port`` and ``subset``), unless made already."""
        if name in self.cluster_items:
            return
        self._report_service(service)
        labels = (subset[1].labels or _NO_LABELS) if subset is not None else _NO_LABELS
        resolution = service.resolution
        if resolution is Resolution.DNS or resolution is Resolution.DNS_ROUND_ROBIN:
            chosen = self._dns_endpoints(service, labels)
            logical = resolution is Resolution.DNS_ROUND_ROBIN and len(chosen) == 1
            cluster = self._new_cluster(
                name=name,
                kind=cluster_pb2.Cluster.LOGICAL_DNS if logical else cluster_pb2.Cluster.STRICT_DNS,
                rule=rule,
                subset=subset,
                port=port.number,
                http2=port.is_http2,
            )
            assert isinstance(cluster, cluster_pb2.Cluster)
            cluster.load_assignment.CopyFrom(_assignment(name, [_lb_endpoint(e, port) for e in chosen]))
            self.cluster_items[name] = XdsResource.of(CLUSTER, cluster)
            return
        built = self._new_cluster(
            name=name, kind=cluster_pb2.Cluster.EDS, rule=rule, subset=subset, port=port.number, http2=port.is_http2
        )
        self.cluster_items[name] = built if isinstance(built, XdsResource) else XdsResource.of(CLUSTER, built)
        selected: list[bytes] = []
        # NONE and DYNAMIC_DNS get no endpoints; _report_service says why.
        if resolution is Resolution.STATIC:
            endpoints = self._static_endpoints(service, port)
            if labels:
                wanted = labels.items()
                selected = [lb for endpoint_labels, lb in endpoints if wanted <= endpoint_labels]
            else:
                selected = [lb for _, lb in endpoints]
        self.assignment_items[name] = _spliced_assignment(name, tuple(selected))

    def _orphan(self, *, name: str, rule: Rule | None, subset: tuple[int, Subset] | None, port: int) -> None:
        built = self._new_cluster(
            name=name, kind=cluster_pb2.Cluster.EDS, rule=rule, subset=subset, port=port, http2=False
        )
        self.cluster_items[name] = built if isinstance(built, XdsResource) else XdsResource.of(CLUSTER, built)
        self.assignment_items[name] = _spliced_assignment(name, ())

    def _static_endpoints(self, service: Service, port: ServicePort) -> list[tuple[ItemsView[str, str], bytes]]:
        """Endpoints of ``service`` on ``port`` (labels, serialized LbEndpoint), built once and shared by all subsets.

        Labels are kept as an items view: a subset selects an endpoint when its label items
        are a subset of the endpoint's, one C-level comparison.
        """
        key = (service.host, service.namespace, port.number)
        cached = self._lb_endpoints.get(key)
        if cached is not None:
            return cached
        built = []
        for endpoint in service.endpoints:
            if not (is_ip_address(endpoint.address) or endpoint.address.startswith("unix://")):
                # One hostname would make Envoy reject the whole load assignment.
                self._notes.about(
                    service.origin,
                    path=f"spec.endpoints[{endpoint.index}].address",
                    message=f"endpoint {quote(endpoint.address)} is not an IP address (STATIC needs one): left out",
                    hint="use resolution: DNS for host names",
                )
                continue
            built.append((endpoint.labels.items(), _lb_endpoint_bytes(endpoint, port)))
        self._lb_endpoints[key] = built
        return built

    @staticmethod
    def _dns_endpoints(service: Service, labels: Mapping[str, str]) -> list[Endpoint]:
        if service.endpoints:
            return [endpoint for endpoint in service.endpoints if endpoint.has_labels(labels)]
        if "*" not in service.host and not labels:
            # Without endpoints the host name itself is resolved, as in Istio.
            return [Endpoint(address=service.host)]
        return []

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


def _lb_endpoint(endpoint: Endpoint, port: ServicePort) -> endpoint_components_pb2.LbEndpoint:
    lb = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(endpoint.address, endpoint.port_for(port)))
    )
    if endpoint.weight:
        lb.load_balancing_weight.CopyFrom(wrappers_pb2.UInt32Value(value=endpoint.weight))
    return lb


def _assignment(name: str, endpoints: list[endpoint_components_pb2.LbEndpoint]) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    if endpoints:
        # Filled in place: building the locality first and assigning it would copy every endpoint twice.
        assignment.endpoints.add().lb_endpoints.extend(endpoints)
    return assignment


def _size(value: int) -> bytes:
    """A length prefix: most are below 128 (one byte, from a table)."""
    return _SMALL[value] if value < 128 else varint(value)


_SMALL = tuple(bytes((value,)) for value in range(128))


class _EdsSplicer:
    """The EDS clusters of one template, encoded without building them: the template's bytes with the name written in.

    Deterministic serialization writes known fields in field-number order, so a cluster is its name
    (field 1), the template's field 2 (its type), ``eds_cluster_config`` (field 3: the config source,
    then the service name, the cluster's name again) and the template's fields after 3. Only a
    template whose splice equals protobuf's own serialization of a cluster built whole is used.
    """

    __slots__ = ("_eds", "_head", "_made", "_tail")

    #: The name a template's splice is compared with protobuf's serialization for.
    PROBE = "outbound|80|probe|probe.splice.invalid"

    def __init__(self, template: cluster_pb2.Cluster) -> None:
        head, tail = cluster_pb2.Cluster(), cluster_pb2.Cluster()
        head.CopyFrom(template)
        tail.CopyFrom(template)
        for field, _ in template.ListFields():
            if field.number >= _EDS_FIELD:
                head.ClearField(field.name)
            if field.number <= _EDS_FIELD:
                tail.ClearField(field.name)
        self._head = head.SerializeToString(deterministic=True)
        self._eds = template.eds_cluster_config.SerializeToString(deterministic=True)
        self._tail = tail.SerializeToString(deterministic=True)
        self._made = Spliced(template=Template(named=_CLUSTER_NAMED))

    @classmethod
    def of(cls, template: cluster_pb2.Cluster) -> _EdsSplicer | None:
        """The splicer of ``template``; None when its splice would not be protobuf's bytes (it is built whole then)."""
        splicer = cls(template)
        whole = cluster_pb2.Cluster()
        whole.CopyFrom(template)
        whole.name = whole.eds_cluster_config.service_name = cls.PROBE
        return splicer if splicer.data(cls.PROBE) == whole.SerializeToString(deterministic=True) else None

    def data(self, name: str) -> bytes:
        """The deterministic serialization of the template named ``name`` (and EDS service name ``name``)."""
        encoded = name.encode()
        size = _size(len(encoded))
        eds = self._eds
        return b"".join(
            (
                b"\x0a",
                size,
                encoded,
                self._head,
                b"\x1a",
                _size(len(eds) + 1 + len(size) + len(encoded)),
                eds,
                b"\x12",
                size,
                encoded,
                self._tail,
            )
        )

    def resource(self, name: str) -> XdsResource:
        return XdsResource.of_bytes(CLUSTER, name, self.data(name), references=frozenset((name,)), made=self._made)


#: ``Cluster.eds_cluster_config``, between the fields before and after it in a template's bytes.
_EDS_FIELD = cluster_pb2.Cluster.DESCRIPTOR.fields_by_name["eds_cluster_config"].number
#: The fields of a cluster that hold its name.
_CLUSTER_NAMED = (
    (cluster_pb2.Cluster.DESCRIPTOR, "name"),
    (cluster_pb2.Cluster.EdsClusterConfig.DESCRIPTOR, "service_name"),
)


def _lb_endpoint_bytes(endpoint: Endpoint, port: ServicePort) -> bytes:
    """``_lb_endpoint(endpoint, port)`` serialized as an item of ``lb_endpoints`` (field 2, framed), written directly.

    LbEndpoint: ``endpoint`` (1: Endpoint, its ``address`` (1: Address, ``socket_address`` (1: ``address``
    (2), ``port_value`` (3, a oneof member: written even when 0)) or ``pipe`` (2: ``path`` (1)))),
    ``load_balancing_weight`` (4: UInt32Value, ``value`` (1)). Empty strings are not written.
    """
    address = endpoint.address
    if address.startswith("unix://"):
        path = address[len("unix://") :].encode()
        pipe = b"\x0a" + _size(len(path)) + path if path else b""
        where = b"\x12" + _size(len(pipe)) + pipe
    else:
        host = address.encode()
        socket = (b"\x12" + _size(len(host)) + host if host else b"") + b"\x18" + varint(endpoint.port_for(port))
        where = b"\x0a" + _size(len(socket)) + socket
    lb = b"\x0a" + _size(len(where) + 1 + len(_size(len(where)))) + b"\x0a" + _size(len(where)) + where
    if endpoint.weight:
        weight = b"\x08" + varint(endpoint.weight)
        lb += b"\x22" + _size(len(weight)) + weight
    return b"\x12" + _size(len(lb)) + lb


def _lb_endpoint_part(data: bytes) -> Part:
    """The LbEndpoint an assignment's part holds (an item of ``lb_endpoints``: a LocalityLbEndpoints of one).

    Its shape is what :func:`_lb_endpoint_bytes` writes or leaves out; its values the address (or
    pipe path), port and weight.
    """
    lb: endpoint_components_pb2.LbEndpoint = endpoint_components_pb2.LocalityLbEndpoints.FromString(data).lb_endpoints[
        0
    ]
    address = lb.endpoint.address
    weighted = lb.HasField("load_balancing_weight")
    values: list[tuple[Descriptor, str, object]]
    if address.HasField("pipe"):
        values = [(_PIPE, "path", address.pipe.path)]
        shape: tuple[object, ...] = ("pipe", bool(address.pipe.path), weighted)
    else:
        socket = address.socket_address
        values = [(_SOCKET, "address", socket.address), (_SOCKET, "port_value", socket.port_value)]
        shape = ("socket", bool(socket.address), weighted)
    if weighted:
        values.append((_LB_ENDPOINT, "load_balancing_weight", lb.load_balancing_weight))
    return Part(message=lb, shape=shape, values=tuple(values))


_PIPE = address_pb2.Pipe.DESCRIPTOR
_SOCKET = address_pb2.SocketAddress.DESCRIPTOR
_LB_ENDPOINT = endpoint_components_pb2.LbEndpoint.DESCRIPTOR
_ASSIGNMENT_NAMED = ((endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR, "cluster_name"),)
#: A load assignment of endpoints: its name, then one LocalityLbEndpoints of its parts (LbEndpoints).
_WITH_ENDPOINTS = Spliced(
    template=Template(
        named=_ASSIGNMENT_NAMED,
        counted=(
            (endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR, "endpoints"),
            (endpoint_components_pb2.LocalityLbEndpoints.DESCRIPTOR, "lb_endpoints"),
        ),
        part=_lb_endpoint_part,
    )
)
#: What a load assignment names: nothing (one set shared by 40,000 of them at 10,000 services, not one each).
_NO_REFERENCES: frozenset[str] = frozenset()
#: A load assignment without endpoints: its name only.
_WITHOUT_ENDPOINTS = Spliced(template=Template(named=_ASSIGNMENT_NAMED))


def _spliced_assignment(name: str, parts: tuple[bytes, ...]) -> XdsResource:
    """The load assignment ``_assignment`` builds, encoded from ``parts`` (each an item of ``lb_endpoints``, framed).

    ``cluster_name`` is field 1, ``endpoints`` field 2, and the one LocalityLbEndpoints holds only its
    ``lb_endpoints`` (field 2).
    """
    encoded = name.encode()
    if not parts:
        data = b"\x0a" + _size(len(encoded)) + encoded
        return XdsResource.of_bytes(ENDPOINT, name, data, references=_NO_REFERENCES, made=_WITHOUT_ENDPOINTS)
    body = b"".join(parts)
    data = b"".join((b"\x0a", _size(len(encoded)), encoded, b"\x12", _size(len(body)), body))
    return XdsResource.of_bytes(
        ENDPOINT, name, data, references=_NO_REFERENCES, made=Spliced(template=_WITH_ENDPOINTS.template, parts=parts)
    )
