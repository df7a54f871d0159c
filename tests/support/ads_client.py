"""A grpc.aio ADS client stream that behaves like Envoy's, for tests of the ADS server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

__all__ = ["RECV_TIMEOUT", "AdsStream"]

#: Long enough for a loaded CI machine, short enough that a missing response fails fast.
RECV_TIMEOUT = 5.0


class AdsStream:
    """One client ADS stream; sends the node only on its first request, like Envoy."""

    def __init__(self, call: Any, *, node: base_pb2.Node) -> None:
        self._call = call
        self._node: base_pb2.Node | None = node

    async def send(
        self,
        type_url: str,
        *,
        names: Iterable[str] = (),
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce
        )
        await self._write(request, error=error)

    async def _write(
        self, request: discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest, *, error: str | None
    ) -> None:
        """Send ``request``, with the node if it is the first, and ``error`` as a NACK's detail."""
        if self._node is not None:
            request.node.CopyFrom(self._node)
            self._node = None
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self._call.write(request)

    async def recv(self) -> Any:
        response = await asyncio.wait_for(self._call.read(), RECV_TIMEOUT)
        assert response is not grpc.aio.EOF, "the server closed the stream"
        return response

    async def request(self, type_url: str, *, names: Iterable[str] = ()) -> discovery_pb2.DiscoveryResponse:
        await self.send(type_url, names=names)
        return await self.recv()

    async def ack(self, response: discovery_pb2.DiscoveryResponse, *, names: Iterable[str] = ()) -> None:
        await self.send(response.type_url, names=names, version=response.version_info, nonce=response.nonce)

    async def nack(
        self, response: discovery_pb2.DiscoveryResponse, *, message: str, version: str = "", names: Iterable[str] = ()
    ) -> None:
        # A NACK carries the version the proxy still runs, not the rejected one.
        await self.send(response.type_url, names=names, version=version, nonce=response.nonce, error=message)

    def cancel(self) -> None:
        self._call.cancel()

    async def refusal(self, type_url: str) -> tuple[grpc.StatusCode, str]:
        """Request ``type_url`` expecting the server to end the stream instead; its status code and details.

        A server that refuses before reading anything may end the call before the request is even
        written, so a failed write counts as well as a failed read.
        """
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            response = await self.request(type_url)
            raise AssertionError(f"served instead of refused: {response.type_url}")
        return await self._call.code(), str(await self._call.details())
