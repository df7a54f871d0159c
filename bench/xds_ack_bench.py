"""Benchmark: from a weight change until every connected Envoy has ACKed it.

A generated mesh of N services (default 1,000), each a STATIC ServiceEntry with three
labelled endpoints, a DestinationRule with three subsets and a VirtualService splitting
traffic over two of them, is served by the real ADS server (in this process) to 1, 10
and 50 real Envoy sidecars (``--concurrency 1``, ``--log-level error``, each with its own
free outbound port). Envoys start ``--start-batch`` at a time, each batch synced before
the next, so startup does not starve the server; the first full sync is waited for.

Each repetition changes one service's weights and does what the daemon does: translates
the new config for every connected proxy in a worker thread (a
:class:`~reconciler.engine.snapshots.ConfigSnapshots` sharing one
:class:`~reconciler.translate.memo.TranslationCache` across revisions, memoised per proxy
shape), then publishes it on the server's loop and waits for
:meth:`~reconciler.xds.SnapshotCache.wait_for_acks`. The two are reported apart.

    .venv/bin/python bench/xds_ack_bench.py
    .venv/bin/python bench/xds_ack_bench.py --proxies 50 --reps 7 [--delta] [--shared-port]
    .venv/bin/python bench/xds_ack_bench.py --services 200 --proxies 1 5 --reps 3

Not a test: prints a table. Columns: translation of the change for every shape (wall and
CPU, p50), push → all ACKed (publish until every proxy ACKed; p50, p99, max), the server
process's CPU and the Envoys' CPU over that span, and which types were pushed per repetition (a weight change
should push RDS only). Distinct outbound ports mean one translation per proxy;
``--shared-port`` gives all sidecars one port, as real sidecars (all on 15001) have.
Every Envoy started is stopped on exit, Ctrl-C or SIGTERM. Everything listens on 127.0.0.1
(the sidecar listeners bind 0.0.0.0, as Istio's do); no request is sent through them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from reconciler.cli.logs import configure_logging
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.memo import TranslationCache
from reconciler.translate.snapshot import PUSH_ORDER, SHORT_NAMES
from reconciler.xds import ProxyStatus, SnapshotCache, XdsEvent, start_server
from reconciler.xds.cache import EventKind

T = TypeVar("T")

#: Generous: 50 Envoys on a two-core laptop, each taking 4,000 clusters at startup.
STARTUP_TIMEOUT = 300.0
ACK_TIMEOUT = 120.0
#: Envoys started at once (``--start-batch``); the rest wait, so startup does not starve the ADS server of CPU.
START_BATCH = 5

_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc-{i}
spec:
  hosts:
  - svc-{i}.bench.internal
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 80
    name: http
    protocol: HTTP
  endpoints:
  - address: 127.0.0.1
    ports: {{http: 9}}
    labels: {{version: v1}}
  - address: 127.0.0.1
    ports: {{http: 9}}
    labels: {{version: v2}}
  - address: 127.0.0.1
    ports: {{http: 9}}
    labels: {{version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc-{i}
spec:
  host: svc-{i}.bench.internal
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
  - name: v3
    labels: {{version: v3}}
---
{virtual_service}"""

_VIRTUAL_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-{i}
spec:
  hosts:
  - svc-{i}.bench.internal
  http:
  - route:
    - destination:
        host: svc-{i}.bench.internal
        subset: v1
      weight: {v1}
    - destination:
        host: svc-{i}.bench.internal
        subset: v2
      weight: {v2}
