"""Run the real Envoy binary locally: serve a config and read its admin API.

Used by tests, the demo and benchmarks; never by the daemon itself. Every Envoy started
here listens on loopback, runs without hot restart (so parallel test workers never fight
over shared memory), and writes its log to a file whose tail ends up in every
:class:`~reconciler.errors.EnvoyError`.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

from reconciler.envoy import config_json, find_envoy
from reconciler.errors import EnvoyError, UsageError
from reconciler.harness.lifecycle import Lifecycle, stop_process

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "EnvoyProcess",
    "free_port",
]

#: Envoy itself starts in well under a second; the rest is slack for loaded CI machines.
DEFAULT_STARTUP_TIMEOUT = 20.0
_ADMIN_TIMEOUT = 5.0
_POLL_INTERVAL = 0.02
_LOG_TAIL_LINES = 30
_LOG_TAIL_BYTES = 64 * 1024
_SERVER_STATE_LIVE = "LIVE"

# Envoys still running when the interpreter exits (a crashed demo, an interrupted test run)
# would otherwise outlive us and keep their ports; atexit stops them.
_RUNNING: set[EnvoyProcess] = set()
_RUNNING_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (and, for IPv4, on every address).

    Picked at random below the kernel's ephemeral range: a port from that range (what binding
    port 0 hands out) can be taken by any outgoing connection or port-0 server, an Envoy's
    connections to its upstreams for one, between now and the moment the caller binds it.
    Where the server can bind port 0 itself (admin, listeners) prefer that and read the port
    back (:meth:`EnvoyProcess.listener_ports`).
    """
    family, probe_host = (socket.AF_INET6, host) if ":" in host else (socket.AF_INET, "0.0.0.0")
    for candidate in random.sample(range(_LOWEST_PICKED_PORT, _ephemeral_port_floor()), k=500):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((probe_host, candidate))
            except OSError:
                continue
        return candidate
    raise EnvoyError(f"no free TCP port on {host} below the ephemeral port range")


#: Below this are well-known and registered ports other software on the machine may expect to bind.
_LOWEST_PICKED_PORT = 10_000


def _ephemeral_port_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


