"""Drift end to end: a daemon checks a real Envoy's ACKs and /config_dump, and `reconciler diff --server` reads it.

The drift is real: an Envoy restarted with a stale bootstrap that holds, statically, a
cluster the daemon serves (pointing at the other upstream). Envoy keeps a static cluster over
a served one of the same name and still ACKs, so only its config dump shows it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import CLI, HOST, Daemon, Mesh, run_command
from golden import assert_golden
from translate_support import GOLDEN
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

pytestmark = [pytest.mark.envoy]

_GATEWAY = ProxyIdentity(node_id="ingress-1", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)


def _bootstrap(daemon: Daemon, admin_port: int) -> dict[str, Any]:
    # A fixed admin port: it is announced in the node metadata, and the daemon reads /config_dump there.
    return build_bootstrap(proxy=_GATEWAY, xds_host="127.0.0.1", xds_port=daemon.xds_port, admin_port=admin_port)


def _drift_of(daemon: Daemon, node_id: str = "ingress-1") -> dict[str, Any] | None:
    return next((entry for entry in daemon.status()["drift"] if entry["nodeId"] == node_id), None)


def _drift_metric(daemon: Daemon) -> str:
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return next((line for line in text.splitlines() if line.startswith("reconciler_drift_detected{")), "")


def _events(daemon: Daemon) -> list[str]:
    events = []
    for line in daemon.log_since_start().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                events.append(str(entry.get("event")))
    return events


@pytest.fixture
def checked(
    mesh: Mesh, daemons: Callable[..., Daemon], envoy: Callable[..., EnvoyProcess], free_port: Callable[[], int]
) -> tuple[Daemon, EnvoyProcess, int]:
    """A daemon checking drift every 300 ms, serving the first commit to an ACKed gateway it found in sync."""
    daemon = daemons(repo=mesh.repo.url, extra_args=["--drift-interval", "300ms"]).start()
    daemon.wait_synced(mesh.initial_sha)
    admin_port = free_port()
    proxy = envoy(_bootstrap(daemon, admin_port))
    wait_for("the gateway to route", lambda: send_requests(port=mesh.gateway_port, count=5, authority=HOST).by_version)
    daemon.wait_status(
        "the gateway's drift check to find it in sync",
        lambda status: any(e["state"] == "InSync" and e["live"] == "checked" for e in status["drift"]),
    )
    return daemon, proxy, admin_port


@pytest.mark.parametrize("output", ["text", "markdown", "json"])
def test_a_gateway_that_runs_what_it_acked_is_in_sync_and_diff_proxy_says_so_in_every_output(
    checked: tuple[Daemon, EnvoyProcess, int], output: str
) -> None:
    daemon, _, _ = checked

    shown = run_command([*CLI, "diff", "--server", daemon.url, "--proxy", "ingress-1", "-o", output], timeout=30)
    unknown = run_command([*CLI, "diff", "--server", daemon.url, "--proxy", "ingress-9", "-o", output], timeout=30)

    assert shown.returncode == 0, shown.stdout + shown.stderr
    if output == "json":
        found = json.loads(shown.stdout)
        assert (found["nodeId"], found["live"], found["drift"], found["total"]) == ("ingress-1", "checked", [], 0)
        assert all(entry["served"] == entry["acked"] for entry in found["types"].values())
    else:
        assert "live checked" in shown.stdout
        assert "It runs every resource it is served, as served." in shown.stdout
    assert unknown.returncode == 2
    assert "no connected proxy 'ingress-9'" in unknown.stderr
    assert _drift_metric(daemon) == 'reconciler_drift_detected{node_id="ingress-1"} 0.0'


def _diff_tree(daemon: Daemon, mesh: Mesh, tree: Path, *, output: str) -> tuple[int, str]:
    """``reconciler diff TREE --server``: exit code and stdout with the run's SHA, path and port made stable."""
    shown = run_command([*CLI, "diff", str(tree), "--server", daemon.url, "-o", output], timeout=60)
    assert not shown.stderr, shown.stderr
    out = shown.stdout.replace(mesh.initial_sha, "SERVED").replace(mesh.initial_sha[:12], "SERVED")
    return shown.returncode, out.replace(str(tree), "TREE").replace(str(mesh.gateway_port), "GATEWAY_PORT")


