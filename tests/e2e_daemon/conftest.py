"""Fixtures for the daemon end to end: upstreams v1/v2, a mesh repo pointing at them, daemons, a gateway."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import HOST, Daemon, Mesh, mesh_files
from gitrepo import GitRemote
from waiting import wait_for

from reconciler.harness.envoy import EnvoyProcess
from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

if shutil.which("git") is None:  # pragma: no cover - git is a hard requirement of the daemon
    pytest.skip("the git CLI is not installed", allow_module_level=True)

pytestmark = [pytest.mark.git, pytest.mark.slow]


@pytest.fixture
def mesh(tmp_path: Path, upstreams: Callable[..., UpstreamServer], free_port: Callable[[], int]) -> Mesh:
    """A remote whose ``main`` has the repo template: reviews 100/0 over the two upstreams."""
    v1, v2 = upstreams("v1"), upstreams("v2")
    repo = GitRemote.create(tmp_path / "git")
    port = free_port()
    files = mesh_files(v1_port=v1.port, v2_port=v2.port, gateway_port=port, v1=100, v2=0)
    sha = repo.commit({**files, "README.md": "# mesh config\n"}, "mesh: reviews on v1")
    return Mesh(repo=repo, v1=v1, v2=v2, gateway_port=port, initial_sha=sha)


@pytest.fixture
def webhook_secret(tmp_path: Path) -> tuple[Path, bytes]:
    """A secret file as an operator writes it (with a trailing newline) and the secret it holds."""
    secret = secrets.token_hex(16).encode()
    path = tmp_path / "webhook-secret"
    path.write_bytes(secret + b"\n")
    return path, secret


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory ``daemons(repo=..., **Daemon kwargs) -> Daemon`` (not started); all stopped after the test."""
    made: list[Daemon] = []

    def make(*, repo: str, **kwargs: Any) -> Daemon:
        kwargs.setdefault("state_dir", tmp_path / f"state-{len(made)}")
        kwargs.setdefault("log_path", tmp_path / f"daemon-{len(made)}.log")
        daemon = Daemon(repo=repo, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()
        # Shown under "Captured stdout teardown" when the test failed; pytest drops it otherwise.
        print(f"--- {daemon.log_path} (tail) ---\n{daemon.log_tail()}")


@pytest.fixture
def gateway(envoy: Callable[..., EnvoyProcess]) -> Callable[[Daemon, Mesh], EnvoyProcess]:
    """``gateway(daemon, mesh)``: a real Envoy ingress gateway fed by the daemon, once it routes to v1."""

    def start(daemon: Daemon, mesh: Mesh, *, node_id: str = "ingress-1") -> EnvoyProcess:
        identity = ProxyIdentity(node_id=node_id, labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)
        bootstrap = build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=daemon.xds_port, admin_port=0)
        proxy = envoy(bootstrap)
        wait_for(
            "the gateway to route to an upstream",
            lambda: send_requests(port=mesh.gateway_port, count=5, authority=HOST, workers=1).by_version,
        )
        return proxy

    return start


@pytest.fixture
def served(
    mesh: Mesh, daemons: Callable[..., Daemon], gateway: Callable[[Daemon, Mesh], EnvoyProcess]
) -> tuple[Daemon, EnvoyProcess]:
    """A daemon serving the mesh's first commit to one gateway (``ingress-1``) that ACKed it."""
    daemon = daemons(repo=mesh.repo.url).start()
    proxy = gateway(daemon, mesh)
    daemon.wait_synced(mesh.initial_sha, proxies=1)
    return daemon, proxy
