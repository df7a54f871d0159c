"""Config changes under load: every request is answered by an upstream while the routing changes.

Traffic flows at a steady rate through a real Envoy while new configs are published:
weights change, the clusters' policy changes in place, a subset is added, a subset is
removed, every cluster is renamed (the ServiceEntry port changes), and all of it is
undone. Make-before-break must hold throughout: no 5xx, no ``NC`` (route to a cluster
Envoy does not have, or not warm yet), no ``UH`` (a cluster without endpoints), no
connection errors. And each change must be in force (ACKed in full) within seconds.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_support import Upstreams, mesh_config, running_proxy, running_upstreams, running_xds
from waiting import wait_for

from reconciler.harness.envoy import free_port
from reconciler.harness.traffic import send_at_rate
from reconciler.model.config import MeshConfig
from reconciler.translate.proxy import ProxyRole

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(90)]

AUTHORITY = "churn.e2e.test"
RATE = 150.0
TRAFFIC_SECONDS = 10.0
#: An ACK takes milliseconds on loopback. Far below Envoy's 15 s initial fetch timeout, so a
#: cluster left warming for want of its endpoints shows up as a failure, not as a slow pass.
STEP_ACK_TIMEOUT = 5.0

#: Requests to the routed versions after the ACK before a left-out version is watched: ~0.1 s at RATE, for
#: requests Envoy routed just before the ACK (or before its workers took the new routes) to land.
SETTLE_REQUESTS = 15
#: Then this many more to the routed versions, and not one may reach a version the step left out. Were the
#: old routes still in force, the left-out version would get its old share: v1 had 40% before it was
#: removed, so 30 requests elsewhere come with ~20 to v1, and none at all has probability 0.6^50 ~ 1e-11.
WATCH_REQUESTS = 30

#: (what changes, fixture file, ServiceEntry port, versions that must then receive traffic, and only they)
STEPS: tuple[tuple[str, str, int, frozenset[str]], ...] = (
    ("weights change 80/20 -> 50/50", "churn/2-split-50-50.yaml", 80, frozenset({"v1", "v2"})),
    ("the clusters' policy changes in place", "churn/2-policy-in-place.yaml", 80, frozenset({"v1", "v2"})),
    ("subset v3 is added", "churn/3-add-v3.yaml", 80, frozenset({"v1", "v2", "v3"})),
    ("subset v1 is removed", "churn/4-remove-v1.yaml", 80, frozenset({"v2", "v3"})),
    ("every cluster is renamed (port 80 -> 8080)", "churn/4-remove-v1.yaml", 8080, frozenset({"v2", "v3"})),
    ("all of it is undone", "churn/1-split-80-20.yaml", 80, frozenset({"v1", "v2"})),
)


def _by_version(upstreams: Upstreams) -> dict[str, int]:
    return {server.version: server.request_count for server in (upstreams.v1, upstreams.v2, upstreams.v3)}


def _routed_after(upstreams: Upstreams, since: dict[str, int], versions: frozenset[str], count: int) -> dict[str, int]:
    """Request counts once ``versions`` together have answered ``count`` more requests than at ``since``."""
    wait_for(
        f"{count} requests to {sorted(versions)}",
        lambda: sum(_by_version(upstreams)[v] - since[v] for v in versions) >= count,
    )
    return _by_version(upstreams)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@pytest.mark.parametrize("role", [ProxyRole.GATEWAY, ProxyRole.SIDECAR], ids=["gateway", "sidecar"])
def test_changing_the_served_config_under_steady_traffic_loses_no_request(
    role: ProxyRole, delta: bool, tmp_path: Path
) -> None:
    gateway_port = free_port()
    with running_upstreams() as upstreams, running_xds() as xds:

        def config(file: str, app_port: int) -> MeshConfig:
            return mesh_config([file], role=role, upstreams=upstreams, gateway_port=gateway_port, app_port=app_port)

        first = xds.publish_config(config("churn/1-split-80-20.yaml", 80))
        with (
            running_proxy(
                xds, role, generation=first, workdir=tmp_path / "envoy", gateway_port=gateway_port,
                serving_authority=AUTHORITY, delta=delta,
            ) as proxy,
            ThreadPoolExecutor(max_workers=1) as pool,
        ):  # fmt: skip
            # Translate every step before the traffic starts, so the steps follow each other quickly.
            configs = [(what, config(file, port), versions) for what, file, port, versions in STEPS]
            ack_seconds: dict[str, float] = {}
            strays: dict[str, dict[str, int]] = {}
            before = _by_version(upstreams)
            started = time.monotonic()
            traffic = pool.submit(
                send_at_rate, port=proxy.port, rate=RATE, duration=TRAFFIC_SECONDS, authority=AUTHORITY, workers=8
            )
            wait_for("traffic to flow", lambda: _by_version(upstreams)["v1"] > before["v1"] + 20)

            for what, step_config, versions in configs:
                generation = xds.publish_config(step_config)
                published = time.monotonic()
                xds.wait_acked(proxy.node_id, generation, timeout=STEP_ACK_TIMEOUT)
                ack_seconds[what] = time.monotonic() - published
                acked = _by_version(upstreams)
                # The new routing is live once every version it names has answered since the ACK.
                wait_for(
                    f"{sorted(versions)} to answer after: {what}",
                    lambda acked=acked, versions=versions: all(
                        _by_version(upstreams)[version] > acked[version] for version in versions
                    ),
                )
                # ... and a version it leaves out (v1 once removed) stops receiving traffic.
                settled = _routed_after(upstreams, acked, versions, SETTLE_REQUESTS)
                watched = _routed_after(upstreams, settled, versions, WATCH_REQUESTS)
                strays[what] = {
                    v: watched[v] - settled[v] for v in watched if v not in versions and watched[v] > settled[v]
                }
            changes_done_after = time.monotonic() - started
            result = traffic.result(timeout=TRAFFIC_SECONDS + 15.0)
            dump = proxy.envoy.config_dump(resource="dynamic_active_clusters")
            clusters = {entry["cluster"]["name"] for entry in dump["configs"]}

    assert changes_done_after < TRAFFIC_SECONDS - 1.0, f"every change happened while traffic flowed: {ack_seconds}"
    assert strays == {what: {} for what, *_ in STEPS}, "requests reached a version the config in force left out"
    assert not result.deadline_hit
    assert result.requested == round(RATE * TRAFFIC_SECONDS)
    assert result.by_status == {200: result.requested}, (result.local_replies, result.errors)
    assert result.nc == 0
    assert result.uh == 0
    assert not result.local_replies, result.local_replies
    assert not result.errors, result.errors
    assert set(result.by_version) == {"v1", "v2", "v3"}
    assert result.requested / result.elapsed_s >= 100.0, f"{result.requested} requests took {result.elapsed_s:.1f}s"
    # The last config is the first one again: the renamed and removed clusters are gone.
    assert {name for name in clusters if "app.e2e.internal" in name} == {
        "outbound|80||app.e2e.internal",
        "outbound|80|v1|app.e2e.internal",
        "outbound|80|v2|app.e2e.internal",
    }
