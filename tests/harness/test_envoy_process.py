"""EnvoyProcess: start, admin API access, failure reporting and stop, against the real binary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.envoy import find_envoy
from reconciler.errors import EnvoyError
from reconciler.harness.envoy import EnvoyProcess

_ADMIN_ON_ANY_PORT = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}


def _one_cluster_bootstrap(port: int) -> dict[str, Any]:
    return {
        "admin": _ADMIN_ON_ANY_PORT,
        "static_resources": {
            "clusters": [
                {
                    "name": "shop-v1",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "shop-v1",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


def test_find_envoy_prefers_the_binary_installed_in_the_venv() -> None:
    binary = find_envoy()

    assert binary.name == "envoy"
    assert binary.is_file()


@pytest.mark.envoy
def test_envoy_process_exposes_admin_state_stats_clusters_and_config_dump(
    envoy: Callable[..., EnvoyProcess], free_port: Callable[[], int]
) -> None:
    upstream_port = free_port()

    proxy = envoy(_one_cluster_bootstrap(upstream_port))

    assert proxy.running
    assert proxy.admin_url.startswith("http://127.0.0.1:")
    assert proxy.server_state() == "LIVE"
    assert proxy.stat("cluster_manager.active_clusters") == 1
    assert proxy.stats(filter_regex=r"^cluster\.shop-v1\.upstream_rq_total$") == {
        "cluster.shop-v1.upstream_rq_total": 0
    }
    assert proxy.stat("no.such.stat", default=-1) == -1
    cluster_names = [status["name"] for status in proxy.clusters()["cluster_statuses"]]
    assert cluster_names == ["shop-v1"]
    dump = proxy.config_dump(resource="static_clusters")
    assert dump["configs"][0]["cluster"]["name"] == "shop-v1"


@pytest.mark.envoy
def test_stop_ends_the_envoy_process_and_keeps_its_log_readable(envoy_binary: Path) -> None:
    proxy = EnvoyProcess(_one_cluster_bootstrap(9), envoy_binary=envoy_binary, log_level="info").start()
    workdir = proxy.workdir

    status = proxy.stop()

    assert status == 0
    assert not proxy.running
    assert not workdir.exists()  # a temporary workdir is removed
    assert "starting main dispatch loop" in proxy.log_tail(lines=1000)
    assert proxy.stop() == 0  # idempotent


@pytest.mark.envoy
def test_envoy_that_cannot_start_raises_envoy_error_with_the_log_tail(envoy_binary: Path, tmp_path: Path) -> None:
    conflicting = _one_cluster_bootstrap(9)
    conflicting["static_resources"]["clusters"] *= 2

    with pytest.raises(EnvoyError, match="duplicate cluster 'shop-v1'") as caught:
        EnvoyProcess(conflicting, envoy_binary=envoy_binary, workdir=tmp_path).start()

    assert "exited with status" in str(caught.value)


@pytest.mark.envoy
def test_waiting_for_live_times_out_with_the_server_state_in_the_error(
    envoy: Callable[..., EnvoyProcess], free_port: Callable[[], int]
) -> None:
    # ADS to a port nobody serves: Envoy stays initializing until its 15 s initial fetch timeout.
    unreachable_ads = {
        "node": {"id": "waiting", "cluster": "test"},
        "admin": _ADMIN_ON_ANY_PORT,
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    **_one_cluster_bootstrap(free_port())["static_resources"]["clusters"][0],
                    "name": "xds",
                    "load_assignment": {"cluster_name": "xds", "endpoints": []},
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                }
            ]
        },
    }
    proxy = envoy(unreachable_ads, wait_live=False)

    with pytest.raises(EnvoyError, match=r"did not become LIVE within 0\.3s \(state PRE_INITIALIZING\)"):
        proxy.wait_live(timeout=0.3)
    assert proxy.running
