"""Soak: real Envoy gateways under steady traffic while a commit lands every few seconds, for minutes.

A real git remote, the daemon as a child process (``reconciler run``), two Envoy gateways sharing
one listener port (SO_REUSEPORT), two upstream versions that never fail, and steady traffic through
the gateways the whole time. Every ``--commit-every`` seconds a commit moves the weights (100/0 → 80/20
→ 50/50 → 20/80 → back) and ``POST /api/v1/sync`` asks for it; the bench records whether each
commit was served and ACKed by both gateways before the next one. Every config routes to healthy
upstreams, so any failed request is the daemon's (or Envoy's) fault, not the config's.

    .venv/bin/python bench/soak_bench.py                          # 10 minutes, a commit every 3 s
    .venv/bin/python bench/soak_bench.py --minutes 1 --commit-every 2

Prints a table: requests and failures, commits and how many were synced, the daemon's RSS (from
/proc) after the first sync and at the end, and the gateways'. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import tempfile
import time
from pathlib import Path

from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.harness.upstream import UpstreamServer
from reconciler.translate.bootstrap import build_bootstrap
from reconciler.translate.proxy import ProxyIdentity, ProxyRole

REPO_ROOT = Path(__file__).resolve().parent.parent
# Driven like the end-to-end tests drive it: their helpers are not a package, put them on the path.
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e_daemon"))
from daemon_harness import HOST, Daemon, mesh_files  # noqa: E402
from gitrepo import GitRemote  # noqa: E402
from steady_traffic import Traffic  # noqa: E402

WEIGHTS = ((100, 0), (80, 20), (50, 50), (20, 80), (50, 50), (80, 20))
GATEWAYS = ("soak-gw-1", "soak-gw-2")


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--commit-every", type=float, default=3.0, metavar="SECONDS")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        root = Path(scratch)
        v1, v2 = UpstreamServer("v1").start(), UpstreamServer("v2").start()
        gateway_port = free_port()
        repo = GitRemote.create(root / "git")

        def files(w1: int, w2: int) -> dict[str, str]:
            return mesh_files(v1_port=v1.port, v2_port=v2.port, gateway_port=gateway_port, v1=w1, v2=w2)

        first = repo.commit(files(100, 0), "soak: start")
        daemon = Daemon(repo=repo.url, state_dir=root / "state", log_path=root / "daemon.log", poll_interval="60s")
        proxies: list[EnvoyProcess] = []
        traffic = Traffic(gateway_port, authority=HOST, bursts=10**7)  # until stopped
        try:
            daemon.start()
            for node_id in GATEWAYS:
                identity = ProxyIdentity(node_id=node_id, labels={"istio": "ingressgateway"}, role=ProxyRole.GATEWAY)
                bootstrap = build_bootstrap(
                    proxy=identity, xds_host="127.0.0.1", xds_port=daemon.xds_port, admin_port=0
                )
                proxies.append(EnvoyProcess(bootstrap, workdir=root / node_id).start())
            daemon.wait_synced(first, proxies=len(GATEWAYS), timeout=60)
            rss_start = rss_mib(daemon.pid)
            envoy_start = [rss_mib(proxy.pid) for proxy in proxies]
            traffic.start()
            started = time.monotonic()
            commits = synced = 0
            for w1, w2 in itertools.cycle(WEIGHTS[1:] + WEIGHTS[:1]):
                if time.monotonic() - started >= args.minutes * 60:
                    break
                tick = time.monotonic()
                sha = repo.commit(files(w1, w2), f"soak: {w1}/{w2}")
                commits += 1
                daemon.sync()
                try:
                    daemon.wait_synced(sha, proxies=len(GATEWAYS), timeout=max(args.commit_every * 5, 30))
                    synced += 1
                except AssertionError as error:
                    print(f"commit {commits} ({sha[:12]}) not synced: {str(error)[:200]}", file=sys.stderr)
                time.sleep(max(0.0, args.commit_every - (time.monotonic() - tick)))
            elapsed = time.monotonic() - started
            throughout = traffic.is_alive()
            rss_end = rss_mib(daemon.pid)
            envoy_end = [rss_mib(proxy.pid) for proxy in proxies]
        finally:
            traffic.stop()
            for proxy in proxies:
                proxy.stop()
            daemon.stop()
            v1.stop()
            v2.stop()

    failed = sum(count for status, count in traffic.by_status.items() if status != 200) + sum(traffic.errors.values())
    rows = [
        ("machine", f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"),
        ("duration", f"{elapsed:.0f} s, a commit every {args.commit_every:g} s"),
        ("commits / synced by both gateways", f"{commits} / {synced}"),
        ("requests answered", f"{traffic.responses:,} (traffic ran to the end: {'yes' if throughout else 'NO'})"),
        ("failed requests (non-200 or no answer)", f"{failed}"),
        ("by status", dict(sorted(traffic.by_status.items()))),
        ("errors", dict(traffic.errors) or "none"),
        ("Envoy local replies", dict(traffic.local_replies) or "none"),
        ("daemon RSS after first sync → end", f"{rss_start:.1f} → {rss_end:.1f} MiB"),
        (
            "gateways' RSS start → end",
            ", ".join(f"{a:.1f} → {b:.1f} MiB" for a, b in zip(envoy_start, envoy_end, strict=True)),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0 if failed == 0 and synced == commits and throughout else 1


if __name__ == "__main__":
    sys.exit(main())
