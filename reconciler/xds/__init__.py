"""The xDS edge: per-proxy snapshot cache and the gRPC Aggregated Discovery Service.

The engine publishes a :class:`SnapshotSource` to a :class:`SnapshotCache`; connected
Envoys receive what changed for them over state-of-the-world ADS, in make-before-break
order, and the cache records what each proxy ACKed or NACKed.
"""

from reconciler.xds.cache import ProxyStatus, SnapshotCache, SnapshotSource, SyncState, XdsEvent
from reconciler.xds.server import XdsServer, start_server

__all__ = [
    "ProxyStatus",
    "SnapshotCache",
    "SnapshotSource",
    "SyncState",
    "XdsEvent",
    "XdsServer",
    "start_server",
]
