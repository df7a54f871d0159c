"""One revision's config as a :class:`~reconciler.xds.cache.SnapshotSource`.

Translation is per proxy, but proxies with the same labels, role, namespace and
port get the same snapshot, so results are memoised by that shape: a thousand
identical sidecars cost one translation.
"""

from __future__ import annotations

from collections.abc import Hashable

from reconciler.model.config import MeshConfig
from reconciler.translate import ServiceRegistry, translate
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import Snapshot

__all__ = ["ConfigSnapshots"]


def _shape(proxy: ProxyIdentity) -> Hashable:
    return (tuple(sorted(proxy.labels.items())), proxy.role, proxy.namespace, proxy.outbound_port)


class ConfigSnapshots:
    """Snapshots of one validated config, translated on demand and checked for consistency."""

    def __init__(self, *, config: MeshConfig, registry: ServiceRegistry | None = None) -> None:
        self._config = config
        self._registry = registry
        self._memo: dict[Hashable, Snapshot] = {}

    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
        """The proxy's snapshot; raises TranslationError if it would be inconsistent."""
        key = _shape(proxy)
        found = self._memo.get(key)
        if found is None:
            found = translate(self._config, proxy, registry=self._registry).snapshot.check()
            self._memo[key] = found
        return found
