"""Istio YAML for the CRD-mode tests: one ``reviews`` service as a VirtualService, DestinationRule and ServiceEntry."""

from __future__ import annotations

__all__ = ["crd_mesh"]


def crd_mesh(
    namespace: str, *, subsets: tuple[str, ...] = ("v1", "v2"), routes: tuple[str, ...] = ("v1", "v2")
) -> bytes:
    """``reviews``: a VirtualService (v1beta1, all traffic on the first route), a DestinationRule with ``subsets``
    and a STATIC ServiceEntry, in ``namespace``; ``routes`` are the subsets the VirtualService routes to."""
    subset_yaml = "".join(f"  - {{name: {s}, labels: {{version: {s}}}}}\n" for s in subsets)
    route_yaml = "".join(
        f"    - destination: {{host: reviews.example.com, subset: {s}}}\n      weight: {100 if i == 0 else 0}\n"
        for i, s in enumerate(routes)
    )
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews, namespace: {namespace}}}
spec:
  hosts: [reviews.example.com]
  http:
  - route:
{route_yaml}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {namespace}}}
spec:
  host: reviews.example.com
  subsets:
{subset_yaml}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: {namespace}}}
spec:
  hosts: [reviews.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.0.0.1, labels: {{version: v1}}}}, {{address: 10.0.0.2, labels: {{version: v2}}}}]
""".encode()
