"""Benchmark: one daemon's ADS server with a thousand concurrent streams.

The real ADS server and cache run in this process on their own event loop; simulated
proxies run in worker processes (grpc.aio clients, each stream on its own HTTP/2
connection, as each Envoy has): each subscribes like an Envoy sidecar (CDS, then EDS for
its clusters and LDS, then RDS for its listener's routes) and ACKs every response. The
mesh is ``xds_ack_bench``'s generated one (N services, 4 clusters and 4 endpoint sets
each); every proxy is a sidecar of the same shape, so one translation serves them all.

Each repetition changes one service's weights (or endpoints, ``--change``), translates the new config in a worker
thread (as the daemon does) and times ``publish`` → every stream ACKed it
(:meth:`~reconciler.xds.SnapshotCache.wait_for_acks`), with the server process's CPU
time over the same span; the first sync's server CPU too. Memory per stream: the server's RSS
with every stream synced minus its RSS with one, over the rest; again after the repetitions, once
freed heap is returned to the OS (``malloc_trim``, as the daemon does when xDS is quiet).

    .venv/bin/python bench/xds_streams_bench.py                       # 1,000 streams, 1,000 services
    .venv/bin/python bench/xds_streams_bench.py --streams 200 --services 200 --reps 3 --delta

``--envoys N`` connects N real Envoy sidecars (``--concurrency 1``, the same shape as the
simulated ones, all on one outbound port) once the simulated streams are synced, and a
repetition then waits for the Envoys' ACKs too: the issue's "1,000 streams plus 50 real
Envoys", timed together. The Envoys' CPU over the same span is reported; RSS per stream is
measured before they connect (it is the simulated streams').

    .venv/bin/python bench/xds_streams_bench.py --envoys 50

``--eds-acks`` changes what the simulated proxies' EDS ACKs carry, to tell what a state-of-the-world
stream's memory comes from: ``names`` (as Envoy: every subscribed name, ~140 KB at 1,000 services),
``padded`` (no names, the same size in an unknown field the server skips), ``bare`` (no names: a few
bytes). Without names the stream is subscribed to no endpoints after its first ACK, so only the RSS
column means anything then (weight changes are not pushed to it: use ``--reps 1``).

    .venv/bin/python bench/xds_streams_bench.py --reps 1 --eds-acks padded

``--change endpoints`` moves svc-0's endpoints instead of its weights: an EDS push, which every
state-of-the-world proxy ACKs naming all its clusters (the requests an idle stream read last).

    .venv/bin/python bench/xds_streams_bench.py --reps 3 --change endpoints

Not a test: prints a table. Everything listens on 127.0.0.1; workers and Envoys are stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any, TypeAlias

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from reconciler.cli.logs import configure_logging
from reconciler.engine.heap import libc_trim
from reconciler.engine.snapshots import ConfigSnapshots
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole
from reconciler.translate.protos import varint
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from xds_ack_bench import (
    START_BATCH,
    Ads,
    cpu_ms,
    envoys,
    listener_port,
    load,
    percentile,
    service_file,
    start_envoys,
    with_weight,
)

SYNC_TIMEOUT = 600.0
WORKERS = 2
LABELS = {"app": "bench-client"}


def identity(node_id: str, *, port: int) -> ProxyIdentity:
    """A sidecar of the one shape every proxy here has (``port``: the outbound port they all share)."""
    return ProxyIdentity(node_id=node_id, labels=LABELS, role=ProxyRole.SIDECAR, outbound_port=port)


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def with_endpoint_port(base: MeshConfig, port: int) -> MeshConfig:
    """``base`` with svc-0's endpoints on ``port``: its endpoint sets change, nothing else (an EDS push)."""
    changed = load({"svc-0.yaml": service_file(0).replace("{http: 9}", f"{{http: {port}}}")}).service_entries[0]
    entries = tuple(changed if entry.name == changed.name else entry for entry in base.service_entries)
    return dataclasses.replace(base, service_entries=entries)


#: What a repetition changes (``--change``): svc-0's route weights (an RDS push) or its endpoints (EDS).
CHANGES = ("weights", "endpoints")

#: What a simulated proxy's EDS ACKs carry (``--eds-acks``).
EDS_ACKS = ("names", "padded", "bare")


