"""ClusterEndpoints against a real kube-apiserver: list, watch, re-list on 410, subsets' labels from Pods."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from kube_cluster import KubeCluster, endpoint_slice, pod, service, slices_path

from reconciler.kube.client import KubeApi, KubeClient
from reconciler.kube.endpoints import ClusterEndpoints
from reconciler.sources.backoff import Backoff
from reconciler.translate import ServiceRegistry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: Watch events arrive in milliseconds; this is headroom for a loaded machine.
DEADLINE = 30.0


async def until(what: str, predicate: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def watching(
    kube: KubeCluster, body: Callable[[ClusterEndpoints, list[ServiceRegistry]], Awaitable[None]], *, api: Any = None
) -> None:
    """Run ClusterEndpoints against ``kube`` (through ``api`` when given) while ``body`` runs."""
    client = await KubeClient.connect(kube.kubeconfig)
    updates: list[ServiceRegistry] = []

    async def record(registry: ServiceRegistry) -> None:
        updates.append(registry)

    watcher = ClusterEndpoints(
        api=api(client) if api else client,
        on_change=record,
        backoff=lambda: Backoff(base=0.05, cap=0.5),
        debounce=0.05,
    )
    task = asyncio.ensure_future(watcher.run())
    try:
        await body(watcher, updates)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


def endpoints_of(registry: ServiceRegistry | None, host: str) -> list[tuple[str, dict[str, str]]]:
    if registry is None:
        return []
    return [(e.address, dict(e.labels)) for s in registry.lookup(host) for e in s.endpoints]


def test_services_slices_and_pod_labels_become_a_registry_that_follows_every_change(
    kube: KubeCluster, namespace: str
) -> None:
    host = f"web.{namespace}.svc.cluster.local"
    kube.create(f"/api/v1/namespaces/{namespace}/services", service("web", port=80, target_port=8080))
    kube.create(f"/api/v1/namespaces/{namespace}/pods", pod("web-1", {"app": "web", "version": "v1"}))
    kube.create(
        slices_path(namespace),
        endpoint_slice("web-a", service="web", port=8080, endpoints=[("10.0.0.1", "web-1")]),
    )

    async def body(watcher: ClusterEndpoints, updates: list[ServiceRegistry]) -> None:
        await until("the listed endpoint", lambda: endpoints_of(watcher.registry, host) != [])
        # Kubernetes 1.20 serves EndpointSlices as v1beta1 only; a current server is read as v1.
        assert watcher.slice_version == "v1beta1"
        [web] = watcher.registry.lookup(host) if watcher.registry else ()
        assert [(p.number, p.name, p.protocol, p.target_port) for p in web.ports] == [(80, "http", "HTTP", 8080)]
        assert endpoints_of(watcher.registry, host) == [("10.0.0.1", {"app": "web", "version": "v1"})]
        assert web.endpoints[0].port_for(web.ports[0]) == 8080

        # A second Pod, a slice for it: the watch brings both, the Pod's labels on the endpoint.
        kube.create(f"/api/v1/namespaces/{namespace}/pods", pod("web-2", {"app": "web", "version": "v2"}))
        kube.create(
            slices_path(namespace),
            endpoint_slice("web-b", service="web", port=8080, endpoints=[("10.0.0.2", "web-2")]),
        )
        # The Pod and the slice are two watches: whichever comes second completes the endpoint.
        second = ("10.0.0.2", {"app": "web", "version": "v2"})
        await until("the second endpoint, labelled", lambda: endpoints_of(watcher.registry, host)[1:] == [second])

        # Relabelling a Pod moves its endpoint between subsets without touching the slice.
        kube.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/web-2", {"metadata": {"labels": {"version": "v3"}}})
        await until("the new label", lambda: endpoints_of(watcher.registry, host)[1][1].get("version") == "v3")

        kube.delete(slices_path(namespace, "web-a"))
        await until("the removal", lambda: [a for a, _ in endpoints_of(watcher.registry, host)] == ["10.0.0.2"])
        kube.delete(f"/api/v1/namespaces/{namespace}/services/web")
        await until("the service to go", lambda: watcher.registry is not None and not watcher.registry.lookup(host))
        # Every update was a new registry: none handed over twice.
        assert all(before != after for before, after in itertools.pairwise(updates))

    asyncio.run(watching(kube, body))


class StaleFirstList:
    """The real client, except that its first list claims a resourceVersion long compacted away."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._stale: set[str] = set()

    async def get(self, path: str) -> Mapping[str, Any]:
        return await self._client.get(path)

    async def list(self, path: str, *, metadata_only: bool = False) -> tuple[list[Any], str]:
        items, version = await self._client.list(path, metadata_only=metadata_only)
        if path not in self._stale:
            self._stale.add(path)
            return items, "1"
        return items, version

    def watch(
        self, path: str, *, resource_version: str, metadata_only: bool = False
    ) -> AsyncIterator[Mapping[str, Any]]:
        return self._client.watch(path, resource_version=resource_version, metadata_only=metadata_only)


def test_a_watch_from_an_expired_resource_version_lists_again_and_keeps_following(
    kube: KubeCluster, namespace: str
) -> None:
    host = f"api.{namespace}.svc.cluster.local"
    kube.create(f"/api/v1/namespaces/{namespace}/services", service("api", port=80))
    kube.compact()  # etcd forgets every version before now, version 1 included

    async def body(watcher: ClusterEndpoints, updates: list[ServiceRegistry]) -> None:
        # The server answers the watch from version 1 with 410 Gone: each informer lists again.
        await until(
            "a second list of every collection",
            lambda: all(
                informer is not None and informer.lists >= 2
                for informer in (watcher.services, watcher.slices, watcher.pods)
            ),
        )
        kube.create(
            slices_path(namespace), endpoint_slice("api-a", service="api", port=80, endpoints=[("10.0.1.1", None)])
        )
        await until("the endpoint, through the resumed watch", lambda: endpoints_of(watcher.registry, host) != [])

    api: Callable[[KubeClient], KubeApi] = StaleFirstList
    asyncio.run(watching(kube, body, api=api))
