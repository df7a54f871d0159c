"""Benchmark: push-to-ACK latency of the whole GitOps loop, with real git, real daemon, real Envoys.

One measured step: ``git push`` of a weight change, then the signed GitHub push webhook,
then polling ``GET /api/v1/status`` every 10 ms until the pushed commit is the head, is
served, and every connected gateway has ACKed it in full (``synced``, each proxy's
``ackedGeneration`` caught up). The repo holds N services (ServiceEntry + DestinationRule
+ VirtualService each, all bound to the ingress Gateway), so each gateway carries N
virtual hosts and 3N clusters; commits alternate one service's weights 80/20 ↔ 20/80.

    .venv/bin/python bench/push_to_ack_bench.py                       # 10 gateways, 1,000 services, 50 commits
    .venv/bin/python bench/push_to_ack_bench.py --gateways 3 --services 200 --commits 20

The daemon runs with ``--log-level debug``; a second table splits each commit's time in the daemon
by phase, from its log: webhook received → fetched and read (``fetch``), parsed and validated
(``validate``), translated for the connected proxies (``translate``), published (``publish``), every
proxy ACKed (``ACKs``: ``engine.published`` → ``engine.synced``).

Not a test: prints tables. Everything listens on 127.0.0.1 and is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.harness.lifecycle import stop_process
from reconciler.harness.traffic import send_requests
from reconciler.harness.upstream import UpstreamServer
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repo is driven like the end-to-end tests drive theirs: tests/support is not a package, put it on the path.
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))
from gitrepo import GitRemote, git_env  # noqa: E402

DAEMON = (sys.executable, "-m", "reconciler.cli.main", "run")
SECRET = b"bench-webhook-secret"
HOST = "reviews.example.com"
POLL_SECONDS = 0.01
STEP_TIMEOUT = 60.0

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: ingress
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
"""

SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {v1_port}}}
    labels: {{version: v1}}
  - address: 127.0.0.1
    ports: {{http: {v2_port}}}
    labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
spec:
  host: {host}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts: [{host}]
  gateways: [ingress]
  http:
  - name: default
    route:
    - destination: {{host: {host}, subset: v1}}
      weight: {w1}
    - destination: {{host: {host}, subset: v2}}
      weight: {w2}
