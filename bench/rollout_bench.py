"""Benchmark: time to roll back a bad canary, with real git, a real daemon, real Envoy gateways and live traffic.

Two Envoy ingress gateways (one listener port, shared via SO_REUSEPORT) route
``reviews.example.com`` to v1/v2 upstreams under a RolloutPolicy (steps 20% and 50%,
``interval: 2s``, ``minRequests: 20``, ``error-rate`` ≤ 1%). v2 answers 30% of its
requests with 500. Each repetition serves 100/0, then commits 0/100 with 100 requests/s
going through the gateways; the daemon walks the first step, sees v2 fail on the gateways'
pushed stats and rolls back by itself. Times come from the daemon's own records, all on
its wall clock:

* **ACK** — ``ackedAt`` of the rolled-back rollout (``GET /api/v1/rollouts/default/reviews``):
  when every proxy had ACKed the failing step (its analysis window opened).
* **decision** — ``decidedAt`` of the same document: the rollback decision.
* **stable ACKed** — ``syncedAt`` of ``GET /api/v1/status`` once it serves the rollback
  (every proxy's ``ackedGeneration`` ≥ ``generation``): when the last proxy ACKed it.

Time to roll back = stable ACKed - ACK (target < 3 s); detection = decision - ACK; push =
stable ACKed - decision. Failed requests: 5xx answers and transport errors the traffic
generator saw from the push of the bad commit until every proxy ACKed the rollback.

    .venv/bin/python bench/rollout_bench.py                 # 5 bad rollouts
    .venv/bin/python bench/rollout_bench.py --reps 10 --fail 0.5

Not a test: prints a table. Everything listens on 127.0.0.1 and is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The push-to-ACK bench's daemon, mesh YAML and git repo (tests/support's GitRemote) serve this bench too.
from push_to_ack_bench import (
    GATEWAY,
    HOST,
    GitRemote,
    daemon,
    gateways,
    get_json,
    in_workdir,
    service_yaml,
    wait_synced,
)

from reconciler.api.document import RolloutDocument, StatusDocument
from reconciler.harness.envoy import free_port
from reconciler.harness.traffic import TrafficResult, send_at_rate
from reconciler.harness.upstream import UpstreamServer

POLICY = """\
apiVersion: reconciler.dev/v1alpha1
kind: RolloutPolicy
metadata:
  name: reviews
spec:
  targets:
  - name: reviews
  steps: [20, 50]
  interval: 2s
  minRequests: 20
  maxInterval: 20s
  onLowTraffic: promote
  checks:
  - metric: error-rate
    max: 1%
"""
ROLLOUT = "default/reviews"
TIMEOUT = 60.0
#: Traffic runs in slices this long, so it stops soon after the rollback is ACKed.
SLICE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class BadRollout:
    """One rolled-back rollout: the daemon's timestamps (epoch seconds) and what the clients saw."""

    acked: float
    decided: float
    stable_acked: float
    step: int
    message: str
    requests: int
    failed: int
    canary_requests: int


class Traffic:
    """Paced traffic in a thread, slice after slice, until stopped; the slices' results."""

    def __init__(self, *, port: int, rate: float) -> None:
        self._port, self._rate = port, rate
        self._stop = threading.Event()
        self.results: list[TrafficResult] = []
        self._thread = threading.Thread(target=self._run, name="bench-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.results.append(
                send_at_rate(port=self._port, rate=self._rate, duration=SLICE_SECONDS, authority=HOST, workers=8)
            )

    @property
    def requests(self) -> int:
        return sum(result.sent for result in self.results)

    @property
    def failed(self) -> int:
        """5xx answers (v2's and Envoy's own) and transport errors: what a user would have seen fail."""
        return sum(
            sum(count for status, count in result.by_status.items() if status >= 500) + sum(result.errors.values())
            for result in self.results
        )


