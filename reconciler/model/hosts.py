"""Istio's host semantics: short names, FQDNs, wildcards, exportTo and gateway references."""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "DEFAULT_DOMAIN",
    "exported_to",
    "gateway_ref",
    "host_matches",
    "hosts_overlap",
    "is_ip_address",
    "resolve_host",
    "split_gateway_host",
]

DEFAULT_DOMAIN = "cluster.local"

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: Dotted-decimal IPv4 exactly as ``ipaddress`` accepts it (no leading zeros, each part <= 255).
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def is_ip_address(text: str) -> bool:
    """True when ``text`` is an IPv4 or IPv6 address (``ipaddress.ip_address`` accepts it)."""
    # The regex settles the common IPv4 case cheaply; ipaddress does the rest (IPv6, edge cases).
    if _IPV4.fullmatch(text):
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve_host(host: str, namespace: str, *, domain: str = DEFAULT_DOMAIN) -> str:
    """Resolve like Istio: a short name (no dot, no wildcard) is a service in ``namespace``.

    ``reviews`` in ``default`` → ``reviews.default.svc.cluster.local``; FQDNs, names with
    dots and wildcards (``*.example.com``, ``*``) are kept as written (lower-cased).
    """
    host = host.lower()
    if "*" in host or "." in host:
        return host
    return f"{host}.{namespace}.svc.{domain}"


def host_matches(pattern: str, host: str) -> bool:
    """True when ``host`` is covered by ``pattern`` (``*`` or ``*.suffix`` wildcards)."""
    if pattern in ("*", host):
        return True
    if pattern.startswith("*"):
        suffix = pattern[1:]
        if host.startswith("*"):
            # A wildcard host is covered only by an equal or broader wildcard.
            return host[1:].endswith(suffix)
        return host.endswith(suffix)
    return False


def hosts_overlap(first: str, second: str) -> bool:
    """True when some concrete host would be matched by both."""
    return host_matches(first, second) or host_matches(second, first)


def exported_to(export_to: tuple[str, ...], *, owner_namespace: str, consumer_namespace: str) -> bool:
    """Istio ``exportTo``: empty or ``*`` means everywhere, ``.`` the owner's namespace, else listed."""
    if not export_to:
        return True
    for entry in export_to:
        if entry in ("*", consumer_namespace):
            return True
        if entry == "." and owner_namespace == consumer_namespace:
            return True
    return False


def gateway_ref(reference: str, namespace: str) -> str:
    """A VirtualService's ``gateways`` entry as ``namespace/name``; ``mesh`` stays ``mesh``."""
    if reference == "mesh" or "/" in reference:
        return reference
    return f"{namespace}/{reference}"


def split_gateway_host(entry: str, gateway_namespace: str) -> tuple[str, str]:
    """A Gateway server ``hosts`` entry (``ns/host``, ``./host``, ``*/host`` or ``host``) → (ns, host)."""
    if "/" not in entry:
        return "*", entry.lower()
    namespace, _, host = entry.partition("/")
    return (gateway_namespace if namespace == "." else namespace), host.lower()
