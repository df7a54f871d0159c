"""A real config repository whose history walks through the changes ``reconciler diff`` explains.

Each commit changes one thing on top of the one before (``mesh/`` is the config path), so
the diff of a commit against its parent is one case: a weight change, an added timeout, a
removed subset, retries changed, a new service, a reorder-only commit, an invalid commit.
Shared by ``tests/cli/test_diff_cli.py``, ``tests/diff/`` and ``bench/diff_bench.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gitrepo import GitRemote

__all__ = ["CASES", "DiffRepo", "build_diff_repo"]

_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: bookinfo}}
spec:
  hosts: [{name}.bookinfo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.0.{octet}.1, labels: {{version: v1}}}}
  - {{address: 10.0.{octet}.2, labels: {{version: v2}}}}
  - {{address: 10.0.{octet}.3, labels: {{version: v3}}}}
"""

_REVIEWS_DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: bookinfo}}
spec:
  host: reviews
  subsets:
{subsets}
"""

_REVIEWS_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: bookinfo}}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
    route:
    - destination: {{host: reviews, subset: v2}}
{extra0}  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {w1}
    - destination: {{host: reviews, subset: v2}}
      weight: {w2}
{v3}    retries: {{attempts: {attempts}}}
"""

_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*/reviews.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-ingress, namespace: istio-system}
spec:
  hosts: [reviews.example.com]
  gateways: [ingress]
  http:
  - route:
    - destination: {host: reviews.bookinfo.svc.cluster.local, subset: v1}
"""

_RATINGS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v1}
    timeout: 1s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
"""

_V3 = "    - destination: {host: reviews, subset: v3}\n      weight: 10\n"
_SUBSETS = ["  - {name: v1, labels: {version: v1}}", "  - {name: v2, labels: {version: v2}}"]
_SUBSET_V3 = "  - {name: v3, labels: {version: v3}}"


def _reviews(*, w1: int, w2: int, v3: bool, attempts: int, timeout: str | None) -> str:
    extra0 = f"    timeout: {timeout}\n" if timeout else ""
    return _REVIEWS_VS.format(w1=w1, w2=w2, v3=_V3 if v3 else "", attempts=attempts, extra0=extra0)


def _dr(*, v3: bool) -> str:
    return _REVIEWS_DR.format(subsets="\n".join([*_SUBSETS, *([_SUBSET_V3] if v3 else [])]))


#: (case name, files changed by its commit): each commit applies on top of the one before.
CASES: list[tuple[str, dict[str, str | None]]] = [
    (
        "base",
        {
            "mesh/reviews.yaml": _reviews(w1=80, w2=10, v3=True, attempts=3, timeout=None),
            "mesh/reviews-dr.yaml": _dr(v3=True),
            "mesh/services.yaml": _SERVICE.format(name="reviews", octet=1),
            "mesh/gateway.yaml": _GATEWAY,
            "README.md": "# mesh\n",
        },
    ),
    ("weight-change", {"mesh/reviews.yaml": _reviews(w1=50, w2=40, v3=True, attempts=3, timeout=None)}),
    ("added-timeout", {"mesh/reviews.yaml": _reviews(w1=50, w2=40, v3=True, attempts=3, timeout="2s")}),
    (
        "removed-subset",
        {
            "mesh/reviews.yaml": _reviews(w1=60, w2=40, v3=False, attempts=3, timeout="2s"),
            "mesh/reviews-dr.yaml": _dr(v3=False),
        },
    ),
    ("retries-changed", {"mesh/reviews.yaml": _reviews(w1=60, w2=40, v3=False, attempts=5, timeout="2s")}),
    (
        "new-service",
        {
            "mesh/ratings.yaml": _RATINGS,
            "mesh/services.yaml": _SERVICE.format(name="reviews", octet=1)
            + "---\n"
            + _SERVICE.format(name="ratings", octet=2),
        },
    ),
    (
        # Same routing, written differently: documents swapped between files, list order, a
        # duration in other units, a short host spelled out, an explicit default.
        "reorder-only",
        {
            "mesh/ratings.yaml": None,
            "mesh/all-ratings.yaml": _RATINGS.split("---\n")[1]
            + "---\n"
            + _RATINGS.split("---\n", maxsplit=1)[0]
            .replace("timeout: 1s", "timeout: 1000ms")
            .replace("hosts: [ratings]", "hosts: [ratings.bookinfo.svc.cluster.local]")
            .replace("{host: ratings, subset: v1}", "{host: ratings, subset: v1}\n      weight: 100"),
            "mesh/reviews-dr.yaml": _REVIEWS_DR.format(subsets="\n".join(reversed(_SUBSETS))),
            "mesh/reviews.yaml": _reviews(w1=60, w2=40, v3=False, attempts=5, timeout="2s").replace(
                "    - destination: {host: reviews, subset: v1}\n      weight: 60\n"
                "    - destination: {host: reviews, subset: v2}\n      weight: 40\n",
                "    - destination: {host: reviews, subset: v2}\n      weight: 40\n"
                "    - destination: {host: reviews, subset: v1}\n      weight: 60\n",
            ),
            "README.md": "# mesh\n\nThe config lives in mesh/.\n",
        },
    ),
    # A route to a subset no DestinationRule defines: IST0101, an error the daemon would refuse.
    ("invalid", {"mesh/reviews.yaml": _reviews(w1=60, w2=40, v3=True, attempts=5, timeout="2s")}),
]


@dataclass(frozen=True)
class DiffRepo:
    """The working clone and the SHA of each case's commit."""

    work: Path
    shas: dict[str, str]

    def parent(self, case: str) -> str:
        names = [name for name, _ in CASES]
        return self.shas[names[names.index(case) - 1]]


def build_diff_repo(root: Path) -> DiffRepo:
    remote = GitRemote.create(root)
    shas = {name: remote.commit(files, f"mesh: {name}", push=False) for name, files in CASES}
    return DiffRepo(work=remote.work, shas=shas)
