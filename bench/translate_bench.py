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

Targets: 1,000 services < 0.5 s, 10,000 services < 5 s (per proxy).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Sequence

from reconciler.loader import load_files
from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole, translate
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE

TARGETS = {1_000: 0.5, 10_000: 5.0}

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
    args = parser.parse_args(argv)

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