"""


def service_file(i: int, *, v2_weight: int = 10) -> str:
    return _SERVICE.format(i=i, virtual_service=_VIRTUAL_SERVICE.format(i=i, v1=100 - v2_weight, v2=v2_weight))


def load(files: dict[str, str]) -> MeshConfig:
    result = load_files(files)
    if not result.ok:
        raise SystemExit(f"generated config is invalid: {[str(f) for f in result.findings[:5]]}")
    return result.config


def with_weight(base: MeshConfig, v2_weight: int) -> MeshConfig:
    """``base`` with svc-0's split changed to ``100 - v2_weight``/``v2_weight``: one route changes."""
    changed = load({"svc-0.yaml": service_file(0, v2_weight=v2_weight)}).virtual_services[0]
    services = tuple(changed if vs.name == changed.name else vs for vs in base.virtual_services)
    return dataclasses.replace(base, virtual_services=services)


class Ads:
    """The ADS server and its cache on an asyncio loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="xds-loop", daemon=True)
        self._thread.start()
        self.cache = SnapshotCache()
        self.server = self.run(start_server(cache=self.cache, address="127.0.0.1:0"), timeout=10.0)
        #: Responses sent, by type (a loop-thread counter; read it through :meth:`take_pushes`).
        self._pushes: Counter[str] = Counter()
        self.cache.add_listener(self._count)

    def _count(self, event: XdsEvent) -> None:
        if event.kind is EventKind.PUSH:
            self._pushes[event.type_url] += 1

    def take_pushes(self) -> Counter[str]:
        """Responses sent by type since the last call."""

        async def on_loop() -> Counter[str]:
            pushes, self._pushes = self._pushes, Counter()
            return pushes

        return self.run(on_loop(), timeout=10.0)

    def proxies(self) -> tuple[ProxyIdentity, ...]:
        async def on_loop() -> tuple[ProxyIdentity, ...]:
            return self.cache.proxies()

        return self.run(on_loop(), timeout=10.0)

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def publish_and_wait(self, source: ConfigSnapshots) -> tuple[float, float, bool]:
        """(ms from publish until every proxy ACKed, this process's CPU ms meanwhile, all ACKed?), timed on the loop."""

        async def measure() -> tuple[float, float, bool]:
            cpu = time.process_time()
            started = time.perf_counter()
            generation = self.cache.publish(source)
            acked = await self.cache.wait_for_acks(generation, timeout=ACK_TIMEOUT)
            done = time.perf_counter()
            return (done - started) * 1000.0, (time.process_time() - cpu) * 1000.0, acked

        return self.run(measure(), timeout=ACK_TIMEOUT + 60.0)

    def publish(self, source: ConfigSnapshots) -> int:
        async def on_loop() -> int:
            return self.cache.publish(source)

        return self.run(on_loop(), timeout=ACK_TIMEOUT)

    def wait_synced(self, proxies: int, generation: int, *, timeout: float) -> bool:
        """Wait until ``proxies`` are connected and ACKed ``generation``; False on timeout or on any NACK."""

        def settled(statuses: Sequence[ProxyStatus]) -> bool:
            synced = len(statuses) >= proxies and all(status.acked_generation >= generation for status in statuses)
            return synced or any(status.nacked for status in statuses)

        done = self.run(self.cache.wait_until(settled, timeout=timeout), timeout=timeout + 10.0)
        return done and not any(status.nacked for status in self.statuses())

    def statuses(self) -> tuple[ProxyStatus, ...]:
        async def on_loop() -> tuple[ProxyStatus, ...]:
            return self.cache.statuses()

        return self.run(on_loop(), timeout=10.0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.server.stop(grace=0), timeout=10.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10.0)
        self.loop.close()


def listener_port(taken: set[int]) -> int:
    """A free port (see ``free_port``) none of this run's Envoys was handed yet."""
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


def sidecar(index: int, *, port: int) -> ProxyIdentity:
    return ProxyIdentity(
        node_id=f"bench-sidecar-{index}", labels={"app": "bench-client"}, role=ProxyRole.SIDECAR, outbound_port=port
    )


@contextlib.contextmanager
def envoys() -> Iterator[list[EnvoyProcess]]:
    started: list[EnvoyProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop(timeout=5.0)


def start_envoys(
    started: list[EnvoyProcess],
    *,
    total: int,
    ads: Ads,
    generation: int,
    ports: set[int],
    shared_port: int | None,
    batch: int,
    delta: bool,
    others: int = 0,
) -> None:
    """Grow ``started`` to ``total`` Envoys, ``batch`` at a time, each batch synced to ``generation`` first.

    ``others``: proxies connected to the server that are not these Envoys (simulated streams).
    """
    while len(started) < total:
        for _ in range(min(batch, total - len(started))):
            identity = sidecar(len(started), port=shared_port or listener_port(ports))
            bootstrap = build_bootstrap(
                proxy=identity, xds_host="127.0.0.1", xds_port=ads.server.port, admin_port=0, delta=delta
            )
            process = EnvoyProcess(bootstrap, log_level="error", concurrency=1, wait_live=False)
            started.append(process)
            process.start()
        if not ads.wait_synced(others + len(started), generation, timeout=STARTUP_TIMEOUT):
            nacks = [
                (status.node_id, nack.message)
                for status in ads.statuses()
                for type_status in status.types.values()
                if (nack := type_status.last_nack) is not None
            ]
            raise SystemExit(f"{len(started)} Envoys did not sync within {STARTUP_TIMEOUT:g}s; NACKs: {nacks}")


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


@dataclasses.dataclass
class Row:
    """One proxy count's repetitions."""

    proxies: int
    translate_ms: list[float] = dataclasses.field(default_factory=list)
    translate_cpu_ms: list[float] = dataclasses.field(default_factory=list)
    push_ms: list[float] = dataclasses.field(default_factory=list)
    push_cpu_ms: list[float] = dataclasses.field(default_factory=list)
    envoy_cpu_ms: list[float] = dataclasses.field(default_factory=list)
    pushes: Counter[str] = dataclasses.field(default_factory=Counter)


def translate_for(snapshots: ConfigSnapshots, proxies: Sequence[ProxyIdentity]) -> tuple[float, float]:
    """Translate for every proxy in this thread (the daemon's worker thread); (wall ms, this thread's CPU ms)."""
    cpu = time.thread_time()
    started = time.perf_counter()
    snapshots.translate_all(proxies)
    return (time.perf_counter() - started) * 1000.0, (time.thread_time() - cpu) * 1000.0


def cpu_ms(processes: Sequence[EnvoyProcess]) -> float:
    """User and system CPU the processes used so far, in ms (``/proc/PID/stat``)."""
    total = 0
    for process in processes:
        with open(f"/proc/{process.pid}/stat") as stat:
            # After the command name (in parentheses, may hold spaces): utime and stime are fields 14 and 15.
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * 1000.0 / os.sysconf("SC_CLK_TCK")


def pushed(counts: Counter[str], reps: int) -> str:
    """Responses per repetition by type, in push order: ``RDS 50`` when a weight change reached 50 proxies."""
    return ", ".join(f"{SHORT_NAMES[url]} {counts[url] / reps:g}" for url in PUSH_ORDER if counts[url]) or "none"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000, help="generated services (default 1000)")
    parser.add_argument("--proxies", type=int, nargs="+", default=[1, 10, 50], help="Envoy counts (default 1 10 50)")
    parser.add_argument("--reps", type=int, default=7, help="weight changes measured per proxy count (default 7)")
    parser.add_argument(
        "--shared-port",
        action="store_true",
        help=(
            "give every sidecar the same outbound port (Envoy listeners use SO_REUSEPORT), like real sidecars "
            "that all listen on 15001: one translation serves them all"
        ),
    )
    parser.add_argument("--delta", action="store_true", help="the Envoys use incremental (delta) xDS")
    parser.add_argument(
        "--start-batch", type=int, default=START_BATCH, help=f"Envoys started at once (default {START_BATCH})"
    )
    args = parser.parse_args(argv)
    if args.services < 1 or args.reps < 1 or args.start_batch < 1 or any(p < 1 for p in args.proxies):
        parser.error("--services, --reps, --start-batch and --proxies must be positive")

    # The ADS server logs every push and ACK at info level: thousands of lines per step here.
    configure_logging(json=False, level=logging.WARNING)
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, through the finally blocks that stop Envoy.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.perf_counter()
    base = load({f"svc-{i}.yaml": service_file(i) for i in range(args.services)})
    load_s = time.perf_counter() - started
    # One for the whole run, as the daemon keeps one across revisions (every ConfigSnapshots it serves shares it).
    translations = TranslationCache()
    first = ConfigSnapshots(config=base, cache=translations)
    snapshot = first.snapshot_for(sidecar(0, port=15001))
    counts = {url.rsplit(".", 1)[-1]: len(resource_set.resources) for url, resource_set in snapshot.sets.items()}
    mode = "delta" if args.delta else "state of the world"
    print(f"{args.services} services loaded and validated in {load_s:.1f}s; one sidecar snapshot: {counts}; {mode}")

    rows = []
    weight = 10
    ports: set[int] = set()
    shared_port = listener_port(ports) if args.shared_port else None
    ads = Ads()
    try:
        with envoys() as started_envoys:
            generation = ads.publish(first)
            for proxies in sorted(set(args.proxies)):
                began = time.perf_counter()
                start_envoys(
                    started_envoys,
                    total=proxies,
                    ads=ads,
                    generation=generation,
                    ports=ports,
                    shared_port=shared_port,
                    batch=args.start_batch,
                    delta=args.delta,
                )
                print(
                    f"{proxies} Envoys connected and synced ({time.perf_counter() - began:.1f}s to start)", flush=True
                )
                row = Row(proxies=proxies)
                ads.take_pushes()
                for _ in range(args.reps):
                    weight = 10 + (weight - 9) % 80  # a different split every time
                    changed = ConfigSnapshots(config=with_weight(base, weight), cache=translations)
                    translate_ms, translate_cpu_ms = translate_for(changed, ads.proxies())
                    envoy_cpu = cpu_ms(started_envoys)
                    push_ms, push_cpu_ms, acked = ads.publish_and_wait(changed)
                    row.envoy_cpu_ms.append(cpu_ms(started_envoys) - envoy_cpu)
                    if not acked:
                        raise SystemExit(f"not every proxy ACKed within {ACK_TIMEOUT:g}s: {ads.statuses()}")
                    row.translate_ms.append(translate_ms)
                    row.translate_cpu_ms.append(translate_cpu_ms)
                    row.push_ms.append(push_ms)
                    row.push_cpu_ms.append(push_cpu_ms)
                row.pushes = ads.take_pushes()
                generation = max(status.acked_generation for status in ads.statuses())
                if any(status.nacked for status in ads.statuses()):
                    print("warning: a proxy NACKed", file=sys.stderr)
                rows.append(row)
    finally:
        ads.close()

    print()
    ports_note = "one shared outbound port" if args.shared_port else "a distinct outbound port each"
    print(f"{args.services} services, sidecars with {ports_note}, {mode}; a weight change:")
    print()
    print(
        "| proxies | reps | translate all shapes p50 ms | its CPU p50 ms | push → all ACKed p50 ms | p99 ms | max ms "
        "| server CPU p50 ms | Envoys' CPU p50 ms | pushed per rep |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for row in rows:
        print(
            f"| {row.proxies} | {len(row.push_ms)} | {statistics.median(row.translate_ms):.0f} "
            f"| {statistics.median(row.translate_cpu_ms):.0f} | {statistics.median(row.push_ms):.0f} "
            f"| {percentile(row.push_ms, 99):.0f} | {max(row.push_ms):.0f} | {statistics.median(row.push_cpu_ms):.0f} "
            f"| {statistics.median(row.envoy_cpu_ms):.0f} | {pushed(row.pushes, len(row.push_ms))} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
