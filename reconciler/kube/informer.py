"""List, then watch: one collection kept in memory, as client-go's informers and kopf's watchers do.

:class:`Informer` lists a collection, then watches it from the list's resourceVersion, applying
each event to its store of parsed objects. A watch the server ends (its timeout) is resumed
from the last version seen (bookmarks move it on quiet collections); a 410 Gone (the version was
compacted away) lists again at once; any other failure lists again after a backoff with jitter,
so a restarted API server is not stampeded. ``on_change`` is called after every change of the
store (the caller debounces).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import structlog

from reconciler.errors import KubeError, KubeExpiredError
from reconciler.kube.client import KubeApi
from reconciler.kube.objects import ObjectKey, object_key

__all__ = ["Informer", "RetryDelays"]

log = structlog.get_logger("reconciler.kube")

T = TypeVar("T")


class RetryDelays(Protocol):
    """Delays between failed attempts (:class:`reconciler.sources.backoff.Backoff` is one)."""

    def next_delay(self) -> float: ...

    def reset(self) -> None: ...


class Informer(Generic[T]):
    """One collection (``path``), parsed by ``parse`` (``None``: not kept), kept current by :meth:`run`."""

    def __init__(
        self,
        *,
        api: KubeApi,
        path: str,
        parse: Callable[[object], T | None],
        on_change: Callable[[], None],
        backoff: RetryDelays,
        metadata_only: bool = False,
    ) -> None:
        self._api = api
        self._path = path
        self._parse = parse
        self._on_change = on_change
        self._backoff = backoff
        self._metadata_only = metadata_only
        self.items: dict[ObjectKey, T] = {}
        #: Set once the first list is in: before it, the store is not the cluster's view.
        self.synced = asyncio.Event()
        #: How many lists were made (the first, and one per 410 or failure).
        self.lists = 0
        #: The resourceVersion the store is current to (the list's, then each event's): a writer that got
        #: version N back knows the store holds its write once this reaches N (its event calls on_change).
        self.version = ""

    @property
    def path(self) -> str:
        return self._path

    async def run(self) -> None:
        """List and watch until cancelled."""
        while True:
            try:
                version = await self._list()
                self._backoff.reset()
                while True:
                    async for event in self._api.watch(
                        self._path, resource_version=version, metadata_only=self._metadata_only
                    ):
                        version = self.version = self._apply(event) or version
            except KubeExpiredError as error:
                log.info("kube.relist", path=self._path, reason="Expired", message=str(error))
            except KubeError as error:
                delay = self._backoff.next_delay()
                log.warning("kube.watch_failed", path=self._path, error=str(error), retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        raw, version = await self._api.list(self._path, metadata_only=self._metadata_only)
        items: dict[ObjectKey, T] = {}
        for obj in raw:
            key, parsed = object_key(obj), self._parse(obj)
            if key is not None and parsed is not None:
                items[key] = parsed
        self.lists += 1
        changed = items != self.items or not self.synced.is_set()
        self.items = items
        self.version = version
        self.synced.set()
        log.info("kube.listed", path=self._path, objects=len(items), resource_version=version)
        if changed:
            self._on_change()
        return version

    def _apply(self, event: Mapping[str, Any]) -> str | None:
        """Apply one watch event to the store; the resourceVersion it brings."""
        obj = event["object"]
        metadata = obj.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        kind = event.get("type")
        key = object_key(obj)
        if key is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
            parsed = self._parse(obj) if kind != "DELETED" else None
            before = self.items.get(key)
            if parsed is None:
                self.items.pop(key, None)
            else:
                self.items[key] = parsed
            if before != parsed:
                self._on_change()
        return version if isinstance(version, str) and version else None
