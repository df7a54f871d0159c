"""Benchmark: what one connected Envoy sidecar costs the daemon in memory.

The real daemon (``reconciler run``, a child process) follows a real local git repo of N
services (default 1,000: ``xds_ack_bench``'s mesh, a STATIC ServiceEntry with three
endpoints, a DestinationRule with three subsets and a VirtualService per service, so each
sidecar gets 4,000 clusters and endpoint sets and one route configuration with N virtual
hosts). Real Envoy sidecars (``--concurrency 1``) connect with the product's bootstrap
(stats streamed to the daemon every ``--stats-flush`` seconds, as deployed). For each case
the daemon is started fresh, one sidecar connects, and once it has ACKed everything and
``--settle`` seconds passed the daemon's RSS is read from ``/proc``; then the fleet grows to
``--proxies`` (10 at a time, each batch ACKed before the next) and RSS is read again after
the same settle. Per sidecar = (RSS with N - RSS with 1) / (N - 1). The daemon hands freed
heap back to the OS once xDS events go quiet (``XdsSettings.heap_trim_quiet``, 2 s, well inside
the settle), so both reads are what it holds; before it did, heap freed after the first sidecar
absorbed part of the fleet's growth and identical sidecars could come out at zero or below.

Cases: state of the world and Delta xDS (``reconciler bootstrap --delta``), each with
identical sidecars (one outbound port for all, as real sidecars share 15001: one shape) and
distinct ones (a port each: a translation per proxy).

    .venv/bin/python bench/proxy_memory_bench.py                          # 1,000 services, 1 → 20 sidecars
    .venv/bin/python bench/proxy_memory_bench.py --services 200 --proxies 5 --modes sotw --shapes identical
    .venv/bin/python bench/proxy_memory_bench.py --tracemalloc 1 --modes sotw --shapes identical

``--tracemalloc FRAMES`` runs the daemon under ``tracemalloc`` (``PYTHONTRACEMALLOC``, and a
``sitecustomize`` in the work directory that writes a snapshot on SIGUSR1) and prints the
top lines of the snapshot difference between 1 and N sidecars: what Python objects the
extra sidecars hold. RSS is then inflated by tracemalloc's own bookkeeping: read the table
from a run without it.

Not a test: prints a table (markdown). Everything listens on 127.0.0.1 (sidecar listeners
bind 0.0.0.0; no request is sent) and every process is stopped on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from _fleet import memory_mib, run_in_workdir, start_in_batches, wait_until

# GitRemote is tests/support's (repos driven as the e2e tests drive theirs); push_to_ack_bench puts it on the path.
from push_to_ack_bench import GitRemote, daemon, wait_synced
from xds_ack_bench import service_file

from reconciler.harness.envoy import EnvoyProcess, free_port
from reconciler.translate import ProxyIdentity, ProxyRole
from reconciler.translate.bootstrap import build_bootstrap

MODES = ("sotw", "delta")
SHAPES = ("identical", "distinct")
#: Generous: 10 Envoys at a time taking 4,000 clusters each on a shared 2-core machine.
SYNC_TIMEOUT = 300.0
SNAPSHOT_TIMEOUT = 300.0
#: RSS is read this many times, a second apart, after the settle; the median is kept.
SAMPLES = 5

_SNAPSHOT_HOOK = """\
# Written by bench/proxy_memory_bench.py: a tracemalloc snapshot on SIGUSR1, into $BENCH_SNAPSHOT_DIR.
import os, signal, tracemalloc

def _dump(signum, frame):
    directory = os.environ["BENCH_SNAPSHOT_DIR"]
    path = os.path.join(directory, f"{len(os.listdir(directory)):03d}.snapshot")
    tracemalloc.take_snapshot().dump(path + ".partial")
    os.replace(path + ".partial", path)

if tracemalloc.is_tracing():
    signal.signal(signal.SIGUSR1, _dump)
"""


@dataclass
class Row:
    mode: str
    shape: str
    proxies: int
    rss_one: float
    rss_many: float

    @property
    def per_proxy_kib(self) -> float:
        return (self.rss_many - self.rss_one) * 1024 / (self.proxies - 1)


def sidecar(number: int, *, port: int) -> ProxyIdentity:
    return ProxyIdentity(
        node_id=f"sidecar-{number}", labels={"app": "bench-client"}, role=ProxyRole.SIDECAR, outbound_port=port
    )


def settled_rss(pid: int, *, settle: float) -> float:
    """The daemon's RSS in MiB: the median of a few reads after ``settle`` seconds."""
    time.sleep(settle)
    samples = []
    for _ in range(SAMPLES):
        samples.append(memory_mib(pid)[0])
        time.sleep(1.0)
    return statistics.median(samples)


