"""One revision's config as a :class:`~reconciler.xds.cache.SnapshotSource`.

Translation is per proxy, but proxies with the same labels, role, namespace and
port get the same snapshot, so results are memoised by that shape
(:func:`~reconciler.translate.translator.proxy_shape`): a thousand identical sidecars
cost one translation. Validation already translated the config for representative
proxies (``LoadResult.translations``); given as seeds, a proxy of such a shape costs none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from reconciler.model.checkpoint import Checkpoint, no_checkpoint
from reconciler.model.config import MeshConfig
from reconciler.translate import ServiceRegistry, Translation, translate
from reconciler.translate.memo import TranslationCache
from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import Snapshot
from reconciler.translate.translator import ProxyShape, proxy_shape
from reconciler.validate.findings import Finding, sort_findings

__all__ = ["MAX_REMEMBERED_SHAPES", "ConfigSnapshots"]

#: Shapes whose snapshot is kept for reuse. Labels such as ``pod-template-hash`` make a new shape
#: per rollout; without a bound, a config left unchanged for weeks would pile up snapshots (each
#: megabytes at a thousand services). A connected proxy keeps its own snapshot alive regardless.
MAX_REMEMBERED_SHAPES = 256


class ConfigSnapshots:
    """Snapshots of one validated config, translated on demand and checked for consistency.

    Keeps every non-error finding about the config, from validation (``findings``) and
    from each translation (things Envoy cannot be told yet), for status to show.
    Thread-safe: the engine and the cache translate from worker threads.

    ``seeds`` are translations of this same config with this same registry, by shape (what
    :func:`~reconciler.loader.load_files` returns): used instead of translating. A seed's findings
    join the warnings only once a proxy of its shape asks, as if it had been translated then.
    ``cache`` reuses per-service work of earlier translations (the result is the same).
    """

    def __init__(
        self,
        *,
        config: MeshConfig,
        registry: ServiceRegistry | None = None,
        findings: Iterable[Finding] = (),
        seeds: Mapping[ProxyShape, Translation] | None = None,
        max_shapes: int = MAX_REMEMBERED_SHAPES,
        checkpoint: Checkpoint = no_checkpoint,
        cache: TranslationCache | None = None,
    ) -> None:
        self._config = config
        self._cache = cache
        self._checkpoint = checkpoint
        self._registry = registry
        self._max_shapes = max_shapes
        self._memo: OrderedDict[ProxyShape, Snapshot] = OrderedDict()  # least recently used first
        self._seeds: dict[ProxyShape, Translation] = dict(seeds or {})  # each taken out by its first use
        self._warnings: dict[Finding, None] = dict.fromkeys(findings)
        # Guards memo and warnings only, never a translation: readers on the event loop
        # (status, warnings) must not wait for a translation running in a worker thread.
        self._lock = threading.Lock()

    @property
    def config(self) -> MeshConfig:
        """The validated config these snapshots translate."""
        return self._config

    @property
    def registry(self) -> ServiceRegistry | None:
        """The services they are translated with (``None``: the config's ServiceEntries)."""
        return self._registry

    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
        """The proxy's snapshot (translate() checks it); raises TranslationError if it would be inconsistent."""
        key = proxy_shape(self._config, proxy)
        with self._lock:
            found = self._memo.get(key)
            if found is not None:
                self._memo.move_to_end(key)
                return found
            seed = self._seeds.pop(key, None)
        # Two threads may translate the same new shape at once; the result is identical, the first one kept.
        translation = (
            seed if seed is not None else translate(self._config, proxy, registry=self._registry, cache=self._cache)
        )
        with self._lock:
            self._warnings.update(dict.fromkeys(translation.findings))
            snapshot = self._memo.setdefault(key, translation.snapshot)
            while len(self._memo) > self._max_shapes:
                self._memo.popitem(last=False)
            return snapshot

    def adopt(self, proxy: ProxyIdentity, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` for the proxy's shape instead of the one translated, if it has the same content.

        The cache serves proxies snapshots made of the sets it already shares (unchanged since the
        previous revision); keeping ours as well would hold every unchanged set twice.
        """
        key = proxy_shape(self._config, proxy)
        with self._lock:
            found = self._memo.get(key)
            if found is not None and found.version == snapshot.version:
                self._memo[key] = snapshot

    def translate_all(self, proxies: Iterable[ProxyIdentity]) -> None:
        """Translate every given proxy now (in the caller's thread), so publishing is cheap.

        The checkpoint is called before each proxy: a stopping daemon does not wait for a thousand shapes.
        """
        for proxy in proxies:
            self._checkpoint()
            self.snapshot_for(proxy)

    def untranslated(self, proxies: Iterable[ProxyIdentity]) -> list[ProxyIdentity]:
        """The given proxies whose shape has no snapshot yet (neither translated nor seeded)."""
        with self._lock:
            known = self._memo.keys() | self._seeds.keys()
        return [proxy for proxy in proxies if proxy_shape(self._config, proxy) not in known]

    def warnings(self) -> tuple[Finding, ...]:
        """Warnings and notes about the served config, in report order, without repeats."""
        with self._lock:
            return tuple(sort_findings(list(self._warnings)))