@pytest.mark.parametrize("output", ["text", "markdown", "json"])
def test_diff_of_a_working_tree_against_the_served_config_shows_routes_envoy_resources_and_the_connected_gateway(
    checked: tuple[Daemon, EnvoyProcess, int], mesh: Mesh, tmp_path: Path, output: str
) -> None:
    daemon, _, _ = checked
    tree = tmp_path / "tree"
    tree.mkdir()
    for name, content in mesh.files(v1=100, v2=0).items():
        (tree / Path(name).name).write_text(content)

    same_code, same = _diff_tree(daemon, mesh, tree, output=output)
    (tree / "virtualservice.yaml").write_text(mesh.files(v1=60, v2=40)["mesh/virtualservice.yaml"])
    changed_code, changed = _diff_tree(daemon, mesh, tree, output=output)
    (tree / "virtualservice.yaml").write_text("kind: VirtualService\nspec: [")
    broken = run_command([*CLI, "diff", str(tree), "--server", daemon.url, "-o", output], timeout=60)

    assert (same_code, changed_code, broken.returncode) == (0, 1, 2), changed + broken.stderr
    if output == "json":
        document = json.loads(changed)
        assert (json.loads(same)["equal"], document["equal"]) == (True, False)
        assert document["connected"] == "1 of 1 gateway: RDS only"
        gateway = next(proxy for proxy in document["proxies"] if proxy["connected"])
        assert (gateway["role"], gateway["labels"], gateway["xdsTypes"]) == (
            "gateway",
            {"istio": "ingressgateway"},
            ["RDS"],
        )
        assert document["served"]["sha"] == "SERVED"
    else:
        suffix = "md" if output == "markdown" else "txt"
        assert_golden(same, GOLDEN / "diff" / f"server-equal.{suffix}")
        assert_golden(changed, GOLDEN / "diff" / f"server-weight-change.{suffix}")


def test_a_gateway_restarted_with_a_stale_static_cluster_is_reported_as_drifted_and_in_sync_once_fixed(
    checked: tuple[Daemon, EnvoyProcess, int], mesh: Mesh, envoy: Callable[..., EnvoyProcess]
) -> None:
    daemon, proxy, admin_port = checked
    clusters = proxy.config_dump(resource="dynamic_active_clusters")["configs"]
    served_v1 = next(entry["cluster"] for entry in clusters if "|v1|" in entry["cluster"]["name"])
    proxy.stop()
    # The stale bootstrap: the v1 cluster held statically, pointing at the v2 upstream.
    stale = copy.deepcopy(_bootstrap(daemon, admin_port))
    stale["static_resources"]["clusters"].append(
        {
            "name": served_v1["name"],
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": served_v1["name"],
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                                     "port_value": mesh.v2.port}}}}]}
                ],
            },
        }
    )  # fmt: skip
    restarted = envoy(stale)

    # Envoy ACKs the served clusters and keeps its own: traffic meant for v1 reaches v2.
    wait_for(
        "v1 traffic to reach the stale cluster's upstream",
        lambda: send_requests(port=mesh.gateway_port, count=5, authority=HOST).by_version.get("v2"),
    )
    status = daemon.wait_status(
        "the drift check to report the stale cluster",
        lambda status: any(
            e["state"] == "Drifted" and "persists after a re-push" in e["message"] for e in status["drift"]
        ),
    )
    drifted = status["drift"][0]
    # The static cluster and its endpoints (Envoy dumps those as static endpoints and never asks for ours).
    assert [(item["type"], item["name"], item["kind"]) for item in drifted["items"]] == [
        ("CDS", served_v1["name"], "static"),
        ("EDS", served_v1["name"], "static"),
    ]
    assert "restart the proxy with a bootstrap from `reconciler bootstrap`" in drifted["message"]
    assert drifted["repushedAt"] is not None
    assert _drift_metric(daemon) == 'reconciler_drift_detected{node_id="ingress-1"} 1.0'
    assert {"drift.detected", "drift.repushed"} <= set(_events(daemon))
    shown_status = run_command([*CLI, "status", "--server", daemon.url], timeout=30)
    assert shown_status.returncode == 1
    assert f"CDS {served_v1['name']} static" in shown_status.stdout
    shown = run_command([*CLI, "diff", "--server", daemon.url, "--proxy", "ingress-1"], timeout=30)
    assert shown.returncode == 1
    assert f"static   CDS {served_v1['name']}" in shown.stdout

    # The operator's fix, as the message says: a bootstrap from `reconciler bootstrap`.
    restarted.stop()
    envoy(_bootstrap(daemon, admin_port))
    daemon.wait_status(
        "the drift check to find the gateway in sync again",
        lambda status: any(e["state"] in ("Healed", "InSync") and e["live"] == "checked" for e in status["drift"]),
    )
    assert _drift_metric(daemon) == 'reconciler_drift_detected{node_id="ingress-1"} 0.0'
