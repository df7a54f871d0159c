"""End-to-end harness: a real git remote of mesh YAML, the real daemon process, its HTTP API.

* :class:`~gitrepo.GitRemote` (``tests/support/gitrepo.py``) — a bare remote plus a working
  clone, driven with the git CLI under a fixed identity and no user/system config; files
  come from ``repo-template/mesh`` with the upstream and gateway ports filled in.
* :class:`Daemon` — ``python -m reconciler.cli.main run ...`` as a child process (so it can
  be ``kill -9``-ed), its ports read back from its ``daemon.started`` log line, its status
  API and webhook called over HTTP.

Everything listens on 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitrepo import GitRemote, git_env
from waiting import wait_for

from reconciler.harness.lifecycle import stop_process
from reconciler.harness.traffic import TrafficResult, send_requests
from reconciler.harness.upstream import UpstreamServer

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "repo-template" / "mesh"
HOST = "reviews.example.com"
CLI = (sys.executable, "-m", "reconciler.cli.main")
#: Daemon start (imports grpc, aiohttp, protobufs) takes ~2 s; the rest is slack for a loaded CI machine.
START_TIMEOUT = 30.0


def mesh_files(*, v1_port: int, v2_port: int, gateway_port: int, v1: int = 100, v2: int = 0) -> dict[str, str]:
    """``mesh/*.yaml`` from the repo template: endpoints on the given upstream ports, weights v1/v2.

    Without the template's RolloutPolicy: these weights are served at once, rollout tests add their own policy.
    """
    files = {
        f"mesh/{path.name}": path.read_text()
        for path in sorted(TEMPLATE.glob("*.yaml"))
        if path.name != "rolloutpolicy.yaml"
    }
    files["mesh/serviceentry.yaml"] = (
        files["mesh/serviceentry.yaml"]
        .replace("http: 9081", f"http: {v1_port}")
        .replace("http: 9082", f"http: {v2_port}")
    )
    files["mesh/gateway.yaml"] = files["mesh/gateway.yaml"].replace("number: 8080", f"number: {gateway_port}")
    return {**files, "mesh/virtualservice.yaml": with_weights(files["mesh/virtualservice.yaml"], v1=v1, v2=v2)}


def with_weights(virtualservice: str, *, v1: int, v2: int) -> str:
    """The template VirtualService with the default route's weights set (the template has 100/0)."""
    head, sep, tail = virtualservice.partition("  - name: default")
    assert sep, "the template's default route moved"
    lines = tail.splitlines(keepends=True)
    weights = iter((v1, v2))
    rewritten = [
        f"{line[: line.index('weight:')]}weight: {next(weights)}\n" if "weight:" in line else line for line in lines
    ]
    return head + sep + "".join(rewritten)


def run_command(command: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` from the repo root with the test git environment and no stdin; capture its output as text.

    Past ``timeout`` the command gets Ctrl-C first (the demo and the CLI stop what they started
    on it: a plain kill would leave their daemon and Envoy running), then SIGKILL; the test fails.
    """
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=git_env(),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                stdout, stderr = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            raise AssertionError(f"{command} did not finish within {timeout} s:\n{stdout}{stderr}") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), start=1) if needle in line)


def github_signature(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Daemon:
    """``reconciler run`` as a child process; start with :meth:`start`, always :meth:`stop`."""

    def __init__(
        self,
        *,
        repo: str,
        state_dir: Path,
        log_path: Path,
        poll_interval: str = "60s",
        xds_port: int = 0,
        webhook_secret_file: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.repo = repo
        self.state_dir = state_dir
        self.log_path = log_path
        self.poll_interval = poll_interval
        self.xds_port = xds_port
        self.http_port = 0
        self.webhook_secret_file = webhook_secret_file
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Daemon:
        """Start (or restart, on the same xDS port) and wait until the HTTP API answers."""
        self.launch()
        started = wait_for("the daemon's daemon.started log line", self._started_line, timeout=START_TIMEOUT)
        self.xds_port = int(started["xds"].rpartition(":")[2])
        self.http_port = int(started["http"].rpartition(":")[2])
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to come up (for daemons expected to refuse to start)."""
        assert self._process is None or self._process.poll() is not None, "already running"
        command = [
            *CLI,
            "run",
            "--repo",
            self.repo,
            "--path",
            "mesh",
            "--poll-interval",
            self.poll_interval,
            "--state-dir",
            str(self.state_dir),
            "--xds-address",
            f"127.0.0.1:{self.xds_port}",
            "--http-address",
            "127.0.0.1:0",
            *(["--webhook-secret-file", str(self.webhook_secret_file)] if self.webhook_secret_file else []),
            *self.extra_args,
        ]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=git_env(), cwd=REPO_ROOT
            )

    def _started_line(self) -> dict[str, Any] | None:
        process = self._process
        assert process is not None
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited with {process.returncode}:\n{self.log_tail()}")
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            for raw in log:
                with contextlib.suppress(ValueError):
                    entry = json.loads(raw)
                    if isinstance(entry, dict) and entry.get("event") == "daemon.started":
                        return entry
        return None

    def kill9(self) -> None:
        process = self._process
        assert process is not None, "never started"
        assert process.poll() is None, "not running"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def signal_and_wait(self, signum: int, *, timeout: float) -> int:
        """Send ``signum``; the exit status once the process ended. Fails (after a SIGKILL) past ``timeout``."""
        process = self._process
        assert process is not None, "never started"
        process.send_signal(signum)
        return self.wait_exit(timeout=timeout)

    def wait_exit(self, *, timeout: float) -> int:
        """The exit status once the process ended by itself; SIGKILL and fail past ``timeout``."""
        process = self._process
        assert process is not None, "never started"
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise AssertionError(f"the daemon did not exit within {timeout:g} s:\n{self.log_tail()}") from None

    @property
    def pid(self) -> int:
        assert self._process is not None, "never started"
        return self._process.pid

    def log_since_start(self) -> str:
        """What this run (since the last launch) wrote to the log, stderr included."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM (graceful), SIGKILL after 10 s; the exit status, None if never started."""
        if self._process is None:
            return None
        return stop_process(self._process, timeout=10)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- HTTP API -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path, method=method, data=body if body is not None else (b"" if method == "POST" else None)
        )
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    def status(self) -> dict[str, Any]:
        code, body = self.request("GET", "/api/v1/status")
        assert code == 200, body
        assert isinstance(body, dict)
        return body

    def sync(self) -> None:
        code, body = self.request("POST", "/api/v1/sync")
        assert code == 202, body

    def push_webhook(self, *, after: str, secret: bytes, ref: str = "refs/heads/main") -> tuple[int, Any]:
        """POST a GitHub push event signed with ``secret``."""
        body = json.dumps({"ref": ref, "after": after, "repository": {"full_name": "platform/mesh"}}).encode()
        return self.request(
            "POST",
            "/hooks/git",
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": "e2e-delivery",
                "X-Hub-Signature-256": github_signature(body, secret),
            },
        )

    def wait_status(self, what: str, predicate: Callable[[dict[str, Any]], Any], *, timeout: float = 20.0) -> Any:
        """Poll the status API until ``predicate(status)`` is truthy; return the status."""
        found: dict[str, Any] = {}

        def check() -> bool:
            found.clear()
            found.update(self.status())
            return bool(predicate(found))

        try:
            wait_for(what, check, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\nlast status: {json.dumps(found, indent=1)}\n{self.log_tail()}") from None
        return found

    def wait_synced(self, sha: str, *, proxies: int = 0, timeout: float = 20.0) -> dict[str, Any]:
        """Until ``sha`` is the head, served, and ACKed by every connected proxy (at least ``proxies``).

        With no proxy connected nothing can be synced: ``proxies=0`` waits for "served" only.
        """

        def synced(status: dict[str, Any]) -> bool:
            return (
                status["headSha"] == sha
                and (status["served"] or {}).get("sha") == sha
                and status["lastError"] is None
                and len(status["proxies"]) >= proxies
                and (status["synced"] or not status["proxies"])
                and all(p["ackedGeneration"] >= status["generation"] for p in status["proxies"])
            )

        status: dict[str, Any] = self.wait_status(f"{sha[:12]} synced to {proxies} proxies", synced, timeout=timeout)
        return status


@dataclass
class Mesh:
    """The config repo and what it points at: two upstream versions and the gateway's port."""

    repo: GitRemote
    v1: UpstreamServer
    v2: UpstreamServer
    gateway_port: int
    initial_sha: str

    def files(self, *, v1: int, v2: int) -> dict[str, str]:
        return mesh_files(v1_port=self.v1.port, v2_port=self.v2.port, gateway_port=self.gateway_port, v1=v1, v2=v2)

    def push_weights(self, v1: int, v2: int) -> str:
        return self.repo.commit(self.files(v1=v1, v2=v2), f"reviews: {v1}/{v2}")


def measure(mesh: Mesh, count: int = 1000) -> TrafficResult:
    """``count`` requests through the gateway, as fast as a few keep-alive connections go."""
    return send_requests(port=mesh.gateway_port, count=count, authority=HOST, workers=8, deadline=60)
