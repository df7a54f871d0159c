"""``HOST:PORT`` as users write listen and connect addresses: the one parser, and its inverse.

Here, in the lowest layer, because every layer that takes an address from a user reads it
the same way: the xDS server (ADS listen address), the engine (the HTTP API's), and the
CLI (``bootstrap``'s xDS and admin addresses). Pure: text in, ``(host, port)`` out.
"""

from __future__ import annotations

from ipaddress import ip_address

from reconciler.errors import UsageError

__all__ = ["format_address", "is_loopback", "parse_address"]


def parse_address(text: str, *, what: str, allow_port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` → ``(host, port)``; UsageError naming ``what`` otherwise.

    The host comes back without brackets. Port 0 (a listener asking the kernel for a free
    port) is accepted only with ``allow_port_zero``.
    """
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        # A bare IPv6 address is ambiguous: is the last group the port?
        raise UsageError(f"{what} {text!r}: write IPv6 addresses in brackets, like [::1]:18000")
    if not sep or not host or not port_text.isdigit():
        raise UsageError(f"{what} {text!r} is not HOST:PORT (for example 127.0.0.1:18000)")
    port = int(port_text)
    if not (0 if allow_port_zero else 1) <= port <= 65535:
        raise UsageError(f"{what} {text!r}: port {port} is out of range")
    return host, port


def format_address(host: str, port: int) -> str:
    """``(host, port)`` → ``HOST:PORT``, an IPv6 host in brackets: what :func:`parse_address` reads back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether a listener on ``host`` is reachable from this machine only: ``localhost``, 127.0.0.0/8, ``::1``.

    ``0.0.0.0``, ``::``, an empty host and any other name or address are not.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
