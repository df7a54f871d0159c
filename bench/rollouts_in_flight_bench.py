"""Benchmark: many rollouts in flight at once in one daemon, with real git, real Envoy gateways and live traffic.

N services (ServiceEntry + DestinationRule + VirtualService each, bound to the ingress
Gateway), each under its own RolloutPolicy (steps 20% and 50%, ``interval: 2s``,
``minRequests: 20``, ``maxInterval: 6s``, ``onLowTraffic: promote``). One commit moves every
service from 100/0 to 0/100, so N rollouts start at once and walk on together, while G Envoy
gateways push their stats to the daemon every second and traffic goes round-robin over the N
hosts (too little per canary for ``minRequests``: each step is promoted at ``maxInterval``,
after its window opened on every gateway's ACK). The bench waits until every rollout is
``Succeeded`` (every gateway ACKed git's weights) and checks from the daemon's decision log
that every step of every rollout had its window opened by the ACK of every gateway.

Reported: the daemon's CPU (user + system, ``/proc/PID/stat``) and RSS (sampled every
0.25 s; peak ``VmHWM``) over the walk, the generations published, each step's time from
its push to the last gateway's ACK, and how long ``GET /api/v1/status`` took during the
walk (the event loop's responsiveness).

    .venv/bin/python bench/rollouts_in_flight_bench.py                # 100 rollouts, 10 gateways
    .venv/bin/python bench/rollouts_in_flight_bench.py --services 20 --gateways 3

Not a test: prints a table. Everything listens on 127.0.0.1 and is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from push_to_ack_bench import (
    GATEWAY,
    GitRemote,
    daemon,
    gateways,
    get_json,
    in_workdir,
    percentile,
    service_yaml,
    wait_synced,
)

from reconciler.api.document import RolloutDocument
from reconciler.harness.envoy import free_port
from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer

POLICY = """\
apiVersion: reconciler.dev/v1alpha1
kind: RolloutPolicy
metadata:
  name: {name}
spec:
  targets:
  - name: {name}
  steps: [20, 50]
  interval: 2s
  minRequests: 20
  maxInterval: 6s
  onLowTraffic: promote
