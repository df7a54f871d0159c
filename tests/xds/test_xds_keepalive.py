"""Envoy's HTTP/2 keepalive pings on the ADS stream must never make the server close it.

gRPC servers answer pings more frequent than they allow (5 minutes by default) with GOAWAY
after two of them: every Envoy would reconnect and resync its whole config every minute or two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from reconciler.harness.envoy import EnvoyProcess
from reconciler.translate import ProxyIdentity, Snapshot
from reconciler.translate.bootstrap import XDS_KEEPALIVE_INTERVAL_SECONDS, build_bootstrap
from reconciler.xds import SnapshotCache, start_server
from reconciler.xds.cache import EventKind, XdsEvent
from reconciler.xds.server import MIN_PING_INTERVAL_SECONDS

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(60)]


class NothingToServe:
    def snapshot_for(self, proxy: ProxyIdentity) -> Snapshot:
        return Snapshot.build()


def test_the_server_allows_pings_as_often_as_the_generated_bootstrap_sends_them() -> None:
    assert MIN_PING_INTERVAL_SECONDS < XDS_KEEPALIVE_INTERVAL_SECONDS


def test_envoy_pinging_as_often_as_allowed_keeps_its_one_ads_stream(envoy: Callable[..., EnvoyProcess]) -> None:
    # The production pair (30 s pings, 10 s allowed) scaled down: pings every second, allowed every half.
    async def scenario() -> list[XdsEvent]:
        cache = SnapshotCache()
        cache.publish(NothingToServe())
        events: list[XdsEvent] = []
        cache.add_listener(events.append)
        server = await start_server(cache=cache, address="127.0.0.1:0", min_ping_interval=0.5)
        try:
            bootstrap = build_bootstrap(
                proxy=ProxyIdentity(node_id="pinger"), xds_host="127.0.0.1", xds_port=server.port, admin_port=0
            )
            xds_cluster = bootstrap["static_resources"]["clusters"][0]
            options = xds_cluster["typed_extension_protocol_options"]
            http2 = next(iter(options.values()))["explicit_http_config"]["http2_protocol_options"]
            http2["connection_keepalive"]["interval"] = "1s"
            await asyncio.to_thread(envoy, bootstrap)  # returns once LIVE, i.e. it got its (empty) config
            # Six pings: a server allowing fewer would have sent GOAWAY after the third.
            await asyncio.sleep(6)
        finally:
            await server.stop(grace=0)
        return events

    events = asyncio.run(scenario())

    kinds = [event.kind for event in events if event.kind in (EventKind.CONNECT, EventKind.DISCONNECT)]
    assert kinds[:2] == [EventKind.CONNECT, EventKind.DISCONNECT]  # the disconnect is the server stopping
    assert kinds.count(EventKind.CONNECT) == 1
