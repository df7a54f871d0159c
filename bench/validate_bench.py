"""Benchmark: load and validate N generated resources end to end (read, parse, decode, rules, analyzers).

Each service gets one file with a ServiceEntry (STATIC, three labelled endpoints, two
ports), a DestinationRule with three subsets and a VirtualService (a header match, a
weighted split over the subsets, retries, timeout): every analyzer has work to do.

    .venv/bin/python bench/validate_bench.py              # N = 1,000 and 10,000
    .venv/bin/python bench/validate_bench.py 30000 --profile

Not a test: prints a table (N, files, seconds, resources/s).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from reconciler.loader import load_paths

_TEMPLATE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc-{i}
  namespace: shop
spec:
  hosts:
  - svc-{i}.shop.example.com
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  - number: 9090
    name: grpc
    protocol: GRPC
  endpoints:
  - address: 10.{a}.{b}.1
    labels: {{version: v1}}
  - address: 10.{a}.{b}.2
    labels: {{version: v2}}
  - address: 10.{a}.{b}.3
    labels: {{version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc-{i}
  namespace: shop
spec:
  host: svc-{i}.shop.example.com
  trafficPolicy:
    connectionPool:
      http: {{http1MaxPendingRequests: 100}}
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
  - name: v3
    labels: {{version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-{i}
  namespace: shop
spec:
  hosts:
  - svc-{i}.shop.example.com
  http:
  - name: canary-testers
    match:
    - headers:
        x-canary: {{exact: "true"}}
    route:
    - destination: {{host: svc-{i}.shop.example.com, subset: v3, port: {{number: 8080}}}}
  - name: default
    route:
    - destination: {{host: svc-{i}.shop.example.com, subset: v1, port: {{number: 8080}}}}
      weight: 90
    - destination: {{host: svc-{i}.shop.example.com, subset: v2, port: {{number: 8080}}}}
      weight: 10
    timeout: 5s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: 5xx,reset,503
"""
_PER_FILE = 3


def generate(directory: Path, resources: int) -> int:
    """Write files holding ``resources`` resources (3 per service, one service per file); return the file count."""
    services = -(-resources // _PER_FILE)
    for i in range(services):
        (directory / f"svc-{i:05d}.yaml").write_text(_TEMPLATE.format(i=i, a=i // 250 % 250, b=i % 250))
    return services


def measure(resources: int, *, profile: bool) -> tuple[int, int, float]:
    """(resources loaded, files, seconds) for one end-to-end load of a fresh tree."""
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        files = generate(Path(tmp), resources)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = load_paths([Path(tmp)])
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        errors = [f for f in result.findings if f.severity == "error"]
        if errors:
            raise SystemExit(f"generated config has errors, first: {errors[0].format()}")
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return result.config.resource_count, files, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[1_000, 10_000], metavar="N")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each run (cumulative time)")
    args = parser.parse_args()
    print(f"{'N':>8} {'files':>7} {'seconds':>9} {'resources/s':>12}")
    for size in args.sizes:
        loaded, files, seconds = measure(size, profile=args.profile)
        print(f"{loaded:>8} {files:>7} {seconds:>9.2f} {loaded / seconds:>12,.0f}")


if __name__ == "__main__":
    main()
