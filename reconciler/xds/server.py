"""The gRPC edge: an asyncio Aggregated Discovery Service serving state-of-the-world and delta xDS.

Each ``StreamAggregatedResources`` (state of the world) or ``DeltaAggregatedResources``
(incremental) call is one proxy: the node from its first request identifies it to the
cache, and an :class:`~reconciler.xds.session.AdsSession` or
:class:`~reconciler.xds.delta.DeltaAdsSession` decides what to send in answer to requests
and to snapshot changes. Responses leave as the bytes the session framed.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias

import grpc
import structlog
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from reconciler.errors import XdsError
from reconciler.model.address import format_address, is_loopback, parse_address
from reconciler.translate.proxy import ProxyIdentity
from reconciler.xds.cache import XdsCache
from reconciler.xds.delta import DeltaAdsSession
from reconciler.xds.requests import RecentRequests
from reconciler.xds.session import AdsSession
from reconciler.xds.shared import Shared
from reconciler.xds.tls import ServerTls, check_listen_security, server_credentials

__all__ = ["MIN_PING_INTERVAL_SECONDS", "AggregatedDiscoveryService", "XdsServer", "start_server"]

_log = structlog.get_logger()

#: The most often a proxy may ping; below the keepalive interval of the bootstrap reconciler generates (30 s).
MIN_PING_INTERVAL_SECONDS = 10.0
_SERVER_PING_INTERVAL_MS = 60_000
_SERVER_PING_TIMEOUT_MS = 20_000
#: The most a connection keeps allocated for its next read (gRPC's first read size; a longer message is read
#: in more rounds, never truncated). Unset, gRPC grows it toward the largest read seen and keeps it: after a
#: state-of-the-world EDS ACK (every subscribed name, 140 KB at 1,000 services) each idle connection holds one
#: or two 64 KiB read slices for as long as its proxy stays connected (docs/benchmarks.md, session 10).
#: A gRPC without the option ignores it: tests/xds/test_xds_idle_memory.py would fail then.
_READ_BUFFER_BYTES = 8192


_ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"

_Request: TypeAlias = discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest
_REQUEST_TYPES = (discovery_pb2.DiscoveryRequest, discovery_pb2.DeltaDiscoveryRequest)


class _Outgoing:
    """One response on its way to gRPC, handed over once.

    gRPC's server loop keeps the message a handler yielded last until the handler yields
    the next: for an idle stream that is its last response, up to megabytes, for as long
    as the proxy stays connected. gRPC gets this holder instead, and the bytes leave it
    when gRPC serializes it.
    """

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def take(self) -> bytes:
        data, self._data = self._data, b""
        return data


class _Signal(enum.Enum):
    SNAPSHOT_CHANGED = enum.auto()
    END_OF_REQUESTS = enum.auto()


class AggregatedDiscoveryService:
    """The ADS servicer; method names are the gRPC service's."""

    def __init__(self, cache: XdsCache) -> None:
        self._cache = cache
        # One for every stream: a snapshot's resource set is framed once, whoever sends it first.
        self._shared = Shared(generation=lambda: cache.generation)
        # Proxies of a shape ACK a push with the same bytes: parsed (and their names interned) once for all.
        self._requests = RecentRequests(intern=self._shared.names)

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve ADS on ``server``. Responses go out as the bytes the sessions framed, not re-serialized."""
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.StreamAggregatedResources,
                request_deserializer=self._requests.parse,
                response_serializer=_Outgoing.take,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.DeltaAggregatedResources,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_Outgoing.take,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_ADS_SERVICE, handlers),))

    async def StreamAggregatedResources(
        self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[_Outgoing]:
        """State-of-the-world ADS: every response carries a type's whole set."""
        async for response in self._serve(requests, context, delta=False):
            yield response

    async def DeltaAggregatedResources(
        self, requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[_Outgoing]:
        """Incremental ADS: responses carry what changed and the names of what is gone."""
        async for response in self._serve(requests, context, delta=True):
            yield response

    async def _serve(
        self, requests: AsyncIterator[_Request], context: grpc.aio.ServicerContext[Any, Any], *, delta: bool
    ) -> AsyncIterator[_Outgoing]:
        # One queue for both inputs, so requests and snapshot changes are handled strictly in turn.
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(_read_requests(requests, context, inbox, peer=context.peer()))
        try:
            first = await inbox.get()
            if first is _Signal.END_OF_REQUESTS:
                return
            try:
                proxy = _identify(first)
            except XdsError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            connection = self._cache.connect(proxy, on_change=lambda: inbox.put_nowait(_Signal.SNAPSHOT_CHANGED))
            _log.info("xds.connect", node_id=proxy.node_id, peer=context.peer(), delta=delta)
            session: AdsSession | DeltaAdsSession = (
                DeltaAdsSession(node_id=proxy.node_id, connection=connection, shared=self._shared)
                if delta
                else AdsSession(
                    node_id=proxy.node_id, connection=connection, shared=self._shared, requests=self._requests
                )
            )
            try:
                item = first
                del first
                while item is not _Signal.END_OF_REQUESTS:
                    if item is _Signal.SNAPSHOT_CHANGED:
                        responses = session.handle_snapshot_change()
                    else:
                        responses = session.handle_request(item)
                    # Nothing kept while the stream idles: an EDS request names every cluster, and a
                    # response is megabytes; a thousand idle streams would hold a copy each.
                    del item
                    while responses:
                        yield _Outgoing(responses.pop(0))
                    item = await inbox.get()
            finally:
                connection.close()
                _log.info("xds.disconnect", node_id=proxy.node_id)
        finally:
            reader.cancel()


async def _read_requests(
    requests: AsyncIterator[_Request],
    context: grpc.aio.ServicerContext[Any, Any],
    inbox: asyncio.Queue[Any],
    *,
    peer: str,
) -> None:
    # The first request comes from gRPC's iterator: an interceptor may have taken it already (to check the
    # node, tls.IdentityInterceptor) and hands it on there. The rest come from ``context.read()``: the iterator
    # keeps the last request it yielded while it waits for the next, i.e. for as long as the stream idles,
    # and after an endpoint push that is the proxy's EDS ACK, which in state of the world names every cluster.
    try:
        request: object = await anext(aiter(requests), None)
        while isinstance(request, _REQUEST_TYPES):  # else gRPC's EOF: the proxy ended its side
            inbox.put_nowait(request)
            del request  # not held while waiting for the next one
            request = await context.read()
    except grpc.RpcError as exc:
        # The proxy went away mid-read; ending the stream is all there is to do.
        _log.info("xds.stream_broken", peer=peer, error=str(exc))
    finally:
        inbox.put_nowait(_Signal.END_OF_REQUESTS)


def _identify(request: _Request) -> ProxyIdentity:
    if not request.HasField("node") or not request.node.id:
        raise XdsError("the first request on an ADS stream must carry node.id")
    metadata = json_format.MessageToDict(request.node.metadata)
    return ProxyIdentity.from_metadata(str(request.node.id), metadata)


class XdsServer:
    """A running ADS server; ``address`` is the bound ``host:port``."""

    def __init__(self, *, server: grpc.aio.Server, host: str, port: int) -> None:
        self._server = server
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    async def stop(self, *, grace: float = 1.0) -> None:
        """Refuse new streams, give open ones ``grace`` seconds, then close them (proxies reconnect)."""
        await self._server.stop(grace)
        _log.info("xds.server_stopped", address=self.address)


async def start_server(
    *,
    cache: XdsCache,
    address: str,
    min_ping_interval: float = MIN_PING_INTERVAL_SECONDS,
    services: Sequence[Callable[[grpc.aio.Server], None]] = (),
    tls: ServerTls | None = None,
    plaintext: bool = False,
    ads: bool = True,
) -> XdsServer:
    """Serve ADS on ``address`` (``host:port``; port 0 picks a free one, see ``XdsServer.port``).

    Proxies may send HTTP/2 keepalive pings every ``min_ping_interval`` seconds or less often.
    UsageError when ``address`` is not ``HOST:PORT``.
    ``services`` add more servicers to the same server, which proxies reach over the same
    ``xds_cluster`` (e.g. ``reconciler.metrics.MetricsService(store).add_to``).
    With ``tls`` the port speaks TLS (mutual TLS with a client CA; :mod:`reconciler.xds.tls`),
    for every service; without it, plaintext beyond loopback needs ``plaintext=True``.
    ``ads=False`` serves only ``services`` (CRD mode: istiod serves the proxies).
    """
    host, _ = parse_address(address, what="xDS address", allow_port_zero=True)
    check_listen_security(host, tls=tls, plaintext=plaintext)
    if tls is None and not is_loopback(host):
        _log.warning(
            "xds.plaintext", host=host, message="plaintext xDS beyond loopback: routes readable, node ids unchecked"
        )
    credentials, interceptors = server_credentials(tls) if tls is not None else (None, [])
    options = [
        # Without this, gRPC's SO_REUSEPORT lets a second server silently share a busy port.
        ("grpc.so_reuseport", 0),
        # gRPC's default (5 min) answers Envoy's 30 s keepalive pings with GOAWAY after two of
        # them: every proxy would drop and resync its whole config every couple of minutes.
        ("grpc.http2.min_ping_interval_without_data_ms", round(min_ping_interval * 1000)),
        # Our own pings find streams whose proxy vanished without a FIN (node loss, NAT drop).
        ("grpc.keepalive_time_ms", _SERVER_PING_INTERVAL_MS),
        ("grpc.keepalive_timeout_ms", _SERVER_PING_TIMEOUT_MS),
        ("grpc.experimental.tcp_max_read_buffer_size", _READ_BUFFER_BYTES),
    ]
    server = grpc.aio.server(options=options, interceptors=interceptors)
    if ads:
        AggregatedDiscoveryService(cache).add_to(server)
    for add_service in services:
        add_service(server)
    try:
        port = (
            server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
        )
        await server.start()
    except RuntimeError as exc:
        raise XdsError(f"cannot serve xDS on {address}: {exc}") from exc
    _log.info("xds.server_started", address=format_address(host, port), tls=_tls_mode(tls))
    return XdsServer(server=server, host=host, port=port)


def _tls_mode(tls: ServerTls | None) -> str:
    if tls is None:
        return "plaintext"
    return "mutual" if tls.mutual else "server-only"
