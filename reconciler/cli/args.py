"""Flags several commands share: a proxy (``bootstrap``, ``render``), size limits (``validate``, ``run``, ``serve``),
CRD mode's inventory (``run``, ``diff``)."""

from __future__ import annotations

import argparse
import re

from reconciler.engine.settings import KubeSettings
from reconciler.errors import UsageError
from reconciler.model.limits import DEFAULT_LIMITS, InputLimits, format_size
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

__all__ = [
    "add_inventory_flag",
    "add_label_and_role",
    "add_limit_flags",
    "inventory_from_args",
    "limits_from_args",
    "parse_labels",
    "parse_size",
    "proxy_from_args",
]

_SIZE = re.compile(r"^(\d+)\s*(b|k|ki|kib|m|mi|mib|g|gi|gib)?$", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def add_label_and_role(parser: argparse.ArgumentParser, *, label_help: str) -> None:
    """Add ``--label KEY=VALUE`` (repeatable) and ``--role gateway|sidecar`` to ``parser``."""
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help=label_help)
    parser.add_argument(
        "--role",
        choices=[role.value for role in ProxyRole],
        default=None,
        help="gateway or sidecar (default: gateway if a Gateway selects the labels)",
    )


def add_inventory_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, purpose: str) -> None:
    """Add ``--inventory NAMESPACE/NAME``, CRD mode's inventory ConfigMap; ``purpose`` starts its help."""
    parser.add_argument(
        "--inventory",
        metavar="NAMESPACE/NAME",
        help=f"{purpose} (default {KubeSettings().inventory_name} in the pod's own namespace when run in a pod, "
        "else in default)",
    )


def inventory_from_args(args: argparse.Namespace) -> tuple[str | None, str]:
    """``--inventory``'s namespace (``None``: not given, the pod's own or ``default``) and name."""
    if args.inventory is None:
        return None, KubeSettings().inventory_name
    namespace, slash, name = args.inventory.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise UsageError(f"--inventory {args.inventory!r}: write it NAMESPACE/NAME")
    return namespace, name


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


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-file-size`` and ``--max-revision-size`` to ``parser``."""
    parser.add_argument(
        "--max-file-size",
        type=parse_size,
        default=DEFAULT_LIMITS.file_bytes,
        metavar="SIZE",
        help=f"a larger config file is an error finding and is not parsed; also the most its values may"
        f" expand to through YAML aliases (default {format_size(DEFAULT_LIMITS.file_bytes)})",
    )
    parser.add_argument(
        "--max-revision-size",
        type=parse_size,
        default=DEFAULT_LIMITS.revision_bytes,
        metavar="SIZE",
        help=f"config files together larger than this are refused unread"
        f" (default {format_size(DEFAULT_LIMITS.revision_bytes)})",
    )


def limits_from_args(args: argparse.Namespace) -> InputLimits:
    """The limits ``--max-file-size`` and ``--max-revision-size`` set."""
    return InputLimits(file_bytes=args.max_file_size, revision_bytes=args.max_revision_size)


def parse_size(text: str) -> int:
    """``4MiB``, ``512KiB``, ``1G`` or a plain number of bytes → bytes (K, M, G are powers of 1024)."""
    match = _SIZE.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        # argparse prints this message as its usage error (exit 2).
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size like 1MiB, 512KiB or 1048576")
    return int(match.group(1)) * _UNIT_BYTES[(match.group(2) or "b")[0].lower()]