class EnvoyProcess(Lifecycle):
    """One running Envoy serving ``bootstrap``; a context manager that always stops it.

    The bootstrap is used as given. Its admin port may be ``0``: Envoy then picks a free
    port and reports it through ``--admin-address-path``, which is how :attr:`admin_url`
    is found, so parallel tests cannot collide on admin ports.

    ``wait_live=True`` (default) makes :meth:`start` return only once ``/ready`` says
    ``LIVE``. A proxy using ADS reaches LIVE when its first Clusters and Listeners have
    arrived (or Envoy's initial fetch timeout, 15 s by default, passed).
    """

    def __init__(
        self,
        bootstrap: Mapping[str, Any],
        *,
        envoy_binary: Path | None = None,
        workdir: Path | None = None,
        log_level: str = "warn",
        concurrency: int = 1,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        wait_live: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        if concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {concurrency}")
        self._bootstrap = bootstrap
        self._binary = envoy_binary
        self._requested_workdir = workdir
        self._log_level = log_level
        self._concurrency = concurrency
        self._startup_timeout = startup_timeout
        self._wait_live = wait_live
        self._extra_args = tuple(extra_args)
        self._workdir: Path | None = None
        self._owns_workdir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: tuple[str, int] | None = None
        self._final_log: str | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        """Write the bootstrap, start Envoy, and (by default) wait until it is LIVE."""
        if self._process is not None:
            raise EnvoyError("this EnvoyProcess was already started; create a new one")
        binary = self._binary or find_envoy()
        if self._requested_workdir is not None:
            self._workdir = self._requested_workdir
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix="reconciler-envoy-"))
            self._owns_workdir = True
        self.config_path.write_text(config_json(self._bootstrap), encoding="utf-8")
        self._admin_address_path.unlink(missing_ok=True)
        command = [
            str(binary),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",
            "--log-level",
            self._log_level,
            "--concurrency",
            str(self._concurrency),
            "--admin-address-path",
            str(self._admin_address_path),
            *self._extra_args,
        ]
        with self.log_path.open("wb") as log:
            try:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Own process group: a Ctrl-C meant for the test runner does not kill
                    # Envoy mid-test; stop() and atexit do it in order instead.
                    start_new_session=True,
                )
            except OSError as error:
                raise EnvoyError(f"could not start {binary}: {error}") from error
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        try:
            self._wait_for_admin(self._startup_timeout)
            if self._wait_live:
                self.wait_live(timeout=self._startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_live(self, *, timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        """Block until the admin ``/ready`` endpoint answers ``LIVE``; EnvoyError on timeout or exit."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while True:
            self._raise_if_exited("while waiting to become LIVE")
            with contextlib.suppress(EnvoyError):
                state = self.server_state()
            if state == _SERVER_STATE_LIVE:
                return
            if time.monotonic() >= deadline:
                raise EnvoyError(
                    f"Envoy did not become LIVE within {timeout:g}s (state {state}); log tail:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self, *, timeout: float = 5.0) -> int | None:
        """Stop Envoy (SIGTERM, then SIGKILL after ``timeout``); return its exit status. Idempotent."""
        process = self._process
        if process is None:
            return None
        stop_process(process, timeout=timeout)
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        if self._owns_workdir and self._workdir is not None and self._workdir.exists():
            # Keep the log readable after the temporary directory is gone.
            self._final_log = self._read_log()
            shutil.rmtree(self._workdir, ignore_errors=True)
        return process.returncode

    # -- facts about the process ------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the Envoy process exists and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The Envoy process id."""
        return self._started_process().pid

    @property
    def workdir(self) -> Path:
        """Directory holding the config file, the log and the admin address file."""
        if self._workdir is None:
            raise EnvoyError("Envoy has not been started")
        return self._workdir

    @property
    def config_path(self) -> Path:
        """The bootstrap file Envoy was started with (JSON)."""
        return self.workdir / "envoy.json"

    @property
    def log_path(self) -> Path:
        """Envoy's stdout and stderr."""
        return self.workdir / "envoy.log"

    @property
    def _admin_address_path(self) -> Path:
        return self.workdir / "admin-address"

    @property
    def admin_address(self) -> tuple[str, int]:
        """``(host, port)`` the admin API actually listens on."""
        if self._admin is None:
            raise EnvoyError("Envoy's admin address is not known yet (not started?)")
        return self._admin

    @property
    def admin_url(self) -> str:
        """Base URL of the admin API, e.g. ``http://127.0.0.1:15000``."""
        host, port = self.admin_address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of Envoy's log (also after stop)."""
        text = self._final_log if self._final_log is not None else self._read_log()
        return "\n".join(text.splitlines()[-lines:])

    # -- admin API ----------------------------------------------------------------------

    def admin_get(self, path: str, *, params: Mapping[str, str] | None = None, timeout: float = _ADMIN_TIMEOUT) -> str:
        """GET an admin endpoint and return the body; EnvoyError unless Envoy answers 200."""
        return self._admin_request("GET", path, params=params, timeout=timeout)

    def admin_post(self, path: str, *, params: Mapping[str, str] | None = None, timeout: float = _ADMIN_TIMEOUT) -> str:
        """POST to a mutating admin endpoint (``/healthcheck/fail``, ``/drain_listeners``, ...)."""
        return self._admin_request("POST", path, params=params, timeout=timeout)

    def server_state(self) -> str:
        """Envoy's server state from ``/ready``: ``LIVE``, ``PRE_INITIALIZING``, ``DRAINING``, ..."""
        status, body = self._admin_call("GET", "/ready", timeout=_ADMIN_TIMEOUT)
        # /ready answers 503 with the state name while not LIVE; that is information, not an error.
        return body.strip() if status in {200, 503} else f"HTTP {status}"

    def server_info(self) -> dict[str, Any]:
        """``/server_info`` as a dict (version, state, node, command line options)."""
        return self._admin_json("/server_info")

    def config_dump(self, *, resource: str | None = None, include_eds: bool = False) -> dict[str, Any]:
        """``/config_dump`` as a dict; ``resource`` narrows it (e.g. ``dynamic_active_clusters``)."""
        params: dict[str, str] = {}
        if resource is not None:
            params["resource"] = resource
        if include_eds:
            params["include_eds"] = "true"
        return self._admin_json("/config_dump", params=params)

    def clusters(self) -> dict[str, Any]:
        """``/clusters?format=json``: every cluster with its hosts, health and stats."""
        return self._admin_json("/clusters", params={"format": "json"})

    def listeners(self) -> dict[str, Any]:
        """``/listeners?format=json``: every active listener and the address it is bound to."""
        return self._admin_json("/listeners", params={"format": "json"})

    def listener_ports(self) -> dict[str, int]:
        """Listener name → port actually bound (resolves listeners configured with port 0)."""
        ports: dict[str, int] = {}
        for status in self.listeners().get("listener_statuses", []):
            address = status.get("local_address", {}).get("socket_address", {})
            if "port_value" in address:
                ports[str(status.get("name", ""))] = int(address["port_value"])
        return ports

    def stats(self, *, filter_regex: str | None = None) -> dict[str, int]:
        """Counters and gauges from ``/stats?format=json`` (histograms and text readouts left out).

        ``filter_regex`` is passed to Envoy (``filter=``), e.g. ``r"^cluster\\.v1\\."``.
        Counters Envoy has never touched may be absent; use :meth:`stat` with a default.
        """
        params = {"format": "json"}
        if filter_regex is not None:
            params["filter"] = filter_regex
        document = self._admin_json("/stats", params=params)
        values: dict[str, int] = {}
        for entry in document.get("stats", []):
            value = entry.get("value")
            if "name" in entry and isinstance(value, int) and not isinstance(value, bool):
                values[str(entry["name"])] = value
        return values

    def stat(self, name: str, default: int = 0) -> int:
        """One counter or gauge by exact name; ``default`` when Envoy has not created it."""
        return self.stats(filter_regex=f"^{re.escape(name)}$").get(name, default)

    # -- internals -------------------------------------------------------------------------

    def _started_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise EnvoyError("Envoy has not been started")
        return self._process

    def _raise_if_exited(self, doing: str) -> None:
        code = self._started_process().poll()
        if code is not None:
            raise EnvoyError(f"Envoy exited with status {code} {doing}; log tail:\n{self.log_tail()}")

    def _wait_for_admin(self, timeout: float) -> None:
        """Wait until Envoy has written the admin address it bound (it does so once listening)."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_exited("during startup")
            with contextlib.suppress(FileNotFoundError):
                text = self._admin_address_path.read_text(encoding="utf-8").strip()
                if text:
                    host, _, port = text.rpartition(":")
                    self._admin = (host.strip("[]"), int(port))
                    return
            if time.monotonic() >= deadline:
                raise EnvoyError(f"Envoy's admin API did not come up within {timeout:g}s; log tail:\n{self.log_tail()}")
            time.sleep(_POLL_INTERVAL)

    def _admin_json(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        body = self._admin_request("GET", path, params=params, timeout=_ADMIN_TIMEOUT)
        try:
            document = json.loads(body)
        except json.JSONDecodeError as error:
            raise EnvoyError(f"admin {path} did not return JSON: {body[:200]!r}") from error
        if not isinstance(document, dict):
            raise EnvoyError(f"admin {path} returned {type(document).__name__}, expected an object")
        return document

    def _admin_request(self, method: str, path: str, *, params: Mapping[str, str] | None, timeout: float) -> str:
        status, body = self._admin_call(method, path, params=params, timeout=timeout)
        if status != 200:
            raise EnvoyError(f"admin {method} {path} answered HTTP {status}: {body[:300]}")
        return body

    def _admin_call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, timeout: float
    ) -> tuple[int, str]:
        host, port = self.admin_address
        target = f"{path}?{urlencode(dict(params))}" if params else path
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request(method, target)
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as error:
            raise EnvoyError(f"admin {method} {path} at {self.admin_url} failed: {error}") from error
        finally:
            connection.close()

    def _read_log(self) -> str:
        if self._workdir is None:
            return ""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, 2)
                size = log.tell()
                log.seek(max(0, size - _LOG_TAIL_BYTES))
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@atexit.register
def _stop_leftovers() -> None:
    with _RUNNING_LOCK:
        leftovers = list(_RUNNING)
    for process in leftovers:
        with contextlib.suppress(Exception):
            process.stop(timeout=2.0)
