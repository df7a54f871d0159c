"""Istio's names for Envoy resources, and the Host-header forms a virtual host answers to.

Naming resources exactly as Istio does lets people use what they know from
``istioctl proxy-config`` (``outbound|9080|v1|reviews.default.svc.cluster.local``,
``0.0.0.0_8080``, ``http.8080``) when reading a reconciler-managed proxy. Pure functions.
"""

from __future__ import annotations

from reconciler.model.hosts import DEFAULT_DOMAIN, resolve_host

__all__ = [
    "DEFAULT_HTTP_PORT",
    "WILDCARD_ADDRESS",
    "cluster_name",
    "gateway_route_name",
    "host_domains",
    "listener_name",
    "related_hosts",
    "sidecar_route_name",
    "spelled_host",
    "virtual_host_name",
]

#: Listeners bind every interface, as Istio's do.
WILDCARD_ADDRESS = "0.0.0.0"
#: The port a Host header without a port means, and Istio's port for hosts outside the registry.
DEFAULT_HTTP_PORT = 80

_SVC_SUFFIX = f".svc.{DEFAULT_DOMAIN}"


def cluster_name(*, host: str, port: int, subset: str | None = None) -> str:
    """``outbound|PORT|SUBSET|HOST``; the subset is empty for a service's default cluster."""
    return f"outbound|{port}|{subset or ''}|{host}"


def listener_name(port: int, *, address: str = WILDCARD_ADDRESS) -> str:
    """``0.0.0.0_8080``: Istio's listener naming (bind address and port)."""
    return f"{address}_{port}"


def gateway_route_name(port: int) -> str:
    """``http.8080``: the RouteConfiguration of a gateway's plain-HTTP servers on ``port``."""
    return f"http.{port}"


def sidecar_route_name(port: int) -> str:
    """``15001``: sidecar outbound route configurations are named by their port, like Istio's."""
    return str(port)


def virtual_host_name(host: str, port: int) -> str:
    """``reviews.default.svc.cluster.local:9080``."""
    return f"{host}:{port}"


def host_domains(host: str, *, proxy_namespace: str) -> tuple[str, ...]:
    """Every spelling of ``host`` a client in ``proxy_namespace`` may put in its Host header, without port.

    Like Istio's ``generateAltVirtualHosts``: a Kubernetes-style name
    ``reviews.default.svc.cluster.local`` is also reachable as ``reviews.default.svc`` and
    ``reviews.default``, and from its own namespace as ``reviews``. Other names only as written.
    """
    if "*" in host or not host.endswith(_SVC_SUFFIX):
        return (host,)
    name_and_namespace = host[: -len(_SVC_SUFFIX)]
    name, dot, namespace = name_and_namespace.partition(".")
    if not dot or not name or not namespace or "." in namespace:
        return (host,)
    forms = [host, f"{name_and_namespace}.svc", name_and_namespace]
    if namespace == proxy_namespace:
        forms.insert(1, name)
    return tuple(forms)


def spelled_host(form: str, *, proxy_namespace: str) -> str | None:
    """The Kubernetes-style host whose short spelling ``form`` is (the inverse of :func:`host_domains`); None if none.

    ``reviews`` → ``reviews.<proxy_namespace>.svc.cluster.local`` (a short name, as
    :func:`~reconciler.model.hosts.resolve_host` reads it); ``reviews.default`` and ``reviews.default.svc``
    → ``reviews.default.svc.cluster.local``.
    """
    if "*" in form:
        return None
    parts = form.split(".")
    if len(parts) == 1:
        return resolve_host(form, proxy_namespace)
    if len(parts) == 2:
        return form + _SVC_SUFFIX
    if len(parts) == 3 and parts[2] == "svc":
        return f"{form}.{DEFAULT_DOMAIN}"
    return None


def related_hosts(host: str, *, proxy_namespace: str) -> set[str]:
    """The other hosts a Host header meant for ``host`` may name: its short spellings, and what it spells short.

    A virtual host of one of them may claim a domain ``host``'s would (:func:`host_domains` of each).
    """
    found = set(host_domains(host, proxy_namespace=proxy_namespace))
    spelled = spelled_host(host, proxy_namespace=proxy_namespace)
    if spelled is not None:
        found.add(spelled)
    found.discard(host)
    return found