"""


def service_yaml(index: int, *, v1_port: int, v2_port: int, weights: tuple[int, int]) -> str:
    name = "reviews" if index == 0 else f"svc-{index:04d}"
    host = HOST if index == 0 else f"{name}.bench.example.com"
    return SERVICE.format(name=name, host=host, v1_port=v1_port, v2_port=v2_port, w1=weights[0], w2=weights[1])


def get_json(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def synced(status: dict[str, Any], sha: str, gateways: int) -> bool:
    proxies = status["proxies"]
    return (
        status["headSha"] == sha
        and (status["served"] or {}).get("sha") == sha
        and status["synced"]
        and len(proxies) == gateways
        and all(proxy["ackedGeneration"] >= status["generation"] for proxy in proxies)
    )


def wait_synced(api: str, sha: str, gateways: int, *, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = get_json(f"{api}/api/v1/status")
        if synced(status, sha, gateways):
            return status
        if (status.get("lastError") or {}).get("sha") == sha:
            raise SystemExit(f"the daemon refused {sha[:12]}: {status['lastError']['message']}")
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{sha[:12]} not synced to {gateways} gateways within {timeout:g}s; last status: {status}")


@contextlib.contextmanager
def daemon(*, remote: Path, state: Path, log: Path, secret_file: Path) -> Iterator[tuple[str, int, int]]:
    """The daemon as a child process; yields (status API URL, xDS port, process id)."""
    xds_port, http_port = free_port(), free_port()
    command = [
        *DAEMON,
        "--repo", str(remote), "--path", "mesh", "--poll-interval", "60s", "--state-dir", str(state),
        "--xds-address", f"127.0.0.1:{xds_port}", "--http-address", f"127.0.0.1:{http_port}",
        "--webhook-secret-file", str(secret_file), "--log-level", "debug",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=git_env(), cwd=REPO_ROOT)
    api = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the daemon exited with {process.returncode}; see {log}")
            with contextlib.suppress(OSError, ValueError):
                if get_json(f"{api}/readyz")["ready"]:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not become ready; see {log}")
            time.sleep(0.05)
        yield api, xds_port, process.pid
    finally:
        stop_process(process, timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def run(args: argparse.Namespace, workdir: Path) -> None:
    secret_file = workdir / "secret"
    secret_file.write_bytes(SECRET)
    gateway_port = free_port()
    with UpstreamServer("v1") as v1, UpstreamServer("v2") as v2, contextlib.ExitStack() as stack:
        repo = GitRemote.create(workdir)
        files = {"mesh/gateway.yaml": GATEWAY.format(port=gateway_port)}
        for index in range(args.services):
            weights = (100, 0)
            path = "mesh/reviews.yaml" if index == 0 else f"mesh/services/svc-{index:04d}.yaml"
            files[path] = service_yaml(index, v1_port=v1.port, v2_port=v2.port, weights=weights)
        initial = repo.commit(files, f"{args.services} services")

        started = time.monotonic()
        api, xds_port, pid = stack.enter_context(
            daemon(remote=repo.bare, state=workdir / "state", log=workdir / "daemon.log", secret_file=secret_file)
        )
        ready_s = time.monotonic() - started
        started = time.monotonic()
        envoys = stack.enter_context(gateways(args.gateways, xds_port=xds_port, workdir=workdir))
        wait_synced(api, initial, args.gateways)
        first_sync_s = time.monotonic() - started

        cpu_before = cpu_seconds(pid)
        push_s: list[float] = []
        hook_to_ack_s: list[float] = []
        total_s: list[float] = []
        for step in range(args.commits):
            weights = (80, 20) if step % 2 == 0 else (20, 80)
            reviews = service_yaml(0, v1_port=v1.port, v2_port=v2.port, weights=weights)
            sha = repo.commit({"mesh/reviews.yaml": reviews}, f"reviews {weights[0]}/{weights[1]}", push=False)
            body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
            signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            t0 = time.monotonic()
            repo.push()
            t1 = time.monotonic()
            get_json(
                f"{api}/hooks/git",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": signature,
                },
            )
            wait_synced(api, sha, args.gateways)
            t2 = time.monotonic()
            push_s.append(t1 - t0)
            hook_to_ack_s.append(t2 - t1)
            total_s.append(t2 - t0)

        cpu_per_commit = (cpu_seconds(pid) - cpu_before) / args.commits
        # Sanity: the last commit's weights really carry traffic (the gateways share the port via SO_REUSEPORT).
        traffic = send_requests(port=gateway_port, count=1000, authority=HOST, workers=8)
        clusters = len(envoys[0].clusters().get("cluster_statuses", [])) - 1  # less the static xds_cluster
        last = (80, 20) if (args.commits - 1) % 2 == 0 else (20, 80)

    print(
        f"\npush-to-ACK: {args.gateways} Envoy gateways, {args.services} services "
        f"({3 * args.services + 1} Istio resources; {clusters} clusters per gateway), {args.commits} commits"
    )
    print(f"daemon ready (clone + validate + translate): {ready_s * 1000:.0f} ms")
    print(f"first full sync of {args.gateways} gateways (Envoy start → all ACKed): {first_sync_s * 1000:.0f} ms\n")
    rows = [
        ("git push", push_s),
        ("webhook → all ACKed", hook_to_ack_s),
        ("push + webhook → all ACKed", total_s),
    ]
    print(f"{'step':<28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'mean ms':>10}")
    for name, values in rows:
        print(
            f"{name:<28}{percentile(values, 50) * 1000:>10.0f}{percentile(values, 99) * 1000:>10.0f}"
            f"{max(values) * 1000:>10.0f}{statistics.fmean(values) * 1000:>10.0f}"
        )
    print(f"\ndaemon CPU per commit (user + system, status polls included): {cpu_per_commit * 1000:.0f} ms")
    print_phases(workdir / "daemon.log", commits=args.commits)
    print(
        f"\nsanity: last commit {last[0]}/{last[1]}; 1,000 requests through the gateways: "
        f"v2 {traffic.share('v2'):.1f}%, errors {sum(traffic.errors.values())}"
    )


#: The daemon's log lines that close a phase of a commit's pass, after ``daemon.triggered``.
_PHASE_EVENTS = ("engine.pass_timings", "engine.published", "engine.synced")


def print_phases(log: Path, *, commits: int) -> None:
    """Per phase of the daemon's pass, p50 and max over the last ``commits`` webhooks, from its log."""
    passes: list[dict[str, float]] = []
    current: dict[str, float] | None = None
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        event = entry.get("event")
        if event == "daemon.triggered" and entry.get("by") == "webhook":
            current = {}
        elif current is not None and event in _PHASE_EVENTS:
            at = datetime.fromisoformat(entry["timestamp"]).timestamp() * 1000
            if event == "engine.pass_timings":
                current.update({key.removesuffix("_ms"): value for key, value in entry.items() if key.endswith("_ms")})
            elif event == "engine.published":
                current["published_at"] = at
            elif "published_at" in current:
                current["ACKs"] = at - current["published_at"]
                passes.append(current)
                current = None
    passes = passes[-commits:]
    print(f"\nin the daemon, per commit ({len(passes)} passes; engine.pass_timings, engine.published → engine.synced)")
    print(f"{'phase':<28}{'p50 ms':>10}{'max ms':>10}")
    for phase in ("fetch", "validate", "translate", "publish", "ACKs"):
        values = [entry[phase] for entry in passes if phase in entry]
        if values:
            print(f"{phase:<28}{statistics.median(values):>10.0f}{max(values):>10.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the temporary repo and logs")
    args = parser.parse_args()
    if args.gateways < 1 or args.services < 1 or args.commits < 1:
        parser.error("--gateways, --services and --commits must be positive")
    in_workdir("reconciler-push-bench-", keep=args.keep, body=lambda workdir: run(args, workdir))
    return 0


@contextlib.contextmanager
def gateways(count: int, *, xds_port: int, workdir: Path) -> Iterator[list[EnvoyProcess]]:
    """``count`` Envoy ingress gateways (node ids ingress-1, ...) connected to the daemon, live when entered."""
    with contextlib.ExitStack() as stack:
        envoys = []
        for number in range(count):
            identity = ProxyIdentity(
                node_id=f"ingress-{number + 1}", labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY
            )
            bootstrap = build_bootstrap(proxy=identity, xds_host="127.0.0.1", xds_port=xds_port, admin_port=0)
            envoys.append(
                stack.enter_context(EnvoyProcess(bootstrap, workdir=workdir / f"envoy-{number}", wait_live=False))
            )
        for envoy in envoys:
            envoy.wait_live(timeout=60)
        yield envoys


def in_workdir(prefix: str, *, keep: bool, body: Callable[[Path], object]) -> None:
    """Run ``body`` in a fresh temporary directory, removed afterwards unless ``keep`` (then its path is printed)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        body(workdir)
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