async def _proxy(
    address: str, node_id: str, names: dict[str, list[str]], *, port: int, delta: bool, eds_acks: str
) -> None:
    """One simulated Envoy: subscribe like a sidecar and ACK everything, until cancelled."""
    node = base_pb2.Node(id=node_id)
    metadata = struct_pb2.Struct()
    metadata.update(identity(node_id, port=port).to_metadata())
    node.metadata.CopyFrom(metadata)
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 1 << 30)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        await _subscribe_and_ack(stub, node, names, delta=delta, eds_acks=eds_acks)


#: What Envoy asks for once a type's first response is in: endpoints and listeners after clusters, routes after.
_FOLLOW = {CLUSTER: (ENDPOINT, LISTENER), LISTENER: (ROUTE,)}

_Request: TypeAlias = discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest


async def _subscribe_and_ack(
    stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub,
    node: base_pb2.Node,
    names: dict[str, list[str]],
    *,
    delta: bool,
    eds_acks: str = "names",
) -> None:
    # An unknown length-delimited field (number 1000) as long as the names: the same bytes on the wire.
    size = len(discovery_pb2.DiscoveryRequest(resource_names=names.get(ENDPOINT)).SerializeToString())
    padding = varint(1000 << 3 | 2) + varint(size) + b"x" * size if eds_acks == "padded" else b""

    def subscribe(type_url: str) -> _Request:
        if delta:
            return discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=names.get(type_url))
        return discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names.get(type_url))

    def ack(response: Any) -> _Request:
        if delta:
            return discovery_pb2.DeltaDiscoveryRequest(type_url=response.type_url, response_nonce=response.nonce)
        bare = eds_acks != "names" and response.type_url == ENDPOINT
        request = discovery_pb2.DiscoveryRequest(
            type_url=response.type_url,
            version_info=response.version_info,
            response_nonce=response.nonce,
            resource_names=None if bare else names.get(response.type_url),
        )
        return discovery_pb2.DiscoveryRequest.FromString(request.SerializeToString() + padding) if bare else request

    call = stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
    first = subscribe(CLUSTER)
    first.node.CopyFrom(node)
    await call.write(first)
    subscribed = {CLUSTER}
    async for response in call:
        await call.write(ack(response))
        for next_type in _FOLLOW.get(response.type_url, ()):
            if next_type not in subscribed:
                subscribed.add(next_type)
                await call.write(subscribe(next_type))