class Snapshots:
    """tracemalloc snapshots of the daemon, taken on demand (SIGUSR1, see ``_SNAPSHOT_HOOK``)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def take(self, pid: int) -> tracemalloc.Snapshot:
        before = len(list(self._directory.glob("*.snapshot")))
        os.kill(pid, signal.SIGUSR1)
        wait_until(
            lambda: len(list(self._directory.glob("*.snapshot"))) > before,
            timeout=SNAPSHOT_TIMEOUT,
            what="the daemon's tracemalloc snapshot",
        )
        return tracemalloc.Snapshot.load(str(sorted(self._directory.glob("*.snapshot"))[-1]))


@contextlib.contextmanager
def traced(workdir: Path, frames: int) -> Iterator[Snapshots | None]:
    """With ``frames``: the environment the daemon inherits runs it under tracemalloc with the snapshot hook."""
    if not frames:
        yield None
        return
    hook, snapshots = workdir / "hook", workdir / "snapshots"
    hook.mkdir()
    snapshots.mkdir()
    (hook / "sitecustomize.py").write_text(_SNAPSHOT_HOOK)
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "PYTHONTRACEMALLOC", "BENCH_SNAPSHOT_DIR")}
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(hook), saved["PYTHONPATH"]])),
        PYTHONTRACEMALLOC=str(frames),
        BENCH_SNAPSHOT_DIR=str(snapshots),
    )
    try:
        yield Snapshots(snapshots)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def print_diff(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, *, proxies: int, frames: int) -> None:
    key = "traceback" if frames > 1 else "lineno"
    stats = after.compare_to(before, key)
    total = sum(stat.size_diff for stat in stats)
    print(
        f"\ntracemalloc, 1 → {proxies} sidecars: {total / 1024 / (proxies - 1):,.1f} KiB of Python objects per sidecar"
    )
    for stat in stats[:25]:
        where = stat.traceback.format(limit=frames)
        print(f"  {stat.size_diff / 1024 / (proxies - 1):>9,.1f} KiB/sidecar {stat.count_diff:>+8,} blocks  {where[0]}")
        for line in where[1:]:
            print(f"  {'':>49}{line}")


def measure(
    *,
    mode: str,
    shape: str,
    args: argparse.Namespace,
    workdir: Path,
    remote: Path,
    sha: str,
    snapshots: Snapshots | None,
) -> Row:
    secret = workdir / "secret"
    secret.write_bytes(b"unused")
    shared_port = free_port()
    envoys: list[EnvoyProcess] = []
    running = daemon(remote=remote, state=workdir / "state", log=workdir / "daemon.log", secret_file=secret)
    with running as (api, xds, pid), contextlib.ExitStack() as stack:

        def start(number: int) -> EnvoyProcess:
            identity = sidecar(number, port=shared_port if shape == "identical" else free_port())
            bootstrap = build_bootstrap(
                proxy=identity,
                xds_host="127.0.0.1",
                xds_port=xds,
                admin_port=0,
                delta=mode == "delta",
                stats_flush_interval=args.stats_flush,
            )
            envoy = EnvoyProcess(bootstrap, workdir=workdir / f"envoy-{number}", log_level="error", wait_live=False)
            return stack.enter_context(envoy)

        def synced(_: Sequence[EnvoyProcess]) -> None:
            wait_synced(api, sha, len(envoys), timeout=SYNC_TIMEOUT)

        start_in_batches(envoys, total=1, start=start, synced=synced)
        rss_one = settled_rss(pid, settle=args.settle)
        first = snapshots.take(pid) if snapshots else None
        start_in_batches(envoys, total=args.proxies, start=start, synced=synced)
        rss_many = settled_rss(pid, settle=args.settle)
        if snapshots and first:
            print_diff(first, snapshots.take(pid), proxies=args.proxies, frames=args.tracemalloc)
    row = Row(mode, shape, args.proxies, rss_one, rss_many)
    print(
        f"{mode:>5} {shape:>9}: RSS {rss_one:.1f} MiB with 1, {rss_many:.1f} MiB with {args.proxies}: "
        f"{row.per_proxy_kib:,.0f} KiB per sidecar",
        flush=True,
    )
    return row


def run(args: argparse.Namespace, workdir: Path) -> None:
    repo = GitRemote.create(workdir)
    files = {f"mesh/services/svc-{index:04d}.yaml": service_file(index) for index in range(args.services)}
    sha = repo.commit(files, f"{args.services} services")
    load_before = os.getloadavg()
    rows = []
    with traced(workdir, args.tracemalloc) as snapshots:
        for mode in args.modes:
            for shape in args.shapes:
                rundir = workdir / f"{mode}-{shape}"
                rundir.mkdir()
                rows.append(
                    measure(
                        mode=mode,
                        shape=shape,
                        args=args,
                        workdir=rundir,
                        remote=repo.bare,
                        sha=sha,
                        snapshots=snapshots,
                    )
                )
    load_after = os.getloadavg()
    print(
        f"\n{args.services:,} services ({4 * args.services:,} clusters per sidecar); daemon RSS after every sidecar "
        f"ACKed and a {args.settle:g} s settle (median of {SAMPLES} reads); stats flush every {args.stats_flush:g} s"
        + (f"; under tracemalloc ({args.tracemalloc} frames): RSS inflated" if args.tracemalloc else "")
        + "\n"
    )
    print(
        f"| xDS | sidecars | RSS, 1 sidecar MiB | RSS, {args.proxies} sidecars MiB | per sidecar KiB | per sidecar MB |"
    )
    print("|---|---|--:|--:|--:|--:|")
    for row in rows:
        print(
            f"| {row.mode} | {row.shape} | {row.rss_one:.1f} | {row.rss_many:.1f} | {row.per_proxy_kib:,.0f} "
            f"| {row.per_proxy_kib * 1024 / 1e6:.2f} |"
        )
    print(
        f"\nload average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.1f}' for v in load_after)} ({os.cpu_count()} CPUs)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000, help="services in the repo (default 1000)")
    parser.add_argument("--proxies", type=int, default=20, help="sidecars in the second reading (default 20)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="xDS variants (default both)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES), help="sidecar shapes (both)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the last ACK before reading RSS")
    parser.add_argument(
        "--stats-flush", type=float, default=1.0, help="sidecars' stats flush interval, s (default 1, as deployed)"
    )
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="trace the daemon (see above)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (repo, logs)")
    args = parser.parse_args(argv)
    if args.services < 1 or args.proxies < 2 or args.settle < 0 or args.tracemalloc < 0:
        parser.error("--services must be positive, --proxies at least 2, --settle and --tracemalloc not negative")
    return run_in_workdir("reconciler-memory-bench-", keep=args.keep, body=lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
