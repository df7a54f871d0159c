"""The gRPC edge: ``envoy.service.metrics.v3.MetricsService/StreamMetrics`` into a :class:`MetricsStore`.

One stream per proxy, one message per flush (or per ``batch_size`` metric families). Envoy
names the node in the first message of a stream only; the answer is sent when the stream ends,
and Envoy opens a new one on its next flush.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from reconciler.metrics.envoy_stats import cluster_deltas
from reconciler.metrics.store import MetricsStore
from reconciler.metrics.wire import METRICS_SERVICE, STREAM_METRICS, StreamMetricsMessage, StreamMetricsResponse

__all__ = ["MetricsService"]

_log = structlog.get_logger()


class MetricsService:
    """Receives proxies' statistics; :meth:`add_to` registers it on a gRPC server (the xDS one)."""

    def __init__(self, store: MetricsStore) -> None:
        self._store = store

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve StreamMetrics on ``server``; pass it as one of ``reconciler.xds.server.start_server``'s services."""
        handler = grpc.stream_unary_rpc_method_handler(
            self.StreamMetrics,
            request_deserializer=StreamMetricsMessage.FromString,
            response_serializer=StreamMetricsResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(METRICS_SERVICE, {STREAM_METRICS: handler}),)
        )

    async def StreamMetrics(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        token: int | None = None
        node_id = ""
        try:
            async for message in requests:
                if token is None:
                    node_id = str(message.identifier.node.id)
                    if not node_id:
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "the first StreamMetrics message must carry identifier.node.id",
                        )
                    token = self._store.connect(node_id)
                    _log.info("metrics.connect", node_id=node_id, peer=context.peer())
                self._store.record(token, cluster_deltas(message.envoy_metrics))
        except grpc.RpcError as exc:
            # The proxy went away mid-read; its reports so far stay counted.
            _log.info("metrics.stream_broken", node_id=node_id, error=str(exc))
        finally:
            if token is not None:
                self._store.disconnect(token)
                _log.info("metrics.disconnect", node_id=node_id)
        return StreamMetricsResponse()
