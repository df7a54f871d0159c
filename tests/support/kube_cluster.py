"""A real Kubernetes API server for tests: Debian's etcd and a kube-apiserver built from Debian's source.

:func:`apiserver_binary` builds kube-apiserver once (``build_kube_apiserver.sh`` beside this file,
into a cache outside the repo) and returns its path; where the build is impossible here (no apt,
no root, no network) it says why, and :class:`KubeCluster` users skip with that reason. Under CI
(``CI`` set) an impossible build is a failure instead: CI must run these tests.

:class:`KubeCluster` starts etcd (temporary data dir, free ports, 127.0.0.1) and kube-apiserver
(token auth, a fresh service-account key pair, its own serving certificate in a temporary
``--cert-dir``, no endpoint reconciler, AlwaysAllow authorization, no ServiceAccount admission:
there is no controller-manager to create the ``default`` service accounts pods would need), waits
for ``/readyz``, and writes a kubeconfig for the daemon. There is no kubelet or controller-manager:
tests create Services, Pods and EndpointSlices as plain objects. On stop the API server goes
first: without etcd it ignores SIGTERM for a long time. :meth:`KubeCluster.stop_apiserver` and
:meth:`KubeCluster.restart_apiserver` make an outage of the API server alone (use a private cluster
for that, not the session's).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler.harness.envoy import free_port
from reconciler.harness.lifecycle import stop_process

__all__ = [
    "BUILD_SCRIPT",
    "BuildUnavailable",
    "KubeCluster",
    "apiserver_binary",
    "endpoint_slice",
    "pod",
    "service",
    "slices_path",
    "started_cluster",
]

BUILD_SCRIPT = Path(__file__).resolve().parent / "build_kube_apiserver.sh"
#: The script's exit status for "impossible on this machine" (as opposed to a failed build).
_IMPOSSIBLE = 3
#: The build takes 3.5-6 minutes on 2 cores; a loaded machine gets headroom.
_BUILD_TIMEOUT = 1800.0
#: etcd is up in well under a second and the API server in a few; headroom for a loaded CI machine.
_START_TIMEOUT = 120.0
#: A throwaway token for a server on 127.0.0.1 only.
_TOKEN = "reconciler-test-token"


class BuildUnavailable(Exception):
    """kube-apiserver cannot be built on this machine (the reason is the message)."""


def apiserver_binary() -> Path:
    """The cached kube-apiserver, built first when missing; raises BuildUnavailable where that is impossible."""
    if shutil.which("bash") is None or shutil.which("flock") is None:
        raise BuildUnavailable("bash and flock are needed to build kube-apiserver")
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=_BUILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"building kube-apiserver took over {_BUILD_TIMEOUT:.0f} s") from error
    if done.returncode == _IMPOSSIBLE:
        raise BuildUnavailable(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "build impossible")
    if done.returncode != 0:
        raise RuntimeError(f"building kube-apiserver failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def started_cluster() -> KubeCluster:
    """A started :class:`KubeCluster`; skips the test where none can be built here, fails instead under CI."""
    try:
        return KubeCluster(apiserver_binary()).start()
    except BuildUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Kubernetes tests, but: {reason}")
        pytest.skip(f"no kube-apiserver on this machine: {reason}")


@dataclass(frozen=True, slots=True)
class _Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int


class KubeCluster:
    """etcd and kube-apiserver on 127.0.0.1; ``with KubeCluster(binary) as cluster:`` or start()/stop()."""

    def __init__(self, binary: Path, *, workdir: Path | None = None) -> None:
        self.binary = binary
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kube-"))
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._ports = _Ports(etcd_client=free_port(), etcd_peer=free_port(), apiserver=free_port())
        self.token = _TOKEN

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig for this cluster: the token, and the API server's own self-signed CA."""
        return self.workdir / "kubeconfig"

    def start(self) -> KubeCluster:
        etcd = shutil.which("etcd")
        if etcd is None:
            raise BuildUnavailable("etcd (Debian's etcd-server) is not installed")
        try:
            self._start_etcd(etcd)
            self._start_apiserver()
            self._wait_ready()
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # The API server first: with etcd gone it keeps retrying and ignores SIGTERM for a long time.
        for process in (self._apiserver, self._etcd):
            if process is not None:
                stop_process(process, timeout=15.0)
        self._apiserver = self._etcd = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop the API server alone (an outage: etcd and the cluster's objects stay); :meth:`restart_apiserver`."""
        if self._apiserver is not None:
            stop_process(self._apiserver, timeout=15.0)
        self._apiserver = None

    def restart_apiserver(self) -> None:
        """Start the API server again on the same port, with the same serving certificate (the kubeconfig holds)."""
        assert self._apiserver is None, "the API server is running"
        self._start_apiserver()
        self._wait_ready()

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "apiserver.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- requests (the tests' kubectl) --------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method path`` with the token; the decoded JSON answer. Raises urllib's HTTPError on >= 400."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            content = "application/merge-patch+json" if method == "PATCH" else "application/json"
            request.add_header("Content-Type", content)
        with urllib.request.urlopen(request, context=self._tls(), timeout=30) as response:
            return json.loads(response.read() or b"null")

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path)
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise

    def compact(self) -> int:
        """Compact etcd at its current revision (the API server does so every 5 minutes); the revision."""
        url = f"http://127.0.0.1:{self._ports.etcd_client}/v3/kv/range"
        with urllib.request.urlopen(url, data=json.dumps({"key": "AA=="}).encode(), timeout=10) as response:
            revision = int(json.loads(response.read())["header"]["revision"])
        url = f"http://127.0.0.1:{self._ports.etcd_client}/v3/kv/compaction"
        body = json.dumps({"revision": revision, "physical": True}).encode()
        with urllib.request.urlopen(url, data=body, timeout=10):
            return revision

    def _tls(self) -> ssl.SSLContext:
        # The API server's self-signed serving certificate names 127.0.0.1 (its advertise address).
        return ssl.create_default_context(cafile=str(self.workdir / "certs" / "apiserver.crt"))

    # -- starting -----------------------------------------------------------------------------

    def _start_etcd(self, etcd: str) -> None:
        client = f"http://127.0.0.1:{self._ports.etcd_client}"
        peer = f"http://127.0.0.1:{self._ports.etcd_peer}"
        log = (self.workdir / "etcd.log").open("wb")
        self._etcd = subprocess.Popen(
            [
                etcd,
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=test={peer}",
                "--logger=zap",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", "")},
        )
        log.close()

    def _start_apiserver(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.workdir / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        (self.workdir / "sa.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        (self.workdir / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        log = (self.workdir / "apiserver.log").open("wb")
        self._apiserver = subprocess.Popen(
            [
                str(self.binary),
                f"--etcd-servers=http://127.0.0.1:{self._ports.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self._ports.apiserver}",
                "--insecure-port=0",  # 1.20 still opens :8080 without auth otherwise
                f"--cert-dir={self.workdir / 'certs'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                f"--service-account-key-file={self.workdir / 'sa.pub'}",
                f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--endpoint-reconciler-type=none",
                "--authorization-mode=AlwaysAllow",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                # Watches read etcd itself, as without a watch cache: a compacted version answers 410 Gone
                # at once (the cache would replay from memory), so tests can provoke a re-list.
                "--watch-cache=false",
                "--profiling=false",
                "--logtostderr=true",
                "--v=1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        last = "not started"
        while time.monotonic() < deadline:
            for name, process in (("etcd", self._etcd), ("kube-apiserver", self._apiserver)):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail()}")
            if (self.workdir / "certs" / "apiserver.crt").exists():
                try:
                    request = urllib.request.Request(self.url + "/readyz")
                    request.add_header("Authorization", f"Bearer {self.token}")
                    with urllib.request.urlopen(request, context=self._tls(), timeout=5) as response:
                        if response.status == 200:
                            return
                except (OSError, urllib.error.URLError) as error:
                    last = str(error)
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready within {_START_TIMEOUT:.0f} s ({last}):\n{self.log_tail()}")

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.workdir / "certs" / "apiserver.crt"),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))


# -- objects as tests create them (no controller makes them here) ---------------------------------


def service(name: str, *, port: int, target_port: int | None = None, port_name: str = "http") -> dict[str, Any]:
    spec_port: dict[str, Any] = {"name": port_name, "port": port, "protocol": "TCP"}
    if target_port is not None:
        spec_port["targetPort"] = target_port
    return {"metadata": {"name": name}, "spec": {"ports": [spec_port], "selector": {"app": name}}}


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "app", "image": "app"}]}}


def endpoint_slice(
    name: str, *, service: str, port: int, endpoints: list[tuple[str, str | None]], port_name: str = "http"
) -> dict[str, Any]:
    """A ``discovery.k8s.io/v1beta1`` EndpointSlice (what 1.20 serves) of ready ``(address, pod)`` endpoints."""
    return {
        "apiVersion": "discovery.k8s.io/v1beta1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {"ready": True},
                **({"targetRef": {"kind": "Pod", "name": pod_name}} if pod_name else {}),
            }
            for address, pod_name in endpoints
        ],
    }


def slices_path(namespace: str, name: str = "") -> str:
    return f"/apis/discovery.k8s.io/v1beta1/namespaces/{namespace}/endpointslices" + (f"/{name}" if name else "")
