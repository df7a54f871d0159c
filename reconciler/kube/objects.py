"""Kubernetes Services, EndpointSlices and Pods, read from the API's JSON, and the registry they make. Pure.

The API server's answers are input like any other: each object is checked field by field and
an object that does not have the shape of its kind is skipped (``None``), never raised on, so
one odd object cannot stop the daemon from seeing the others. Only what routing needs is
kept: a Service's ports, an EndpointSlice's ready addresses and ports, a Pod's labels.

:func:`cluster_registry` turns them into a :class:`~reconciler.translate.ServiceRegistry` like
:func:`~reconciler.translate.build_registry` does for ServiceEntries: one ``STATIC`` service per
Kubernetes Service, host ``name.namespace.svc.cluster.local``, its endpoints from the
EndpointSlices labelled ``kubernetes.io/service-name``, each endpoint labelled with its Pod's
labels (``targetRef``), so DestinationRule subsets select endpoints as Istio's do.

EndpointSlice ``discovery.k8s.io/v1`` and ``v1beta1`` read alike here: the fields used
(``addressType``, ``endpoints[].addresses``, ``conditions.ready``, ``targetRef``, ``ports``) are
the same in both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeGuard

from reconciler.model.hosts import DEFAULT_DOMAIN
from reconciler.model.protocols import PROTOCOLS
from reconciler.translate.registry import Endpoint, Origin, Resolution, Service, ServicePort, ServiceRegistry

__all__ = [
    "EXPORT_TO_ANNOTATION",
    "MAX_ITEMS",
    "SERVICE_NAME_LABEL",
    "KubeService",
    "KubeSlice",
    "ObjectKey",
    "PodLabels",
    "SliceEndpoint",
    "cluster_registry",
    "object_key",
    "parse_endpoint_slice",
    "parse_pod",
    "parse_service",
]

#: The label an EndpointSlice names its Service with.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: Istio's annotation limiting which namespaces see a Service (comma-separated, like ``exportTo``).
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
#: Ports, endpoints, addresses and labels read from one object; the API's own limits are lower
#: (an EndpointSlice holds at most 1000 endpoints and 100 ports), so only a broken server reaches them.
MAX_ITEMS = 1000

#: ``(namespace, name)``.
ObjectKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class KubeService:
    """A Service as routing sees it: its ports (the protocol from ``appProtocol`` or the port name)."""

    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    export_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    """One endpoint of a slice: its addresses, whether it is ready, the Pod behind it (if any)."""

    addresses: tuple[str, ...]
    ready: bool = True
    pod: str | None = None


@dataclass(frozen=True, slots=True)
class KubeSlice:
    """An EndpointSlice of ``service``: port numbers by port name, and the endpoints."""

    namespace: str
    name: str
    service: str
    ports: Mapping[str, int]
    endpoints: tuple[SliceEndpoint, ...]


@dataclass(frozen=True, slots=True)
class PodLabels:
    """A Pod's labels: what DestinationRule subsets select."""

    namespace: str
    name: str
    labels: Mapping[str, str]


def object_key(obj: object) -> ObjectKey | None:
    """``(namespace, name)`` of an API object, ``None`` when its metadata lacks either."""
    metadata = _mapping(obj, "metadata")
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
        return namespace, name
    return None


def parse_service(obj: object) -> KubeService | None:
    """A Service, or ``None`` for one routing cannot use (ExternalName: a DNS alias) or that is malformed."""
    key = object_key(obj)
    spec = _mapping(obj, "spec")
    if key is None or spec.get("type") == "ExternalName":
        return None
    ports: list[ServicePort] = []
    for index, port in enumerate(_list(spec, "ports")):
        parsed = _service_port(port, index)
        if parsed is not None:
            ports.append(parsed)
    annotations = _mapping(_mapping(obj, "metadata"), "annotations")
    export = annotations.get(EXPORT_TO_ANNOTATION)
    export_to = tuple(part.strip() for part in export.split(",") if part.strip()) if isinstance(export, str) else ()
    return KubeService(namespace=key[0], name=key[1], ports=tuple(ports), export_to=export_to[:MAX_ITEMS])


def _service_port(port: object, index: int) -> ServicePort | None:
    if not isinstance(port, Mapping):
        return None
    number = port.get("port")
    if not _is_port(number) or port.get("protocol", "TCP") != "TCP":
        return None  # Istio routes TCP ports only (UDP and SCTP pass by)
    name = port.get("name")
    name = name if isinstance(name, str) else ""
    target = port.get("targetPort")
    # A named targetPort is resolved per endpoint, from its slice's port of the same (service port) name.
    return ServicePort(
        number=number,
        name=name,
        protocol=_protocol(port.get("appProtocol"), name),
        target_port=target if _is_port(target) else None,
        index=index,
    )