def _worker(
    address: str, node_ids: list[str], names: dict[str, list[str]], port: int, *, delta: bool, eds_acks: str
) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # gRPC's C core reports every stream cancelled at exit; the table is what matters.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)

    async def main() -> None:
        results = await asyncio.gather(
            *(_proxy(address, node_id, names, port=port, delta=delta, eds_acks=eds_acks) for node_id in node_ids),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, Exception)]
        if failures:
            print(f"{len(failures)} simulated proxies failed, first: {failures[0]!r}", file=sys.stdout, flush=True)

    asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000, help="generated services (default 1000)")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent ADS streams (default 1000)")
    parser.add_argument("--reps", type=int, default=7, help="weight changes measured (default 7)")
    parser.add_argument("--delta", action="store_true", help="the proxies use incremental (delta) xDS")
    parser.add_argument(
        "--envoys", type=int, default=0, help="real Envoy sidecars connected next to the streams (default 0)"
    )
    parser.add_argument(
        "--eds-acks",
        choices=EDS_ACKS,
        default="names",
        help="what state-of-the-world EDS ACKs carry: names (as Envoy), padded (no names, same size), bare",
    )
    parser.add_argument(
        "--change",
        choices=CHANGES,
        default="weights",
        help="what each repetition changes: svc-0's route weights (RDS push) or its endpoints (EDS push)",
    )
    args = parser.parse_args(argv)
    if args.services < 1 or args.reps < 1 or args.streams < 2 or args.envoys < 0:
        parser.error("--services and --reps must be positive, --streams at least 2, --envoys not negative")
    configure_logging(json=False, level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    base = load({f"svc-{i}.yaml": service_file(i) for i in range(args.services)})
    # Free now; the real Envoys (if any) bind it together with SO_REUSEPORT, the simulated ones never do.
    port = listener_port(set())
    probe = identity("probe", port=port)
    snapshots = ConfigSnapshots(config=base)
    snapshot = snapshots.snapshot_for(probe)
    names = {ENDPOINT: sorted(snapshot.resources(ENDPOINT)), ROUTE: sorted(snapshot.resources(ROUTE))}
    counts = {url.rsplit(".", 1)[-1]: len(resource_set.resources) for url, resource_set in snapshot.sets.items()}
    mode = "delta" if args.delta else "state of the world"
    print(f"{args.services} services; one sidecar snapshot: {counts}; {args.streams} streams, {mode}", flush=True)

    node_ids = [f"bench-proxy-{i}" for i in range(args.streams)]
    context = multiprocessing.get_context("spawn")
    workers: list[multiprocessing.process.BaseProcess] = []
    ads = Ads()
    stack = contextlib.ExitStack()
    try:
        started_envoys = stack.enter_context(envoys())  # every Envoy stopped on the way out
        generation = ads.publish(snapshots)

        def start(ids: list[str]) -> None:
            worker = context.Process(
                target=_worker,
                args=(ads.server.address, ids, names, port),
                kwargs={"delta": args.delta, "eds_acks": args.eds_acks},
                daemon=True,
            )
            worker.start()
            workers.append(worker)

        def synced(count: int) -> float:
            began = time.perf_counter()
            if not ads.wait_synced(count, generation, timeout=SYNC_TIMEOUT):
                raise SystemExit(f"{count} streams did not sync within {SYNC_TIMEOUT:g}s")
            return time.perf_counter() - began

        start(node_ids[:1])
        synced(1)
        rss_one = rss_kib()
        rest = node_ids[1:]
        for index in range(WORKERS):
            start(rest[index::WORKERS])
        sync_cpu = time.process_time()
        sync_s = synced(args.streams)
        sync_cpu_s = time.process_time() - sync_cpu
        rss_all = rss_kib()
        print(f"{args.streams} streams connected and synced in {sync_s:.1f}s", flush=True)
        per_stream_kib = (rss_all - rss_one) / (args.streams - 1)
        if args.envoys:
            began = time.perf_counter()
            start_envoys(
                started_envoys,
                total=args.envoys,
                ads=ads,
                generation=generation,
                ports=set(),
                shared_port=port,
                batch=START_BATCH,
                delta=args.delta,
                others=args.streams,
            )
            print(f"{args.envoys} Envoys connected and synced in {time.perf_counter() - began:.1f}s", flush=True)

        totals, cpus, envoy_cpus = [], [], []
        weight = 10
        for rep in range(args.reps):
            weight = 10 + (weight - 9) % 80
            config = with_weight(base, weight) if args.change == "weights" else with_endpoint_port(base, 10 + rep)
            changed = ConfigSnapshots(config=config)
            changed.translate_all([probe])  # the daemon translates before publishing, off the loop
            envoy_cpu = cpu_ms(started_envoys)
            ack_ms, cpu, acked = ads.publish_and_wait(changed)
            envoy_cpus.append(cpu_ms(started_envoys) - envoy_cpu)
            cpus.append(cpu)
            if not acked:
                raise SystemExit("not every proxy ACKed the weight change")
            totals.append(ack_ms)
        # As the daemon does once xDS is quiet (engine.heap): what stays is live, not the burst's freed heap.
        if (trim := libc_trim()) is not None:
            trim()
        after_kib = (rss_kib() - rss_one) / (args.streams - 1)
    finally:
        stack.close()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=10.0)
        ads.close()

    print()
    print(
        f"{args.streams} ADS streams and {args.envoys} real Envoys ({mode}), {args.services} services; "
        f"a change of svc-0's {args.change}, publish → all ACKed:"
    )
    print()
    print(
        "| streams | Envoys | reps | p50 ms | p99 ms | max ms | server CPU p50 ms | Envoys' CPU p50 ms "
        "| RSS per stream KiB | after the changes, trimmed | first sync s | first sync server CPU s |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    print(
        f"| {args.streams} | {args.envoys} | {len(totals)} | {statistics.median(totals):.0f} "
        f"| {percentile(totals, 99):.0f} | {max(totals):.0f} | {statistics.median(cpus):.0f} "
        f"| {statistics.median(envoy_cpus):.0f} | {per_stream_kib:.0f} | {after_kib:.0f} "
        f"| {sync_s:.1f} | {sync_cpu_s:.1f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
