"""How long a real Envoy takes to reopen its ADS stream once the daemon's xDS server is back after an outage.

The scenario the test and ``bench/xds_reconnect_bench.py`` share: serve ADS on a port, let Envoy connect,
stop the server (every stream ends, as when the daemon is killed), keep the port dark for ``outage``
seconds, start a fresh server (a fresh cache: a restarted daemon) on the same port, and measure from
that start until the server sees Envoy's new stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from waiting import wait_for
from xds_thread import XdsThread

from reconciler.harness.envoy import EnvoyProcess
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.xds import ProxyStatus

__all__ = ["OUTAGE_SECONDS", "PROXY", "reconnect_delay"]

#: Long enough that Envoy's default backoff (0.5 s doubling to 30 s) has grown well past a few seconds.
OUTAGE_SECONDS = 8.0
PROXY = ProxyIdentity(node_id="gw-reconnect", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)


def reconnect_delay(
    start_envoy: Callable[[Mapping[str, Any]], EnvoyProcess],
    bootstrap_for: Callable[[int], Mapping[str, Any]],
    *,
    outage: float = OUTAGE_SECONDS,
) -> float:
    """Seconds from the restarted server's start to Envoy's new ADS stream (the server's own clock).

    ``bootstrap_for(port)`` is the bootstrap of :data:`PROXY` pointing at ``port``; ``start_envoy``
    starts it without waiting for LIVE (nothing is published, so Envoy never gets its first config).
    """
    server = XdsThread(name="xds-before-outage")
    port = server.port
    try:
        proxy = start_envoy(bootstrap_for(port))
        wait_for("Envoy's first ADS stream", lambda: _connected(server))
    finally:
        server.close()
    wait_for("Envoy to notice the server is gone", lambda: proxy.stat("control_plane.connected_state") == 0)
    time.sleep(outage)  # the outage itself: Envoy retries meanwhile, its backoff growing
    restarted = XdsThread(port=port, name="xds-after-outage")
    started = time.time()  # the cache stamps connected_since with time.time
    try:
        status = wait_for("Envoy's ADS stream to the restarted server", lambda: _connected(restarted), timeout=120)
        return max(0.0, status.connected_since - started)
    finally:
        restarted.close()


def _connected(server: XdsThread) -> ProxyStatus | None:
    return server.call(server.cache.status, PROXY.node_id)
