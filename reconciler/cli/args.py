"""Flags that describe one proxy, shared by ``reconciler bootstrap`` and ``reconciler render``."""

from __future__ import annotations

import argparse

from reconciler.errors import UsageError
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

__all__ = ["add_label_and_role", "parse_labels", "proxy_from_args"]


def add_label_and_role(parser: argparse.ArgumentParser, *, label_help: str) -> None:
    """Add ``--label KEY=VALUE`` (repeatable) and ``--role gateway|sidecar`` to ``parser``."""
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help=label_help)
    parser.add_argument(
        "--role",
        choices=[role.value for role in ProxyRole],
        default=None,
        help="gateway or sidecar (default: gateway if a Gateway selects the labels)",
    )


def proxy_from_args(args: argparse.Namespace) -> ProxyIdentity:
    """The proxy ``--node-id``, ``--label``, ``--role``, ``--namespace`` and ``--outbound-port`` describe."""
    return ProxyIdentity(
        node_id=args.node_id,
        labels=parse_labels(args.label),
        role=ProxyRole(args.role) if args.role else None,
        namespace=args.namespace,
        outbound_port=args.outbound_port,
    )


def parse_labels(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → ``{k: v}``; UsageError for a missing ``=``, empty key or conflicting repeat."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or any(ch.isspace() for ch in key + value):
            raise UsageError(f"--label {item!r} is not KEY=VALUE (for example istio=ingressgateway)")
        if labels.get(key, value) != value:
            raise UsageError(f"--label {key} given twice with different values ({labels[key]!r}, {value!r})")
        labels[key] = value
    return labels
