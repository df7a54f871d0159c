"""Benchmark: translation time for one sidecar and one gateway proxy at 1,000 and 10,000 services.

Each service has a STATIC ServiceEntry (three endpoints, one per version), a
DestinationRule with three subsets and a VirtualService splitting 80/15/5 across them;
every tenth VirtualService is also bound to an ingress Gateway. The config is built in
memory through the real loader (YAML → validated model), then ``translate`` is timed
alone (including building the service registry from the ServiceEntries): best of
``--repeat`` runs, wall-clock and CPU seconds, plus the snapshot's size. Targets are
checked against CPU time, which a busy machine (parallel test runs) inflates far less
than wall-clock time.

    .venv/bin/python bench/translate_bench.py                  # the table, both sizes
    .venv/bin/python bench/translate_bench.py --sizes 1000 --profile   # + cProfile top 25
    .venv/bin/python bench/translate_bench.py --change         # + reuse across shapes and one-host changes
    .venv/bin/python bench/translate_bench.py --change --sizes 10000 --cases cold shape   # only those rows

Targets: 1,000 services < 0.5 s, 10,000 services < 2 s (per proxy; issue #12, was 5 s).

``--change`` times translation with a :class:`TranslationCache` kept between calls (as the daemon
keeps one between passes), each row's cache warmed by the translation before it and not timed:

* ``cold``: the first translation into an empty cache (what the cache costs when nothing is reused), as
  the daemon's first pass runs it: with automatic garbage collection paused (the daemon collects and
  freezes the heap after that pass: :class:`~reconciler.engine.heap.StartupHeap`);
* ``shape``: the same config for another sidecar (another outbound port), after the first;
* ``weight``: after a rollout step changed one VirtualService's weights (the other objects are the same);
* ``endpoint``: after one ServiceEntry's endpoint moved (an endpoint-only change);
* ``reload``: the weight change of a config loaded again from YAML (equal objects, none the same; held to the
  full translation's target: the daemon's decode cache keeps unchanged files' objects, so it never takes this path);
* ``host``: after a service (ServiceEntry, DestinationRule, VirtualService) was added;
* ``subset``: after one DestinationRule got a subset more;
* ``removed``: after the service in the middle (ServiceEntry, DestinationRule, VirtualService) was removed;
* ``vsremoved``: after the middle service's VirtualService was removed (the service stays, with its default route).

The one-host rows take the patch path (:mod:`reconciler.translate.patch`) where it applies.

Targets for ``--change`` (issue #12): a full translation of 10,000 services < 2 s, a one-host change < 20 ms.

``--trim`` hands the C heap's free pages back before each timed run (``malloc_trim``, what the daemon's
``HeapTrimmer`` does after 2 s without xDS events): a change after a quiet spell pays the page faults of the
memory it writes; without it, a run reuses the pages the warm-up freed.

Every run uses the daemon's garbage-collector thresholds (``GC_THRESHOLDS``, set by ``reconciler run``
and ``serve``), so the figures are what the daemon pays; ``--default-gc`` keeps CPython's.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import pstats
import sys
import time
from collections.abc import Callable, Sequence

from reconciler.engine.heap import StartupHeap, libc_trim
from reconciler.engine.settings import GC_THRESHOLDS
from reconciler.loader import load_files
from reconciler.model.common import Weight
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole, translate
from reconciler.translate.envoy_check import PassCache
from reconciler.translate.memo import TranslationCache
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE

TARGETS = {1_000: 0.5, 10_000: 2.0}
#: The ``--change`` rows, in the order they are printed.
CHANGE_CASES = ("cold", "shape", "weight", "endpoint", "reload", "host", "subset", "removed", "vsremoved")
#: ``--change`` targets, CPU seconds: a full translation, and a translation after a one-host change.
CHANGE_TARGETS = {"full": 2.0, "change": 0.020}

_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: ingress
  namespace: bench
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"""

_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc{i}
  namespace: bench
