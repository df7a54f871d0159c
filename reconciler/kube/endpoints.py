"""Endpoints from the cluster: Services, EndpointSlices and Pods, watched, as one registry.

:class:`ClusterEndpoints` runs an :class:`~reconciler.kube.informer.Informer` per collection
(Services, EndpointSlices, Pods' metadata) and, once all three have listed, hands a new
:class:`~reconciler.translate.ServiceRegistry` to ``on_change`` after every change, debounced: a
rollout that replaces twenty Pods is one update, not forty. Nothing is handed over before every
collection listed: a registry with the Services but not yet their slices would empty every
cluster.

EndpointSlices are read as ``discovery.k8s.io/v1``, or ``v1beta1`` where the server lacks v1
(Kubernetes before 1.21; 1.20 serves only v1beta1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from reconciler.errors import KubeError
from reconciler.kube.client import KubeApi, preferred_version
from reconciler.kube.informer import Informer, RetryDelays
from reconciler.kube.objects import (
    KubeService,
    KubeSlice,
    PodLabels,
    cluster_registry,
    parse_endpoint_slice,
    parse_pod,
    parse_service,
)
from reconciler.model.hosts import DEFAULT_DOMAIN
from reconciler.translate.registry import ServiceRegistry

__all__ = ["SLICE_VERSIONS", "ClusterEndpoints"]

log = structlog.get_logger("reconciler.kube")

T = TypeVar("T")

#: EndpointSlice API versions, preferred first.
SLICE_VERSIONS = ("v1", "v1beta1")


class ClusterEndpoints:
    """Watches the cluster and calls ``on_change(registry)`` with its services whenever they change."""

    def __init__(
        self,
        *,
        api: KubeApi,
        on_change: Callable[[ServiceRegistry], Awaitable[None]],
        backoff: Callable[[], RetryDelays],
        debounce: float = 0.1,
        domain: str = DEFAULT_DOMAIN,
    ) -> None:
        self._api = api
        self._on_change = on_change
        self._backoff = backoff
        self._debounce = debounce
        self._domain = domain
        self._dirty = asyncio.Event()
        self._registry: ServiceRegistry | None = None
        self.slice_version: str | None = None
        self.services: Informer[KubeService] | None = None
        self.slices: Informer[KubeSlice] | None = None
        self.pods: Informer[PodLabels] | None = None

    @property
    def registry(self) -> ServiceRegistry | None:
        """The cluster's services as last handed to ``on_change`` (``None`` before every collection listed)."""
        return self._registry

    async def run(self) -> None:
        """Watch until cancelled."""
        self.slice_version = await self._slice_version()
        log.info("kube.endpointslice_version", version=f"discovery.k8s.io/{self.slice_version}")
        self.services = self._informer("/api/v1/services", parse_service)
        self.slices = self._informer(
            f"/apis/discovery.k8s.io/{self.slice_version}/endpointslices", parse_endpoint_slice
        )
        self.pods = self._informer("/api/v1/pods", parse_pod, metadata_only=True)
        informers: tuple[Informer[KubeService], Informer[KubeSlice], Informer[PodLabels]] = (
            self.services,
            self.slices,
            self.pods,
        )
        tasks = [asyncio.ensure_future(informer.run()) for informer in informers]
        tasks.append(asyncio.ensure_future(self._publish(informers)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

    def _informer(self, path: str, parse: Callable[[object], T | None], *, metadata_only: bool = False) -> Informer[T]:
        return Informer(
            api=self._api,
            path=path,
            parse=parse,
            on_change=self._dirty.set,
            backoff=self._backoff(),
            metadata_only=metadata_only,
        )

    async def _slice_version(self) -> str:
        backoff = self._backoff()
        while True:
            try:
                version = preferred_version(await self._api.get("/apis/discovery.k8s.io"), wanted=SLICE_VERSIONS)
                if version is not None:
                    return version
                error = KubeError("the API server serves no EndpointSlice version this daemon reads")
            except KubeError as failure:
                error = failure
            delay = backoff.next_delay()
            log.warning("kube.discovery_failed", error=str(error), retry_in=round(delay, 2))
            await asyncio.sleep(delay)

    async def _publish(self, informers: tuple[Informer[KubeService], Informer[KubeSlice], Informer[PodLabels]]) -> None:
        services, slices, pods = informers
        await asyncio.gather(*(informer.synced.wait() for informer in informers))
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._debounce)  # changes arriving meanwhile join this update
            self._dirty.clear()
            registry = cluster_registry(
                services=services.items.values(), slices=slices.items.values(), pods=pods.items, domain=self._domain
            )
            if registry == self._registry:
                continue
            self._registry = registry
            endpoints = sum(len(service.endpoints) for service in registry.services)
            log.info("kube.endpoints_changed", services=len(registry.services), endpoints=endpoints)
            await self._on_change(registry)
