"""Who a proxy is, as far as translation cares: node id, labels, role, namespace, port.

Envoy sends this in its ``Node`` (id + metadata). The bootstrap we generate writes
the metadata keys below; the xDS edge reads them back with :meth:`ProxyIdentity.from_metadata`.
Pure: plain values in, plain values out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEFAULT_SIDECAR_PORT",
    "METADATA_ADMIN_ADDRESS",
    "METADATA_LABELS",
    "METADATA_NAMESPACE",
    "METADATA_OUTBOUND_PORT",
    "METADATA_ROLE",
    "ProxyIdentity",
    "ProxyRole",
]

METADATA_LABELS = "LABELS"
METADATA_ROLE = "ROLE"
METADATA_NAMESPACE = "NAMESPACE"
METADATA_OUTBOUND_PORT = "OUTBOUND_PORT"
#: ``HOST:PORT`` of the proxy's admin API, announced so the daemon can read ``/config_dump`` (drift checks).
METADATA_ADMIN_ADDRESS = "ADMIN_ADDRESS"
#: Longest admin address read from metadata (a host name of 253 characters, a colon and a port).
_MAX_ADDRESS_CHARS = 260

#: Istio's sidecar outbound capture port; our sidecar role listens here by default.
DEFAULT_SIDECAR_PORT = 15001


class ProxyRole(StrEnum):
    """Istio's two proxy kinds: an ingress/egress gateway, or a workload's sidecar (the mesh)."""

    GATEWAY = "gateway"
    SIDECAR = "sidecar"


@dataclass(frozen=True, slots=True)
class ProxyIdentity:
    """A proxy as translation sees it. ``role=None`` means: gateway if any Gateway selects its labels."""

    node_id: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    role: ProxyRole | None = None
    namespace: str = "default"
    outbound_port: int = DEFAULT_SIDECAR_PORT
    #: ``HOST:PORT`` of its admin API as the proxy announces it ("" when it does not); translation ignores it.
    admin_address: str = ""

    def to_metadata(self) -> dict[str, Any]:
        """The Envoy ``node.metadata`` that carries this identity (for bootstraps)."""
        metadata: dict[str, Any] = {
            METADATA_LABELS: dict(self.labels),
            METADATA_NAMESPACE: self.namespace,
            METADATA_OUTBOUND_PORT: str(self.outbound_port),
        }
        if self.role is not None:
            metadata[METADATA_ROLE] = self.role.value
        if self.admin_address:
            metadata[METADATA_ADMIN_ADDRESS] = self.admin_address
        return metadata

    @classmethod
    def from_metadata(cls, node_id: str, metadata: Mapping[str, Any]) -> ProxyIdentity:
        """Read an identity back from node metadata; unknown or malformed values fall back to defaults."""
        raw_labels = metadata.get(METADATA_LABELS)
        labels = {str(key): str(value) for key, value in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
        raw_role = metadata.get(METADATA_ROLE)
        role = ProxyRole(raw_role) if raw_role in {r.value for r in ProxyRole} else None
        raw_port = str(metadata.get(METADATA_OUTBOUND_PORT, DEFAULT_SIDECAR_PORT))
        port = int(raw_port) if raw_port.isdigit() and 0 < int(raw_port) < 65536 else DEFAULT_SIDECAR_PORT
        namespace = metadata.get(METADATA_NAMESPACE)
        admin = metadata.get(METADATA_ADMIN_ADDRESS)
        admin_ok = isinstance(admin, str) and 0 < len(admin) <= _MAX_ADDRESS_CHARS and admin.isprintable()
        return cls(
            node_id=node_id,
            labels=MappingProxyType(labels),
            role=role,
            namespace=namespace if isinstance(namespace, str) and namespace else "default",
            outbound_port=port,
            admin_address=admin if admin_ok and isinstance(admin, str) and " " not in admin else "",
        )
