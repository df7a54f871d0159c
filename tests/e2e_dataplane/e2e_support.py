"""What the end-to-end data-plane tests share: the ADS server in a thread, configs, proxies.

The real pieces, wired as in production: YAML from ``tests/fixtures/e2e`` is loaded and
validated by :func:`reconciler.loader.load_files`, published as
:class:`~reconciler.engine.snapshots.ConfigSnapshots` to a :class:`~reconciler.xds.SnapshotCache`
served by the real gRPC ADS server, and real Envoy processes (bootstrapped by
:func:`~reconciler.translate.bootstrap.build_bootstrap`) route real HTTP requests to
real :class:`~reconciler.harness.upstream.UpstreamServer` processes. Everything listens
on 127.0.0.1 (Envoy listeners bind 0.0.0.0 as Istio's do; clients only use loopback).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, TypeVar

from waiting import wait_for
from xds_thread import XdsThread

from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.harness.traffic import TrafficResult, send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole
from reconciler.xds import ProxyStatus, XdsEvent

__all__ = [
    "FIXTURES",
    "GATEWAY_LABELS",
    "SIDECAR_LABELS",
    "SYNC_TIMEOUT",
    "Proxy",
    "Upstreams",
    "XdsHarness",
    "mesh_config",
    "proxy_identity",
    "running_proxy",
    "running_upstreams",
    "running_xds",
]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "e2e"
#: An Envoy on loopback ACKs in milliseconds; this is headroom for a loaded CI machine.
SYNC_TIMEOUT = 15.0
GATEWAY_LABELS: Mapping[str, str] = {"istio": "ingressgateway"}
SIDECAR_LABELS: Mapping[str, str] = {"app": "e2e-client"}

T = TypeVar("T")


class XdsHarness(XdsThread):
    """The daemon's ADS server and its cache (see :class:`XdsThread`), with the xDS events it saw."""

    def __init__(self) -> None:
        super().__init__(name="e2e-xds-loop")
        self.events: list[XdsEvent] = []
        self.call(self.cache.add_listener, self.events.append)

    def publish_config(self, config: MeshConfig) -> int:
        return self.publish(ConfigSnapshots(config=config))

    def status(self, node_id: str) -> ProxyStatus | None:
        return self.call(self.cache.status, node_id)

    def wait_until(self, predicate: Callable[[Sequence[ProxyStatus]], bool], *, timeout: float = SYNC_TIMEOUT) -> bool:
        return self.run(self.cache.wait_until(predicate, timeout=timeout), timeout=timeout + 5.0)

    def wait_for_node(
        self, node_id: str, predicate: Callable[[ProxyStatus], bool], *, timeout: float = SYNC_TIMEOUT
    ) -> ProxyStatus:
        """``node_id``'s status once ``predicate`` holds for it; AssertionError with the status on timeout."""

        def holds(statuses: Sequence[ProxyStatus]) -> bool:
            return any(status.node_id == node_id and predicate(status) for status in statuses)

        settled = self.wait_until(holds, timeout=timeout)
        status = self.status(node_id)
        assert settled, f"{node_id} did not reach the expected state within {timeout:g}s: {status}"
        assert status is not None
        return status

    def wait_acked(
        self, node_id: str, generation: int, *, timeout: float = SYNC_TIMEOUT, stop_on_nack: bool = True
    ) -> ProxyStatus:
        """Wait until ``node_id`` ACKed ``generation`` in full.

        With ``stop_on_nack`` a rejection fails the test at once, with Envoy's message; pass
        False when the proxy is still marked NACKED from an earlier generation.
        """
        status = self.wait_for_node(
            node_id,
            lambda s: s.acked_generation >= generation or (stop_on_nack and s.nacked),
            timeout=timeout,
        )
        assert status.acked_generation >= generation, f"{node_id} rejected generation {generation}: {status.types}"
        return status


@contextlib.contextmanager
def running_xds() -> Iterator[XdsHarness]:
    harness = XdsHarness()
    try:
        yield harness
    finally:
        harness.close()