"""
#: Steps of the policy plus the last one (git's weights): pushes every rollout needs ACKed.
STEPS = 3
TIMEOUT = 300.0
SAMPLE_SECONDS = 0.25
TICKS = os.sysconf("SC_CLK_TCK")


def name_of(index: int) -> str:
    return "reviews" if index == 0 else f"svc-{index:04d}"


def host_of(index: int) -> str:
    return "reviews.example.com" if index == 0 else f"{name_of(index)}.bench.example.com"


def pid_of(marker: str) -> int:
    """The process whose command line holds ``marker`` (the daemon's unique state directory)."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                return int(entry.name)
    raise SystemExit(f"no process runs with {marker} in its command line")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/{pid}/status has no {field}")


class Background:
    """``step()`` in a thread every ``every`` seconds from entering the block until leaving it."""

    def __init__(self, *, every: float) -> None:
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.step()

    def step(self) -> None:
        raise NotImplementedError


class Sampler(Background):
    """RSS of ``pid`` and the latency of ``GET /api/v1/status``, every SAMPLE_SECONDS."""

    def __init__(self, *, pid: int, api: str) -> None:
        super().__init__(every=SAMPLE_SECONDS)
        self._pid, self._api = pid, api
        self.rss_kib: list[int] = []
        self.status_ms: list[float] = []

    def step(self) -> None:
        self.rss_kib.append(memory_kib(self._pid, "VmRSS"))
        started = time.monotonic()
        get_json(f"{self._api}/api/v1/status")
        self.status_ms.append((time.monotonic() - started) * 1000)


class Traffic(Background):
    """Requests round-robin over the hosts through the gateways, ``rate`` per second."""

    def __init__(self, *, port: int, hosts: list[str], rate: float) -> None:
        super().__init__(every=1.0 / rate)
        self._port, self._hosts = port, hosts
        self._next = 0
        self.sent = 0

    def step(self) -> None:
        host = self._hosts[self._next % len(self._hosts)]
        self._next += 1
        self.sent += send_requests(port=self._port, count=1, authority=host, workers=1, deadline=10).sent


def rollouts(api: str) -> list[RolloutDocument]:
    return [RolloutDocument.from_json(r) for r in get_json(f"{api}/api/v1/rollouts")["rollouts"]]


def wait_all_succeeded(api: str, *, sha: str, count: int) -> list[RolloutDocument]:
    deadline = time.monotonic() + TIMEOUT
    found: list[RolloutDocument] = []
    while time.monotonic() < deadline:
        found = [r for r in rollouts(api) if r.sha == sha]
        ended = [r for r in found if r.phase not in ("Progressing", "Paused", "Stalled")]
        failed = [r for r in ended if r.phase != "Succeeded"]
        if failed:
            raise SystemExit(f"{len(failed)} rollouts ended otherwise, e.g. {failed[0].policy} {failed[0].phase}")
        if len(ended) == count:
            return found
        time.sleep(0.2)
    phases = sorted({r.phase for r in found})
    raise SystemExit(f"not every rollout succeeded within {TIMEOUT:g}s: {len(found)} rollouts, phases {phases}")


def decisions(log: Path, sha: str) -> list[dict[str, Any]]:
    entries = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "rollout.decision" and entry.get("sha") == sha[:12]:
                entries.append(entry)
    return entries


def published(log: Path, *, after: float) -> int:
    count = 0
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "engine.published" and logged_at(entry) >= after:
                count += 1
    return count


def logged_at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def step_acks(entries: list[dict[str, Any]], *, count: int) -> list[float]:
    """Per rollout and step, push → every gateway ACKed (s); exits unless every step of every rollout was ACKed."""
    by_policy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_policy[entry["policy"]].append(entry)
    if len(by_policy) != count:
        raise SystemExit(f"decisions of {len(by_policy)} rollouts logged, not {count}")
    latencies = []
    for policy, recorded in by_policy.items():
        pushed = {e["step"]: logged_at(e) for e in recorded if e["action"] in ("advance", "finish")}
        acked = {e["step"]: e["acked_at"] for e in recorded if "analysis window opens" in e["reason"]}
        acked.update({e["step"]: logged_at(e) for e in recorded if e["phase"] == "Succeeded"})
        if sorted(pushed) != list(range(STEPS)) or sorted(acked) != list(range(STEPS)):
            raise SystemExit(f"{policy}: steps pushed {sorted(pushed)}, ACKed by every gateway {sorted(acked)}")
        latencies.extend(acked[step] - pushed[step] for step in range(STEPS))
    return latencies


def run(args: argparse.Namespace, workdir: Path) -> None:
    secret_file = workdir / "secret"
    secret_file.write_bytes(b"unused: the bench pokes POST /api/v1/sync")
    port = free_port()
    state = workdir / "state"
    log = workdir / "daemon.log"
    with UpstreamServer("v1") as v1, UpstreamServer("v2") as v2, contextlib.ExitStack() as stack:

        def services(weights: tuple[int, int]) -> dict[str, str]:
            return {
                f"mesh/services/{name_of(i)}.yaml": service_yaml(i, v1_port=v1.port, v2_port=v2.port, weights=weights)
                for i in range(args.services)
            }

        policies = "---\n".join(POLICY.format(name=name_of(i)) for i in range(args.services))
        repo = GitRemote.create(workdir)
        first = repo.commit(
            {"mesh/gateway.yaml": GATEWAY.format(port=port), "mesh/policies.yaml": policies, **services((100, 0))},
            f"{args.services} services on v1, each under a RolloutPolicy",
        )
        api, xds_port = stack.enter_context(daemon(remote=repo.bare, state=state, log=log, secret_file=secret_file))
        pid = pid_of(str(state))
        stack.enter_context(gateways(args.gateways, xds_port=xds_port, workdir=workdir))
        wait_synced(api, first, args.gateways, timeout=TIMEOUT)
        time.sleep(2)  # stats streams up, first flushes in
        hosts = [host_of(i) for i in range(args.services)]
        rss_before = memory_kib(pid, "VmRSS")
        with Traffic(port=port, hosts=hosts, rate=args.rate) as traffic, Sampler(pid=pid, api=api) as sampler:
            cpu_before, wall_before = cpu_seconds(pid), time.time()
            goal = repo.commit(services((0, 100)), f"{args.services} services all to v2")
            get_json(f"{api}/api/v1/sync", data=b"{}")
            wait_all_succeeded(api, sha=goal, count=args.services)
            cpu, wall = cpu_seconds(pid) - cpu_before, time.time() - wall_before
        rss_after, rss_peak = memory_kib(pid, "VmRSS"), memory_kib(pid, "VmHWM")
        entries = decisions(log, goal)
        acks = step_acks(entries, count=args.services)
        generations = published(log, after=wall_before)

    print(
        f"\n{args.services} rollouts in flight in one daemon: {args.services} services, {args.gateways} Envoy gateways,"
        f" steps [20, 50] then git's weights, {args.rate:g} req/s round-robin over the hosts ({traffic.sent} sent)\n"
    )
    print(f"every step of every rollout ACKed by all {args.gateways} gateways: {len(acks)} of {STEPS * args.services}")
    print(f"{'':<46}{'value':>12}")
    rows = [
        ("commit → every rollout Succeeded (s)", f"{wall:.1f}"),
        ("daemon CPU over the walk (s)", f"{cpu:.1f}"),
        ("daemon CPU (share of one core)", f"{cpu / wall:.2f}"),
        ("generations published during the walk", f"{generations}"),
        ("rollout decisions recorded", f"{len(entries)}"),
        ("daemon RSS before the commit (MiB)", f"{rss_before / 1024:.0f}"),
        ("daemon RSS during the walk, max sampled (MiB)", f"{max(sampler.rss_kib) / 1024:.0f}"),
        ("daemon RSS after (MiB)", f"{rss_after / 1024:.0f}"),
        ("daemon peak RSS since start, VmHWM (MiB)", f"{rss_peak / 1024:.0f}"),
        ("step push → last gateway ACK, p50 (ms)", f"{percentile(acks, 50) * 1000:.0f}"),
        ("step push → last gateway ACK, max (ms)", f"{max(acks) * 1000:.0f}"),
        ("GET /api/v1/status during the walk, p50 (ms)", f"{statistics.median(sampler.status_ms):.0f}"),
        ("GET /api/v1/status during the walk, max (ms)", f"{max(sampler.status_ms):.0f}"),
    ]
    for name, value in rows:
        print(f"{name:<46}{value:>12}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=100, help="services, each with its own rollout")
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second, round-robin over the hosts")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repo and logs")
    args = parser.parse_args()
    if args.services < 1 or args.gateways < 1 or args.rate <= 0:
        parser.error("--services and --gateways must be positive, --rate > 0")
    in_workdir("reconciler-rollouts-bench-", keep=args.keep, body=lambda workdir: run(args, workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
