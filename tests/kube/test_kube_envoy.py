"""EndpointSlices → EDS → a real Envoy: scaling a Kubernetes Service up and down under traffic, nothing failing.

The daemon (``reconciler serve`` in a thread, ``--kubeconfig``) serves a directory of Istio YAML
whose VirtualService routes to a Kubernetes Service's subset; the cluster is a real
kube-apiserver. There is no kubelet: the test plays the endpoint controller, writing the
Service's EndpointSlice as Pods come and go, with upstream servers on 127.0.0.11-14 standing in
for the Pods. Removing a Pod goes as in Kubernetes: out of the slice first, the process stopped
once the proxy no longer sends it traffic.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_thread import daemon_thread
from kube_cluster import KubeCluster, endpoint_slice, pod, service, slices_path
from waiting import wait_for

from reconciler.engine.settings import ApiSettings, KubeSettings, Settings, SourceSettings, StateSettings, XdsSettings
from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

pytestmark = [pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(180)]

AUTHORITY = "web.example.com"
#: Envoy takes an EDS update in milliseconds; headroom for a loaded CI machine.
DEADLINE = 30.0


def mesh(namespace: str, *, gateway_port: int) -> dict[str, str]:
    host = f"web.{namespace}.svc.cluster.local"
    return {
        "gateway.yaml": f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gateway_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
""",
        "virtualservice.yaml": f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [{AUTHORITY}]
  gateways: [ingress]
  http:
  - route:
    - destination: {{host: {host}, subset: stable, port: {{number: 80}}}}
    retries: {{attempts: 2, perTryTimeout: 2s, retryOn: "connect-failure,refused-stream"}}
""",
        "destinationrule.yaml": f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: {host}
  subsets:
  - name: stable
    labels: {{track: stable}}
  - name: canary
    labels: {{track: canary}}
""",
    }


class Traffic:
    """Requests through the gateway in a background thread until stopped; every outcome counted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.by_version: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            result = send_requests(port=self.port, count=20, authority=AUTHORITY, workers=2, deadline=30)
            self.by_version.update(result.by_version)
            self.by_status.update(result.by_status)
            self.errors.update(result.errors)


def wait_until(what: str, predicate: Callable[[], Any]) -> None:
    wait_for(what, predicate, timeout=DEADLINE)


def envoy_hosts(proxy: EnvoyProcess) -> set[str]:
    """Every upstream address Envoy has in any cluster."""
    return {
        host["address"]["socket_address"]["address"]
        for cluster in proxy.clusters().get("cluster_statuses", [])
        for host in cluster.get("host_statuses", [])
    }


def test_endpoint_slices_scale_a_service_up_and_down_under_traffic_with_no_failed_request(
    kube: KubeCluster, namespace: str, tmp_path: Path, envoy: Callable[..., EnvoyProcess]
) -> None:
    port = free_port()
    addresses = {name: f"127.0.0.{11 + i}" for i, name in enumerate(("web-1", "web-2", "web-3", "web-4"))}
    servers = {name: UpstreamServer(name, host=address, port=port).start() for name, address in addresses.items()}
    try:
        run(kube, namespace, tmp_path, envoy, servers=servers, addresses=addresses, port=port)
    finally:
        for server in servers.values():
            server.stop()


def run(
    kube: KubeCluster,
    namespace: str,
    tmp_path: Path,
    envoy: Callable[..., EnvoyProcess],
    *,
    servers: dict[str, UpstreamServer],
    addresses: dict[str, str],
    port: int,
) -> None:
    api = f"/api/v1/namespaces/{namespace}"
    kube.create(f"{api}/services", service("web", port=80, target_port=port))
    for name in addresses:
        kube.create(f"{api}/pods", pod(name, {"app": "web", "track": "canary" if name == "web-4" else "stable"}))

    def scale(*names: str) -> None:
        """The endpoint controller's part: the slice lists exactly these Pods."""
        body = endpoint_slice("web-x", service="web", port=port, endpoints=[(addresses[n], n) for n in names])
        kube.request("PUT", slices_path(namespace, "web-x"), body | {"metadata": {**body["metadata"], "name": "web-x"}})

    kube.create(slices_path(namespace), endpoint_slice("web-x", service="web", port=port, endpoints=[]))
    scale("web-1", "web-4")

    gateway_port = free_port()
    config = tmp_path / "mesh"
    config.mkdir()
    for name, text in mesh(namespace, gateway_port=gateway_port).items():
        (config / name).write_text(text)
    settings = Settings(
        state=StateSettings(dir=tmp_path / "state"),
        source=SourceSettings(repo_dir=config, poll_interval=60.0),
        xds=XdsSettings(address="127.0.0.1:0"),
        api=ApiSettings(address="127.0.0.1:0"),
        kube=KubeSettings(enabled=True, kubeconfig=kube.kubeconfig, debounce=0.05),
    )
    with daemon_thread(settings) as (xds_port, _):
        identity = ProxyIdentity(node_id="ingress-1", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)
        proxy = envoy(build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=xds_port, admin_port=0))
        wait_until(
            "the gateway to route to web-1",
            lambda: send_requests(port=gateway_port, count=3, authority=AUTHORITY, workers=1).by_version["web-1"] == 3,
        )
        wire = ("cluster_manager.cds.update_success", "listener_manager.lds.update_success")
        before_scaling = {name: proxy.stat(name) for name in wire}
        assert all(before_scaling.values()), before_scaling  # the stats exist: the first push counted
        with Traffic(gateway_port) as traffic:
            # Up: two more Pods join the slice; each starts taking traffic.
            scale("web-1", "web-2", "web-3", "web-4")
            wait_until(
                "web-2 and web-3 to take traffic", lambda: min(traffic.by_version[n] for n in ("web-2", "web-3")) > 20
            )
            # Down: web-1 and web-2 leave the slice; once Envoy dropped them, their processes stop.
            scale("web-3", "web-4")
            wait_until(
                "Envoy to drop web-1 and web-2",
                lambda: not {addresses["web-1"], addresses["web-2"]} & envoy_hosts(proxy),
            )
            servers["web-1"].stop()
            servers["web-2"].stop()
            before = traffic.by_version["web-3"]
            wait_until("more traffic to web-3 alone", lambda: traffic.by_version["web-3"] > before + 100)
        # Endpoint changes reached Envoy as EDS alone: clusters and listeners were not pushed again.
        assert {name: proxy.stat(name) for name in wire} == before_scaling
        assert traffic.errors == Counter()
        assert set(traffic.by_status) == {200}
        # The canary Pod's endpoint is in the slice the whole time; the stable subset never selects it.
        assert traffic.by_version["web-4"] == 0
        assert servers["web-4"].request_count == 0
        assert set(traffic.by_version) == {"web-1", "web-2", "web-3"}