spec:
  hosts: [svc{i}]
  location: MESH_INTERNAL
  ports:
  - {{number: 8080, name: http, protocol: HTTP}}
  resolution: STATIC
  endpoints:
  - {{address: 10.{a}.{b}.1, labels: {{version: v1}}}}
  - {{address: 10.{a}.{b}.2, labels: {{version: v2}}}}
  - {{address: 10.{a}.{b}.3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc{i}
  namespace: bench
spec:
  host: svc{i}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 100}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc{i}
  namespace: bench
spec:
  hosts: [svc{i}{extra_host}]
  gateways: [mesh{gateway}]
  http:
  - match:
    - headers:
        end-user: {{exact: tester}}
    route:
    - destination: {{host: svc{i}, subset: v3}}
  - route:
    - destination: {{host: svc{i}, subset: v1}}
      weight: 80
    - destination: {{host: svc{i}, subset: v2}}
      weight: 15
    - destination: {{host: svc{i}, subset: v3}}
      weight: 5
    timeout: 2s
"""


def build_config(services: int) -> MeshConfig:
    """``services`` services (ServiceEntry + DestinationRule + VirtualService each) and one Gateway."""
    documents = [_GATEWAY]
    for i in range(services):
        on_gateway = i % 10 == 0
        documents.append(
            _SERVICE.format(
                i=i,
                a=i // 250,
                b=i % 250,
                extra_host=f", svc{i}.example.com" if on_gateway else "",
                gateway=", ingress" if on_gateway else "",
            )
        )
    loaded = load_files({"bench.yaml": "---\n".join(documents)})
    errors = [finding for finding in loaded.findings if finding.severity == "error"]
    if errors:
        raise SystemExit(f"benchmark config does not validate: {errors[0].format()}")
    return loaded.config


def weight_step(config: MeshConfig, index: int) -> MeshConfig:
    """``config`` with service ``index``'s 80/15/5 split moved to 70/20/10, as a rollout step changes it."""
    vs = config.virtual_services[index]
    rule = vs.spec.http[1]
    moved = tuple(
        dataclasses.replace(destination, weight=Weight(weight))
        for destination, weight in zip(rule.route, (70, 20, 10), strict=True)
    )
    http = (vs.spec.http[0], dataclasses.replace(rule, route=moved), *vs.spec.http[2:])
    changed = dataclasses.replace(vs, spec=dataclasses.replace(vs.spec, http=http))
    services = config.virtual_services
    return dataclasses.replace(config, virtual_services=(*services[:index], changed, *services[index + 1 :]))


def endpoint_move(config: MeshConfig, index: int) -> MeshConfig:
    """``config`` with the first endpoint of service ``index`` at another address (an endpoint-only change)."""
    entry = config.service_entries[index]
    first = dataclasses.replace(entry.spec.endpoints[0], address="10.255.255.254")
    spec = dataclasses.replace(entry.spec, endpoints=(first, *entry.spec.endpoints[1:]))
    entries = config.service_entries
    changed = dataclasses.replace(entry, spec=spec)
    return dataclasses.replace(config, service_entries=(*entries[:index], changed, *entries[index + 1 :]))


def host_added(config: MeshConfig, index: int) -> MeshConfig:
    """``config`` with service ``index`` (ServiceEntry + DestinationRule + VirtualService) added at the end."""
    added = load_files(
        {"added.yaml": _SERVICE.format(i=index, a=index // 250, b=index % 250, extra_host="", gateway="")}
    )
    return dataclasses.replace(
        config,
        virtual_services=config.virtual_services + added.config.virtual_services,
        destination_rules=config.destination_rules + added.config.destination_rules,
        service_entries=config.service_entries + added.config.service_entries,
    )


def host_removed(config: MeshConfig, index: int) -> MeshConfig:
    """``config`` without service ``index`` (its ServiceEntry, DestinationRule and VirtualService)."""
    return dataclasses.replace(
        config,
        **{
            field: (*items[:index], *items[index + 1 :])
            for field in ("virtual_services", "destination_rules", "service_entries")
            for items in (getattr(config, field),)
        },
    )


def virtual_service_removed(config: MeshConfig, index: int) -> MeshConfig:
    """``config`` without service ``index``'s VirtualService (its ServiceEntry and DestinationRule stay)."""
    services = config.virtual_services
    return dataclasses.replace(config, virtual_services=(*services[:index], *services[index + 1 :]))


def subset_added(config: MeshConfig, index: int) -> MeshConfig:
    """``config`` with a fourth subset in service ``index``'s DestinationRule (a version about to be rolled out)."""
    rules = config.destination_rules
    rule = rules[index]
    extra = dataclasses.replace(rule.spec.subsets[0], name="v4", labels={"version": "v4"})
    changed = dataclasses.replace(rule, spec=dataclasses.replace(rule.spec, subsets=(*rule.spec.subsets, extra)))
    return dataclasses.replace(config, destination_rules=(*rules[:index], changed, *rules[index + 1 :]))


def _cpu(
    run: Callable[[], object],
    repeat: int,
    *,
    before: Callable[[], object] | None = None,
    trim: Callable[[], None] | None = None,
) -> float:
    """Best CPU seconds of ``repeat`` calls of ``run``, each after an untimed ``before`` (and ``trim``, if given)."""
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        # A collection of the warm-up's garbage would otherwise land in the timed run, or not (±1 s at 10k).
        gc.collect()
        if trim is not None:
            trim()
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def change_table(size: int, repeat: int, *, cases: Sequence[str] = (), trim: Callable[[], None] | None = None) -> bool:
    """Print the ``--change`` rows (those named in ``cases``, if any) for ``size`` services; False when a target is
    missed. ``trim``: hands the C heap's free pages back before each timed run, as the daemon does once quiet."""
    config = build_config(size)
    reloaded = build_config(size)
    sidecar = ProxyIdentity(node_id="bench-sidecar", namespace="bench", role=ProxyRole.SIDECAR)
    other = dataclasses.replace(sidecar, node_id="bench-sidecar-2", outbound_port=15002)
    middle = size // 2
    stepped, moved, reloaded_step, grown, subset, shrunk, unrouted = (
        weight_step(config, middle),
        endpoint_move(config, middle),
        weight_step(reloaded, middle),
        host_added(config, size),
        subset_added(config, middle),
        host_removed(config, middle),
        virtual_service_removed(config, middle),
    )
    state: dict[str, TranslationCache | PassCache] = {}

    def fresh() -> None:
        state["cache"], state["passed"] = TranslationCache(), PassCache()

    def run(target: MeshConfig, proxy: ProxyIdentity) -> object:
        cache, passed = state["cache"], state["passed"]
        assert isinstance(cache, TranslationCache)
        assert isinstance(passed, PassCache)
        return translate(target, proxy, cache=cache, passed=passed)

    def warmed(*steps: tuple[MeshConfig, ProxyIdentity]) -> Callable[[], None]:
        def warm() -> None:
            fresh()
            for target, proxy in steps:
                run(target, proxy)

        return warm

    def first_pass() -> None:
        # As the daemon's first pass runs: automatic collection paused until it is collected and frozen.
        with StartupHeap() as heap:
            heap.pause()
            run(config, sidecar)

    def timed(run_it: Callable[[], object], *, before: Callable[[], object]) -> float:
        return _cpu(run_it, repeat, before=before, trim=trim)

    after_first = warmed((config, sidecar))
    rows = {
        "cold": ("full", lambda: timed(first_pass, before=fresh)),
        "shape": ("full", lambda: timed(lambda: run(config, other), before=after_first)),
        "weight": ("change", lambda: timed(lambda: run(stepped, sidecar), before=after_first)),
        "endpoint": ("change", lambda: timed(lambda: run(moved, sidecar), before=after_first)),
        # Every object decoded again (none the same): not the daemon's path (its decode cache keeps unchanged
        # files' objects), so held to the full translation's target.
        "reload": ("full", lambda: timed(lambda: run(reloaded_step, sidecar), before=after_first)),
        "host": ("change", lambda: timed(lambda: run(grown, sidecar), before=after_first)),
        "subset": ("change", lambda: timed(lambda: run(subset, sidecar), before=after_first)),
        "removed": ("change", lambda: timed(lambda: run(shrunk, sidecar), before=after_first)),
        "vsremoved": ("change", lambda: timed(lambda: run(unrouted, sidecar), before=after_first)),
    }
    assert tuple(rows) == CHANGE_CASES
    ok = True
    for name, (kind, measure) in rows.items():
        if cases and name not in cases:
            continue
        cpu = measure()
        target = CHANGE_TARGETS[kind]
        met = cpu < target
        ok = ok and met
        print(f"{size:>9,} {name:<9} {cpu * 1000:>9.1f} {target * 1000:>9.0f} {'yes' if met else 'NO':<3}")
    return ok


def _time(config: MeshConfig, proxy: ProxyIdentity, repeat: int) -> tuple[float, float, dict[str, int]]:
    """Best wall-clock and best CPU seconds of ``repeat`` translations, and the snapshot's size."""
    best_wall = best_cpu = float("inf")
    sizes: dict[str, int] = {}
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        snapshot = translate(config, proxy).snapshot
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
        sizes = {
            "clusters": len(snapshot.resources(CLUSTER)),
            "endpoints": len(snapshot.resources(ENDPOINT)),
            "listeners": len(snapshot.resources(LISTENER)),
            "vhosts": sum(len(getattr(rc, "virtual_hosts")) for rc in snapshot.resources(ROUTE).values()),  # noqa: B009
        }
        del snapshot  # not alive during the next run: each run starts from the same heap
    return best_wall, best_cpu, sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(TARGETS), help="service counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is reported)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one sidecar translation")
    parser.add_argument(
        "--change", action="store_true", help="time translations with a kept cache: another shape, one-host changes"
    )
    parser.add_argument(
        "--trim",
        action="store_true",
        help="with --change: malloc_trim before each timed run, as the daemon trims its heap after 2 s quiet "
        "(the run then pays the page faults of memory it writes, as a change after a quiet spell does)",
    )
    parser.add_argument("--default-gc", action="store_true", help="CPython's GC thresholds, not the daemon's")
    parser.add_argument(
        "--cases", nargs="+", choices=CHANGE_CASES, default=(), metavar="CASE", help="with --change: only these rows"
    )
    args = parser.parse_args(argv)
    if not args.default_gc:
        gc.set_threshold(*GC_THRESHOLDS)
    if args.change:
        header = f"{'services':>9} {'case':<9} {'cpu ms':>9} {'target':>9} {'ok':<3}"
        print(header)
        print("-" * len(header))
        trim = libc_trim() if args.trim else None
        results = [change_table(size, args.repeat, cases=args.cases, trim=trim) for size in args.sizes]
        return 0 if all(results) else 1

    proxies = {
        "sidecar": ProxyIdentity(node_id="bench-sidecar", namespace="bench", role=ProxyRole.SIDECAR),
        "gateway": ProxyIdentity(node_id="bench-gateway", namespace="bench", labels={"istio": "ingressgateway"}),
    }
    header = (
        f"{'services':>9} {'proxy':<8} {'wall s':>7} {'cpu s':>7} {'target':>7} {'ok':<3} "
        f"{'clusters':>9} {'CLAs':>7} {'vhosts':>7}"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for size in args.sizes:
        config = build_config(size)
        for name, proxy in proxies.items():
            wall, cpu, sizes = _time(config, proxy, args.repeat)
            target = TARGETS.get(size)
            ok = "-" if target is None else ("yes" if cpu < target else "NO")
            failed = failed or ok == "NO"
            print(
                f"{size:>9,} {name:<8} {wall:>7.3f} {cpu:>7.3f} {target or float('nan'):>7.1f} {ok:<3} "
                f"{sizes['clusters']:>9,} {sizes['endpoints']:>7,} {sizes['vhosts']:>7,}"
            )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            translate(config, proxies["sidecar"])
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
