"""Benchmark: ``reconciler diff`` between two revisions of a 1,000-service config repository.

A real git repository, one file per service (STATIC ServiceEntry with three endpoints,
DestinationRule with three subsets, VirtualService with a header rule and an 80/15/5
split; every tenth also on an ingress Gateway), as ``bench/translate_bench.py`` builds
them. Timed end to end, in process, output discarded: read both revisions from git,
load and validate each (a shared decode cache), compare, translate both for every
proxy shape, format. Cases: one service's weights change; a commit that leaves routing
equal (only a README changes, so nothing is translated). Best of ``--repeat``.

    .venv/bin/python bench/diff_bench.py                     # the table
    .venv/bin/python bench/diff_bench.py --sizes 1000 --profile

Target: 1,000 services < 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))
sys.path.insert(0, str(REPO_ROOT / "bench"))
from gitrepo import GitRemote  # noqa: E402
from translate_bench import _GATEWAY, _SERVICE  # noqa: E402

from reconciler.cli.main import main as cli  # noqa: E402

TARGET_SECONDS = {1_000: 2.0}


def _service(i: int, *, weights: tuple[int, int, int] = (80, 15, 5)) -> str:
    on_gateway = i % 10 == 0
    text = _SERVICE.format(
        i=i,
        a=i // 250,
        b=i % 250,
        extra_host=f", svc{i}.example.com" if on_gateway else "",
        gateway=", ingress" if on_gateway else "",
    )
    return (
        text.replace("weight: 80", f"weight: {weights[0]}")
        .replace("weight: 15", f"weight: {weights[1]}")
        .replace("weight: 5", f"weight: {weights[2]}")
    )


def build_repo(root: Path, services: int) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The repository and, per case, the (from, to) SHAs."""
    remote = GitRemote.create(root)
    files: dict[str, str | None] = {"mesh/gateway.yaml": _GATEWAY, "README.md": "# mesh\n"}
    files.update({f"mesh/svc{i}.yaml": _service(i) for i in range(services)})
    base = remote.commit(files, "base", push=False)
    weights = remote.commit({"mesh/svc7.yaml": _service(7, weights=(50, 45, 5))}, "svc7: 50/45/5", push=False)
    readme = remote.commit({"README.md": "# mesh\n\nconfig in mesh/\n"}, "README", push=False)
    return remote.work, {"weight change": (base, weights), "equal": (weights, readme)}


def _time(work: Path, old: str, new: str, repeat: int) -> tuple[float, float, int]:
    best_wall = best_cpu = float("inf")
    code = -1
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli(["diff", "--repo", str(work), "--from", old, "--to", new, "--path", "mesh"])
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu, code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(TARGET_SECONDS), help="service counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is reported)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one weight-change diff")
    args = parser.parse_args(argv)

    header = f"{'services':>9} {'case':<14} {'exit':>4} {'wall s':>7} {'cpu s':>7} {'target':>7} {'ok':<3}"
    print(header)
    print("-" * len(header))
    failed = False
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="diff-bench-") as tmp:
            work, cases = build_repo(Path(tmp), size)
            for case, (old, new) in cases.items():
                wall, cpu, code = _time(work, old, new, args.repeat)
                target = TARGET_SECONDS.get(size)
                ok = "-" if target is None else ("yes" if wall < target else "NO")
                failed = failed or ok == "NO"
                print(
                    f"{size:>9,} {case:<14} {code:>4} {wall:>7.3f} {cpu:>7.3f} {target or float('nan'):>7.1f} {ok:<3}"
                )
            if args.profile:
                old, new = cases["weight change"]
                profiler = cProfile.Profile()
                with contextlib.redirect_stdout(io.StringIO()):
                    profiler.runcall(cli, ["diff", "--repo", str(work), "--from", old, "--to", new, "--path", "mesh"])
                pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
