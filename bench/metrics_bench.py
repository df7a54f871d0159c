"""Daemon-side CPU of receiving proxies' statistics: CPU-seconds per second, per proxy.

N real Envoys (bootstrapped by ``build_bootstrap``: the metrics_service sink and the stats
matcher as shipped, flushing every second) each get C static clusters named like Istio subset
clusters, one request to each so every analysis counter exists, then the daemon's gRPC server
with the metrics service is measured for a quiet window: each flush still carries every
touched counter (zero deltas included) and each cluster's histogram.

Not a test: prints a table. Everything listens on 127.0.0.1 and is stopped on exit.

    .venv/bin/python bench/metrics_bench.py --proxies 10 --clusters 100 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from typing import Any

from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.metrics import MetricsService, MetricsStore
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.names import cluster_name
from reconciler.translate.proxy import ProxyIdentity
from reconciler.xds import SnapshotCache, start_server

_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def _proxy_bootstrap(*, node_id: str, xds_port: int, listen_port: int, upstream_port: int, clusters: int) -> Any:
    bootstrap = build_bootstrap(
        proxy=ProxyIdentity(node_id=node_id, labels={}), xds_host="127.0.0.1", xds_port=xds_port, admin_port=0
    )
    del bootstrap["dynamic_resources"]  # static clusters: the bench measures the metrics stream, not ADS
    names = [cluster_name(host="bench.internal", port=80, subset=f"c{index}") for index in range(clusters)]
    endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}
    bootstrap["static_resources"]["clusters"] += [
        {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}]},
        }
        for name in names
    ]
    routes = [{"match": {"path": f"/c{index}"}, "route": {"cluster": name}} for index, name in enumerate(names)]
    manager = {
        "@type": _HCM,
        "stat_prefix": "bench",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    bootstrap["static_resources"]["listeners"] = [
        {
            "name": "bench",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
            ],
        }
    ]
    return bootstrap


def _measure(*, proxies: int, clusters: int, window: float) -> tuple[float, int]:
    """CPU-seconds per second of this process (the daemon side) over a quiet ``window``, and flushes seen."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    store = MetricsStore()
    service = MetricsService(store)
    server = asyncio.run_coroutine_threadsafe(
        start_server(cache=SnapshotCache(), address="127.0.0.1:0", services=[service.add_to]), loop
    ).result(10)
    upstream = UpstreamServer("bench").start()
    with contextlib.ExitStack() as stack:
        ports = []
        for index in range(proxies):
            port = free_port()
            bootstrap = _proxy_bootstrap(
                node_id=f"bench-{index}",
                xds_port=server.port,
                listen_port=port,
                upstream_port=upstream.port,
                clusters=clusters,
            )
            stack.enter_context(EnvoyProcess(bootstrap, startup_timeout=60.0))
            ports.append(port)
        for port in ports:
            for index in range(clusters):
                send_requests(port=port, count=1, path=f"/c{index}", workers=1)
        time.sleep(3.0)  # let the traffic's flushes pass; the window sees steady state only
        cpu_before, wall_before, proxies_before = time.process_time(), time.monotonic(), store.proxies()
        time.sleep(window)
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        reports = len(proxies_before)
    asyncio.run_coroutine_threadsafe(server.stop(grace=0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    upstream.stop()
    return cpu / wall, reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxies", type=int, default=10)
    parser.add_argument("--clusters", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured (default: %(default)s)")
    args = parser.parse_args()
    print(f"{'proxies':>8} {'clusters':>9} {'reporting':>10} {'CPU s/s':>8} {'CPU s/s per proxy':>18}")
    for clusters in args.clusters:
        rate, reporting = _measure(proxies=args.proxies, clusters=clusters, window=args.window)
        print(f"{args.proxies:>8} {clusters:>9} {reporting:>10} {rate:>8.3f} {rate / args.proxies:>18.4f}")


if __name__ == "__main__":
    main()
