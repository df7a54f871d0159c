"""A minimal ADS client that behaves like Envoy's SotW subscription, for many simulated proxies at once.

It subscribes to CDS and LDS (wildcard), then EDS for the clusters it was given and RDS for the
route configurations its listeners name, ACKs every response, and stops once it holds all four types.
``initial`` versions make it reconnect like an Envoy that already runs an (older) config: the first
request of each type carries that version, as Envoy's does after a reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SHORT_NAMES

__all__ = ["fetch_snapshot"]


def _node(node_id: str, bootstrap_node: Mapping[str, Any]) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update(dict(bootstrap_node["metadata"]))
    return base_pb2.Node(id=node_id, cluster=bootstrap_node["cluster"], metadata=metadata)


def _eds_names(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    names = []
    for resource in response.resources:
        cluster = cluster_pb2.Cluster()
        resource.Unpack(cluster)
        if cluster.type == cluster_pb2.Cluster.EDS:
            names.append(cluster.eds_cluster_config.service_name or cluster.name)
    return sorted(names)


def _rds_names(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    names = set()
    for resource in response.resources:
        listener = listener_pb2.Listener()
        resource.Unpack(listener)
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                if network_filter.typed_config.Is(http_connection_manager_pb2.HttpConnectionManager.DESCRIPTOR):
                    manager = http_connection_manager_pb2.HttpConnectionManager()
                    network_filter.typed_config.Unpack(manager)
                    if manager.HasField("rds"):
                        names.add(manager.rds.route_config_name)
    return sorted(names)


async def fetch_snapshot(
    address: str,
    *,
    node_id: str,
    bootstrap_node: Mapping[str, Any],
    initial: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Connect, subscribe like Envoy, ACK everything; the version of each type (``CDS``...) once all four came."""
    initial = initial or {}
    async with grpc.aio.insecure_channel(address) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        node: base_pb2.Node | None = _node(node_id, bootstrap_node)
        subscribed: dict[str, list[str]] = {}
        versions: dict[str, str] = {}

        async def request(type_url: str, names: list[str], *, version: str = "", nonce: str = "") -> None:
            nonlocal node
            message = discovery_pb2.DiscoveryRequest(
                type_url=type_url, resource_names=names, version_info=version, response_nonce=nonce
            )
            if node is not None:
                message.node.CopyFrom(node)
                node = None
            subscribed[type_url] = names
            await call.write(message)

        async def run() -> dict[str, str]:
            for type_url in (CLUSTER, LISTENER):
                await request(type_url, [], version=initial.get(SHORT_NAMES[type_url], ""))
            while len(versions) < len(SHORT_NAMES):
                response = await call.read()
                assert response is not grpc.aio.EOF, f"{node_id}: the daemon closed the stream"
                kind = SHORT_NAMES[response.type_url]
                versions[kind] = response.version_info
                await request(
                    response.type_url,
                    subscribed[response.type_url],
                    version=response.version_info,
                    nonce=response.nonce,
                )
                follow = {CLUSTER: (ENDPOINT, _eds_names), LISTENER: (ROUTE, _rds_names)}.get(response.type_url)
                if follow is not None:
                    dependent, names_of = follow
                    wanted = names_of(response)
                    if subscribed.get(dependent) != wanted:
                        await request(dependent, wanted, version=initial.get(SHORT_NAMES[dependent], ""))
            return versions

        try:
            return await asyncio.wait_for(run(), timeout)
        finally:
            call.cancel()
