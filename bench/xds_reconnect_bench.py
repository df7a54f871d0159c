"""Seconds a real Envoy takes to reopen its ADS stream after the daemon's xDS server comes back from an outage.

The scenario of ``tests/translate/test_translate_bootstrap.py`` (``tests/support/xds_outage.py``): Envoy
connects, the server stops (every stream ends, as when the daemon is killed), the port stays dark for
``--outage`` seconds, a fresh server starts on the same port; measured from that start until the server
sees Envoy's new stream. Two bootstraps: as ``reconciler bootstrap`` writes it (reconnect backoff
0.25 s doubling to 5 s) and the same without ``retry_policy`` (Envoy's default, 0.5 s doubling to 30 s).
The backoff is jittered: the spread over repetitions is the point, so look at the max as much as the median.

Not a test: prints a table. Everything listens on 127.0.0.1 and every Envoy is stopped on exit.

    .venv/bin/python bench/xds_reconnect_bench.py --reps 5 --outage 8
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# tests/support is not a package: put it on the path, as the other benches do.
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))

from xds_outage import OUTAGE_SECONDS, PROXY, reconnect_delay  # noqa: E402

from reconciler.harness.envoy import EnvoyProcess  # noqa: E402
from reconciler.translate.bootstrap import build_bootstrap  # noqa: E402


def _shipped(port: int) -> dict[str, Any]:
    return build_bootstrap(proxy=PROXY, xds_host="127.0.0.1", xds_port=port, admin_port=0)


def _envoy_default(port: int) -> dict[str, Any]:
    bootstrap = _shipped(port)
    for service in bootstrap["dynamic_resources"]["ads_config"]["grpc_services"]:
        del service["envoy_grpc"]["retry_policy"]
    return bootstrap


def _measure(bootstrap_for: Callable[[int], Mapping[str, Any]], *, reps: int, outage: float) -> list[float]:
    delays = []
    with tempfile.TemporaryDirectory(prefix="xds-reconnect-bench-") as workdir:
        for rep in range(reps):
            with contextlib.ExitStack() as envoys:
                start = _starter(envoys, Path(workdir) / f"envoy-{rep}")
                delays.append(reconnect_delay(start, bootstrap_for, outage=outage))
    return delays


def _starter(envoys: contextlib.ExitStack, workdir: Path) -> Callable[[Mapping[str, Any]], EnvoyProcess]:
    """Starts an Envoy (not waiting for LIVE: nothing is published) that ``envoys`` stops."""

    def start(bootstrap: Mapping[str, Any]) -> EnvoyProcess:
        return envoys.enter_context(EnvoyProcess(bootstrap, workdir=workdir, wait_live=False))

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="outages per bootstrap (default: %(default)s)")
    parser.add_argument("--outage", type=float, default=OUTAGE_SECONDS, help="seconds dark (default: %(default)g)")
    args = parser.parse_args()
    print(f"outage {args.outage:g} s, {args.reps} repetitions each: restart -> Envoy's new ADS stream (s)")
    print(f"{'bootstrap':<42} {'median':>7} {'max':>7}  all")
    for name, bootstrap_for in (
        ("reconciler bootstrap (0.25 s .. 5 s)", _shipped),
        ("without retry_policy (Envoy: 0.5 s .. 30 s)", _envoy_default),
    ):
        delays = _measure(bootstrap_for, reps=args.reps, outage=args.outage)
        listed = " ".join(f"{delay:.1f}" for delay in delays)
        print(f"{name:<42} {statistics.median(delays):>7.2f} {max(delays):>7.2f}  {listed}", flush=True)


if __name__ == "__main__":
    main()
