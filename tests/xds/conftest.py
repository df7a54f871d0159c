"""A real ADS server on 127.0.0.1 (free port) and a real grpc.aio client, per test.

pytest-asyncio is not installed: a test hands an async ``scenario(env)`` to
``ads.run``, which runs it on a fresh event loop with the server started and stopped
around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from ads_client import RECV_TIMEOUT, AdsStream
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc
from google.protobuf import struct_pb2

from reconciler.translate.proxy import ProxyIdentity
from reconciler.translate.snapshot import Snapshot
from reconciler.xds.cache import ProxyStatus, SnapshotCache
from reconciler.xds.server import XdsServer, start_server
from reconciler.xds.tls import ServerTls


class FixedSource:
    """Gives every proxy the same snapshot, or the one named for its node id."""

    def __init__(self, snapshot: Snapshot, per_node: dict[str, Snapshot] | None = None) -> None:
        self._snapshot = snapshot
        self._per_node = per_node or {}

    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
        return self._per_node.get(proxy.node_id, self._snapshot)


class AdsEnv:
    def __init__(self, *, cache: SnapshotCache, server: XdsServer, channel: grpc.aio.Channel) -> None:
        self.cache = cache
        self.server = server
        self.channel = channel
        self._stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

    def publish(self, snapshot: Snapshot, per_node: dict[str, Snapshot] | None = None) -> int:
        return self.cache.publish(FixedSource(snapshot, per_node))

    @asynccontextmanager
    async def stream(
        self, node_id: str = "node-1", *, labels: dict[str, str] | None = None
    ) -> AsyncIterator[AdsStream]:
        node = base_pb2.Node(id=node_id)
        node.metadata.CopyFrom(_struct({"LABELS": labels or {}}))
        call = self._stub.StreamAggregatedResources()
        stream = AdsStream(call, node=node)
        try:
            yield stream
        finally:
            stream.cancel()

    async def status_where(
        self, node_id: str, predicate: Callable[[ProxyStatus], bool], *, timeout: float = RECV_TIMEOUT
    ) -> ProxyStatus:
        """Wait for ``node_id``'s status to satisfy ``predicate``; fail the test on timeout."""

        def holds(statuses: Iterable[ProxyStatus]) -> bool:
            return any(status.node_id == node_id and predicate(status) for status in statuses)

        assert await self.cache.wait_until(holds, timeout=timeout), self.cache.status(node_id)
        status = self.cache.status(node_id)
        assert status is not None
        return status


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


class AdsRunner:
    def run(
        self,
        scenario: Callable[[AdsEnv], Awaitable[None]],
        *,
        cache: SnapshotCache | None = None,
        tls: ServerTls | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """Run ``scenario`` against a fresh server; with ``tls`` it speaks TLS and the client uses ``credentials``."""
        asyncio.run(self._main(scenario, cache or SnapshotCache(), tls=tls, credentials=credentials))

    @staticmethod
    async def _main(
        scenario: Callable[[AdsEnv], Awaitable[None]],
        cache: SnapshotCache,
        *,
        tls: ServerTls | None,
        credentials: grpc.ChannelCredentials | None,
    ) -> None:
        server = await start_server(cache=cache, address="127.0.0.1:0", tls=tls)
        try:
            if credentials is None:
                client = grpc.aio.insecure_channel(server.address)
            else:
                client = grpc.aio.secure_channel(server.address, credentials)
            async with client as channel:
                await scenario(AdsEnv(cache=cache, server=server, channel=channel))
        finally:
            await server.stop(grace=0)


@pytest.fixture
def ads() -> AdsRunner:
    return AdsRunner()