def _protocol(app_protocol: object, name: str) -> str:
    """Istio's protocol selection: ``appProtocol``, else the port name's prefix (``http-web``), else unknown."""
    for candidate in (app_protocol if isinstance(app_protocol, str) else "", name.split("-", 1)[0]):
        if candidate.upper() in PROTOCOLS:
            return candidate.upper()
    return ""


def parse_endpoint_slice(obj: object) -> KubeSlice | None:
    """An EndpointSlice of IP addresses (FQDN slices cannot be EDS endpoints), or ``None``."""
    key = object_key(obj)
    if key is None or not isinstance(obj, Mapping) or obj.get("addressType") not in ("IPv4", "IPv6"):
        return None
    service = _mapping(_mapping(obj, "metadata"), "labels").get(SERVICE_NAME_LABEL)
    if not isinstance(service, str) or not service:
        return None
    ports: dict[str, int] = {}
    for port in _list(obj, "ports"):
        if isinstance(port, Mapping) and _is_port(port.get("port")) and port.get("protocol", "TCP") == "TCP":
            name = port.get("name")
            ports[name if isinstance(name, str) else ""] = port["port"]
    endpoints = tuple(
        parsed for parsed in (_slice_endpoint(endpoint) for endpoint in _list(obj, "endpoints")) if parsed is not None
    )
    return KubeSlice(namespace=key[0], name=key[1], service=service, ports=MappingProxyType(ports), endpoints=endpoints)


def _slice_endpoint(endpoint: object) -> SliceEndpoint | None:
    if not isinstance(endpoint, Mapping):
        return None
    addresses = tuple(address for address in _list(endpoint, "addresses") if isinstance(address, str) and address)
    if not addresses:
        return None
    # The API: an unset ``ready`` is unknown, and consumers should take it as ready.
    ready = _mapping(endpoint, "conditions").get("ready") is not False
    target = _mapping(endpoint, "targetRef")
    pod = target.get("name") if target.get("kind") == "Pod" and isinstance(target.get("name"), str) else None
    return SliceEndpoint(addresses=addresses, ready=ready, pod=pod)


def parse_pod(obj: object) -> PodLabels | None:
    """A Pod's labels (from a full Pod or its metadata only), or ``None``."""
    key = object_key(obj)
    if key is None:
        return None
    labels = _mapping(_mapping(obj, "metadata"), "labels")
    kept = {k: v for k, v in list(labels.items())[:MAX_ITEMS] if isinstance(k, str) and isinstance(v, str)}
    return PodLabels(namespace=key[0], name=key[1], labels=MappingProxyType(kept))


def cluster_registry(
    *,
    services: Iterable[KubeService],
    slices: Iterable[KubeSlice],
    pods: Mapping[ObjectKey, PodLabels],
    domain: str = DEFAULT_DOMAIN,
) -> ServiceRegistry:
    """One STATIC service per Kubernetes Service, in (namespace, name) order, with its slices' ready endpoints."""
    by_service: dict[ObjectKey, list[KubeSlice]] = {}
    for piece in sorted(slices, key=lambda s: (s.namespace, s.name)):
        by_service.setdefault((piece.namespace, piece.service), []).append(piece)
    registry: list[Service] = []
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        endpoints = _endpoints(by_service.get((service.namespace, service.name), ()), pods)
        registry.append(
            Service(
                host=f"{service.name}.{service.namespace}.svc.{domain}",
                namespace=service.namespace,
                ports=service.ports,
                resolution=Resolution.STATIC,
                endpoints=endpoints,
                export_to=service.export_to,
                origin=Origin(kind="Service", namespace=service.namespace, name=service.name),
            )
        )
    return ServiceRegistry(services=tuple(registry))


_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def _endpoints(slices: Iterable[KubeSlice], pods: Mapping[ObjectKey, PodLabels]) -> tuple[Endpoint, ...]:
    found: list[Endpoint] = []
    seen: set[str] = set()
    for piece in slices:
        for endpoint in piece.endpoints:
            if not endpoint.ready:
                continue
            pod = pods.get((piece.namespace, endpoint.pod)) if endpoint.pod else None
            labels = pod.labels if pod is not None else _NO_LABELS
            # Kubernetes uses the first address of an endpoint; an address in two slices (a slice being
            # replaced by another) is one endpoint.
            address = endpoint.addresses[0]
            if address in seen:
                continue
            seen.add(address)
            found.append(Endpoint(address=address, ports=piece.ports, labels=labels, index=len(found)))
    return tuple(found)


def _mapping(obj: object, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else _EMPTY


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value[:MAX_ITEMS] if isinstance(value, list) else []


def _is_port(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


_EMPTY: Mapping[str, Any] = MappingProxyType({})
