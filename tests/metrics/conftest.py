"""Fixtures of the metrics tests: a daemon-side gRPC server with the metrics service, sidecar Envoys."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from metrics_harness import MetricsHarness, Sidecar
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole


@pytest.fixture
def metrics() -> Iterator[MetricsHarness]:
    harness = MetricsHarness()
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def sidecar(envoy: Callable[..., EnvoyProcess]) -> Sidecar:
    """``sidecar(harness, node_id)`` starts a sidecar Envoy once it has its config: (outbound port, process)."""

    def start(harness: MetricsHarness, node_id: str) -> tuple[int, EnvoyProcess]:
        port = free_port()
        identity = ProxyIdentity(node_id=node_id, labels={"app": "client"}, role=ProxyRole.SIDECAR, outbound_port=port)
        bootstrap = build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=harness.server.port, admin_port=0)
        process = envoy(bootstrap)
        if not harness.reports_to_store:
            return port, process
        # Envoy drops a flush it cannot send, deltas included: traffic before its metrics stream is open
        # may never be counted. Its first flush (1 s) opens the stream.
        wait_for(
            f"{node_id}'s metrics stream",
            lambda: node_id in {proxy.node_id for proxy in harness.store.proxies()},
            seen=harness.store.proxies,
        )
        return port, process

    return start
