"""The stats matcher keeps the pushed stream small without hiding the stats operators read."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from metrics_harness import CANARY, HOST, STABLE, MetricsHarness, Sidecar
from waiting import wait_for

from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.metrics.wire import METRICS_SERVICE, STREAM_METRICS, StreamMetricsMessage, StreamMetricsResponse
from reconciler.translate.bootstrap import CLUSTER_COUNTERS, CLUSTER_HISTOGRAM

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(120)]

_ANALYSIS_STATS = {*CLUSTER_COUNTERS, CLUSTER_HISTOGRAM}


class _RecordingSink:
    """Every metric family name proxies push, recorded on the harness's own server."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._lock = threading.Lock()

    def add_to(self, server: grpc.aio.Server) -> None:
        handler = grpc.stream_unary_rpc_method_handler(
            self._stream,
            request_deserializer=StreamMetricsMessage.FromString,
            response_serializer=StreamMetricsResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(METRICS_SERVICE, {STREAM_METRICS: handler}),)
        )

    async def _stream(self, requests: AsyncIterator[Any], context: Any) -> Any:
        async for message in requests:
            with self._lock:
                self.names.update(family.name for family in message.envoy_metrics)
        return StreamMetricsResponse()

    def seen(self) -> set[str]:
        with self._lock:
            return set(self.names)


def test_only_the_analysis_stats_of_each_cluster_reach_the_stream_and_admin_keeps_the_rest(
    upstreams: Callable[..., UpstreamServer], sidecar: Sidecar
) -> None:
    sink = _RecordingSink()
    metrics = MetricsHarness(services=[sink.add_to])
    try:
        _check_stream_and_admin(metrics, sink, upstreams=upstreams, sidecar=sidecar)
    finally:
        metrics.close()


def _check_stream_and_admin(
    metrics: MetricsHarness, sink: _RecordingSink, *, upstreams: Callable[..., UpstreamServer], sidecar: Sidecar
) -> None:
    stable, canary = upstreams("v1"), upstreams("v2")
    canary.fail(status=503, fraction=0.5)
    metrics.serve(v1=stable, v2=canary)
    port, proxy = sidecar(metrics, "client-1")

    send_requests(port=port, count=10, authority=HOST, headers={"canary": "yes"}, workers=1)
    send_requests(port=port, count=10, authority=HOST, workers=1)

    wait_for("the canary's retried 5xx in the stream", lambda: f"cluster.{CANARY}.retry.upstream_rq_5xx" in sink.seen())
    per_cluster = {name for name in sink.seen() if name.startswith("cluster.")}
    for cluster in (STABLE, CANARY):
        stats = {
            name.removeprefix(f"cluster.{cluster}.") for name in per_cluster if name.startswith(f"cluster.{cluster}.")
        }
        # Envoy's external. variants of the same stats pass the flat-name matcher too (see bootstrap.stats_config).
        assert {stat.removeprefix("external.") for stat in stats} <= _ANALYSIS_STATS, stats
        assert "upstream_rq_completed" in stats
    assert not any(
        name.endswith((".upstream_cx_total", ".upstream_rq_2xx", ".membership_total")) for name in per_cluster
    )
    assert proxy.stat("cluster.xds_cluster.upstream_cx_total", default=-1) == -1
    # What operators and tests read outside the clusters stays: the cluster manager, xDS, the server.
    assert proxy.stat("cluster_manager.active_clusters") >= 2
    assert proxy.stat("control_plane.connected_state") == 1
    assert proxy.stat("server.live") == 1
