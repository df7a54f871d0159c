"""Simulated proxies in a child process: each subscribes and ACKs on its own connection, then idles.

For tests that measure what the ADS server keeps per connected proxy: the clients' own memory stays
in the child (start :func:`hold_idle_streams` with multiprocessing's ``spawn`` context).
"""

from __future__ import annotations

import asyncio
import multiprocessing.synchronize
from collections.abc import Sequence

import grpc
from ads_client import AdsStream
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc

from reconciler.translate.snapshot import CLUSTER

__all__ = ["hold_idle_streams"]


def hold_idle_streams(
    address: str, node_ids: Sequence[str], names: Sequence[str], stop: multiprocessing.synchronize.Event
) -> None:
    """Per node, one connection: request CDS, ACK it naming ``names`` (as Envoy's EDS ACKs name every cluster).

    Then stay connected, idle, until ``stop``.
    """

    async def main() -> None:
        channels = []
        try:
            for node_id in node_ids:
                # A connection each, as each Envoy has (a shared subchannel would put every stream on one).
                channel = grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                channels.append(channel)
                call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
                stream = AdsStream(call, node=base_pb2.Node(id=node_id))
                await stream.ack(await stream.request(CLUSTER), names=names)
            await asyncio.to_thread(stop.wait)
        finally:
            for channel in channels:
                await channel.close()

    asyncio.run(main())