@dataclass(frozen=True, slots=True)
class Upstreams:
    """The upstream servers behind ``services.yaml``: three app versions, a slow, a flaky and a shadow one."""

    v1: UpstreamServer
    v2: UpstreamServer
    v3: UpstreamServer
    slow: UpstreamServer
    flaky: UpstreamServer
    shadow: UpstreamServer

    @property
    def ports(self) -> dict[str, int]:
        """Template values for ``services.yaml``."""
        return {
            "V1_PORT": self.v1.port,
            "V2_PORT": self.v2.port,
            "V3_PORT": self.v3.port,
            "SLOW_PORT": self.slow.port,
            "FLAKY_PORT": self.flaky.port,
            "SHADOW_PORT": self.shadow.port,
        }


@contextlib.contextmanager
def running_upstreams() -> Iterator[Upstreams]:
    started: list[UpstreamServer] = []
    try:
        for version in ("v1", "v2", "v3", "slow", "flaky", "shadow"):
            started.append(UpstreamServer(version).start())
        yield Upstreams(*started)
    finally:
        for server in started:
            server.stop()


def mesh_config(
    files: Sequence[str],
    *,
    role: ProxyRole,
    upstreams: Upstreams,
    gateway_port: int,
    app_port: int = 80,
) -> MeshConfig:
    """Render fixture files (paths relative to ``tests/fixtures/e2e``) and load them like a git revision.

    VirtualServices are bound to the ``ingress`` Gateway for the gateway role and are
    mesh rules (no ``gateways``) for the sidecar role. Fails the test on any error finding.
    """
    values = {
        **upstreams.ports,
        "APP_PORT": app_port,
        "GATEWAY_PORT": gateway_port,
        "GATEWAYS": "gateways: [ingress]" if role is ProxyRole.GATEWAY else "# no gateways: a mesh (sidecar) rule",
    }
    names = [*files, "services.yaml"]
    if role is ProxyRole.GATEWAY:
        names.append("gateway.yaml")
    rendered = {name: Template((FIXTURES / name).read_text(encoding="utf-8")).substitute(values) for name in names}
    result = load_files(rendered)
    assert result.ok, [str(finding) for finding in result.findings]
    return result.config


@dataclass(frozen=True, slots=True)
class Proxy:
    """A running Envoy: its role, node id, the port clients send to, and the process."""

    role: ProxyRole
    identity: ProxyIdentity
    port: int
    envoy: EnvoyProcess

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def send(self, *, authority: str, count: int, **options: Any) -> TrafficResult:
        return send_requests(port=self.port, count=count, authority=authority, deadline=30.0, **options)


def proxy_identity(role: ProxyRole, *, node_id: str, outbound_port: int) -> ProxyIdentity:
    """A gateway is recognised by its labels alone (as in Istio); a sidecar says its role and port."""
    if role is ProxyRole.GATEWAY:
        return ProxyIdentity(node_id=node_id, labels=GATEWAY_LABELS)
    return ProxyIdentity(node_id=node_id, labels=SIDECAR_LABELS, role=ProxyRole.SIDECAR, outbound_port=outbound_port)


@contextlib.contextmanager
def running_proxy(
    xds: XdsHarness,
    role: ProxyRole,
    *,
    generation: int,
    workdir: Path,
    gateway_port: int,
    node_id: str | None = None,
    serving_authority: str | None = None,
    delta: bool = False,
) -> Iterator[Proxy]:
    """Start an Envoy of ``role`` against ``xds``, which has published ``generation`` already.

    ``delta``: the Envoy uses incremental xDS (``reconciler bootstrap --delta``).

    Returns once Envoy is LIVE, has ACKed ``generation`` in full and, when
    ``serving_authority`` is given, answers a request for it with 200.
    """
    node_id = node_id or f"{role.value}-e2e"
    port = gateway_port if role is ProxyRole.GATEWAY else free_port()
    identity = proxy_identity(role, node_id=node_id, outbound_port=port)
    bootstrap = build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=xds.port, admin_port=0, delta=delta)
    envoy = EnvoyProcess(bootstrap, workdir=workdir, log_level="warn")
    with envoy:
        try:
            xds.wait_acked(node_id, generation)
            proxy = Proxy(role=role, identity=identity, port=port, envoy=envoy)
            if serving_authority is not None:
                wait_for(
                    f"{node_id} to answer {serving_authority}",
                    lambda: proxy.send(authority=serving_authority, count=1, workers=1).by_status[200] == 1,
                )
            yield proxy
        except BaseException:
            print(f"--- {envoy.log_path} (tail) ---\n{envoy.log_tail()}")
            raise