def wait_until(what: str, probe: Callable[[], Any]) -> Any:
    """Poll ``probe`` every 10 ms until it returns something truthy; that value."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if found := probe():
                return found
        time.sleep(0.01)
    raise SystemExit(f"timed out after {TIMEOUT:g}s waiting for {what}")


def rolled_back(api: str, sha: str) -> RolloutDocument | None:
    rollout = RolloutDocument.from_json(get_json(f"{api}/api/v1/rollouts/{ROLLOUT}"))
    if rollout.sha != sha or rollout.phase in ("Progressing", "Paused", "Stalled"):
        return None
    if rollout.phase != "RolledBack":
        raise SystemExit(f"the bad rollout ended {rollout.phase}, not RolledBack: {rollout.message}")
    return rollout


def synced_at(api: str, *, head: str, gateways: int) -> float | None:
    """When every proxy ACKed the generation served now, once all of them did and the daemon took ``head``.

    A commit that changes nothing served (100/0 again after a rollback) keeps the served
    revision, so the head, not the served sha, says the daemon has seen it.
    """
    status = StatusDocument.from_json(get_json(f"{api}/api/v1/status"))
    engine = status.engine
    caught_up = len(status.proxies) == gateways and all(
        proxy.acked_generation >= engine.generation for proxy in status.proxies
    )
    if engine.head_sha != head or not engine.synced or not caught_up or engine.synced_at is None:
        return None
    return engine.synced_at.timestamp()


def bad_rollout(*, repo: GitRemote, api: str, files: dict[str, str], port: int, args: argparse.Namespace) -> BadRollout:
    """Serve 100/0, then commit 0/100 under traffic and wait until every proxy ACKed the daemon's rollback."""
    good = repo.commit({"mesh/reviews.yaml": files["100/0"]}, "reviews: all on v1")
    get_json(f"{api}/api/v1/sync", data=b"{}")
    wait_until("every proxy to ACK 100/0", lambda: synced_at(api, head=good, gateways=args.gateways))
    with Traffic(port=port, rate=args.rate) as traffic:
        bad = repo.commit({"mesh/reviews.yaml": files["0/100"]}, "reviews: all to v2 (v2 is broken)")
        get_json(f"{api}/api/v1/sync", data=b"{}")
        rollout: RolloutDocument = wait_until("the rollback", lambda: rolled_back(api, bad))
        acked: float = wait_until(
            "every proxy to ACK the rollback", lambda: synced_at(api, head=bad, gateways=args.gateways)
        )
    if rollout.acked_at is None or rollout.decided_at is None:
        raise SystemExit(f"the rolled-back rollout has no ACK or decision time: {rollout}")
    canary = rollout.counts.get(f"{HOST}:v2")
    return BadRollout(
        acked=rollout.acked_at,
        decided=rollout.decided_at,
        stable_acked=acked,
        step=rollout.step,
        message=rollout.message,
        requests=traffic.requests,
        failed=traffic.failed,
        canary_requests=canary.requests if canary else 0,
    )


def run(args: argparse.Namespace, workdir: Path) -> list[BadRollout]:
    secret_file = workdir / "secret"
    secret_file.write_bytes(b"unused: the bench pokes POST /api/v1/sync")
    port = free_port()
    with UpstreamServer("v1") as v1, UpstreamServer("v2") as v2, contextlib.ExitStack() as stack:
        files = {
            f"{w1}/{w2}": service_yaml(0, v1_port=v1.port, v2_port=v2.port, weights=(w1, w2))
            for w1, w2 in ((100, 0), (0, 100))
        }
        repo = GitRemote.create(workdir)
        first = repo.commit(
            {"mesh/gateway.yaml": GATEWAY.format(port=port), "mesh/reviews.yaml": files["100/0"],
             "mesh/rolloutpolicy.yaml": POLICY},
            "reviews on v1, under a RolloutPolicy",
        )  # fmt: skip
        api, xds_port = stack.enter_context(
            daemon(remote=repo.bare, state=workdir / "state", log=workdir / "daemon.log", secret_file=secret_file)
        )
        stack.enter_context(gateways(args.gateways, xds_port=xds_port, workdir=workdir))
        wait_synced(api, first, args.gateways)
        v2.fail(status=500, fraction=args.fail)
        results = []
        for rep in range(args.reps):
            result = bad_rollout(repo=repo, api=api, files=files, port=port, args=args)
            print(
                f"  rollout {rep + 1}: rolled back {(result.stable_acked - result.acked) * 1000:.0f} ms after the "
                f"step's ACK, {result.failed} of {result.requests} requests failed — {result.message}",
                flush=True,
            )
            results.append(result)
    return results


def report(args: argparse.Namespace, results: list[BadRollout]) -> None:
    print(
        f"\ntime to roll back: {args.gateways} Envoy gateways, {args.rate:g} req/s, v2 answers "
        f"{args.fail:.0%} with 500, policy steps [20, 50] interval 2s minRequests 20 error-rate ≤ 1%, "
        f"{len(results)} bad rollouts\n"
    )
    rows: list[tuple[str, list[float], str]] = [
        ("step ACKed → rollback decided", [(r.decided - r.acked) * 1000 for r in results], "ms"),
        ("rollback decided → all ACKed", [(r.stable_acked - r.decided) * 1000 for r in results], "ms"),
        ("step ACKed → all ACKed stable", [(r.stable_acked - r.acked) * 1000 for r in results], "ms"),
        ("v2 requests judged", [float(r.canary_requests) for r in results], ""),
        ("failed requests (client)", [float(r.failed) for r in results], ""),
        ("requests sent (push → ACKed)", [float(r.requests) for r in results], ""),
    ]
    print(f"{'':<40}{'min':>8}{'median':>8}{'max':>8}")
    for name, values, unit in rows:
        label = f"{name} ({unit})" if unit else name
        print(f"{label:<40}{min(values):>8.0f}{statistics.median(values):>8.0f}{max(values):>8.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="bad rollouts to time")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second through the gateways")
    parser.add_argument("--fail", type=float, default=0.3, help="share of v2's answers that are 500")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repo and logs")
    args = parser.parse_args()
    if args.reps < 1 or args.gateways < 1 or args.rate <= 0 or not 0 < args.fail <= 1:
        parser.error("--reps and --gateways must be positive, --rate > 0, --fail within (0, 1]")
    in_workdir("reconciler-rollout-bench-", keep=args.keep, body=lambda workdir: report(args, run(args, workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
