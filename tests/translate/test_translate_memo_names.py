"""Sidecar shapes of one config hold one copy of the cluster names they share.

Every sidecar shape of a config has the same services, so the same clusters, and its route
configuration names the same ones; a :class:`TranslationCache` interns those name sets so a
fleet of distinct shapes holds them once (about 0.3 MB per shape at 1,000 services otherwise).
"""

from __future__ import annotations

from collections.abc import Sized

from translate_support import load

from reconciler.model.config import MeshConfig
from reconciler.translate import ProxyIdentity, ProxyRole, translate
from reconciler.translate.memo import TranslationCache
from reconciler.translate.patch import SidecarState
from reconciler.translate.snapshot import ROUTE, Snapshot
from reconciler.translate.translator import proxy_shape

_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc{i}}}
spec:
  hosts: [svc{i}.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.0.0.{i}, labels: {{version: v1}}}}, {{address: 10.0.1.{i}, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc{i}}}
spec:
  host: svc{i}.default.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc{i}}}
spec:
  hosts: [svc{i}.default.svc.cluster.local]
  http:
  - route:
    - {{destination: {{host: svc{i}.default.svc.cluster.local, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: svc{i}.default.svc.cluster.local, subset: v2}}, weight: {v2}}}
"""


def _mesh(services: range, *, v2: int = 10) -> MeshConfig:
    return load("---\n".join(_SERVICE.format(i=i, v1=100 - v2, v2=v2) for i in services))


def _sidecar(port: int) -> ProxyIdentity:
    return ProxyIdentity(node_id=f"sidecar-{port}", namespace="default", role=ProxyRole.SIDECAR, outbound_port=port)


def _route_references(snapshot: Snapshot) -> frozenset[str]:
    (route,) = snapshot.sets[ROUTE].items.values()
    return route.references


def _base(cache: TranslationCache, config: MeshConfig, proxy: ProxyIdentity) -> Sized:
    state = cache.sidecar_state(proxy_shape(config, proxy))
    assert isinstance(state, SidecarState)
    return state.shared.base


def test_two_sidecar_shapes_of_one_config_share_one_set_of_cluster_names() -> None:
    config, cache = _mesh(range(3)), TranslationCache()
    first = translate(config, _sidecar(15001), cache=cache).snapshot
    second = translate(config, _sidecar(15002), cache=cache).snapshot

    assert first.sets[ROUTE].version != second.sets[ROUTE].version  # two shapes: two route configurations
    assert _route_references(first) is _route_references(second)
    assert "outbound|80|v2|svc2.default.svc.cluster.local" in _route_references(first)
    assert _base(cache, config, _sidecar(15001)) is _base(cache, config, _sidecar(15002))
    assert len(_base(cache, config, _sidecar(15001))) == 9  # each service: its cluster and two subsets'


def test_a_config_that_names_other_clusters_gets_a_set_of_its_own() -> None:
    cache = TranslationCache()
    before = translate(_mesh(range(3)), _sidecar(15001), cache=cache).snapshot
    after = translate(_mesh(range(4)), _sidecar(15001), cache=cache).snapshot

    assert _route_references(after) - _route_references(before) == {
        "outbound|80|v1|svc3.default.svc.cluster.local",
        "outbound|80|v2|svc3.default.svc.cluster.local",
    }
    assert not _route_references(before) & {"outbound|80|v1|svc3.default.svc.cluster.local"}


def test_a_weight_change_keeps_the_set_of_the_config_before() -> None:
    cache = TranslationCache()
    before = translate(_mesh(range(3)), _sidecar(15001), cache=cache).snapshot
    # A fresh cache-less shape of the changed config: translated in full, not patched.
    after = translate(_mesh(range(3), v2=50), _sidecar(15002), cache=cache).snapshot

    assert after.sets[ROUTE].version != before.sets[ROUTE].version
    assert _route_references(after) is _route_references(before)


def test_name_sets_no_config_used_since_the_one_before_last_are_forgotten() -> None:
    cache = TranslationCache()
    first = _route_references(translate(_mesh(range(3)), _sidecar(15001), cache=cache).snapshot)
    for services in (range(4), range(5)):
        translate(_mesh(services), _sidecar(15001), cache=cache)

    equal = frozenset(set(first))  # a copy (frozenset() of a frozenset is the same object)
    assert cache.names(equal) is equal  # the first config's set was let go: the copy given is kept now
    assert cache.names(frozenset(set(first))) is equal


def test_name_sets_the_previous_config_used_are_kept() -> None:
    cache = TranslationCache()
    first = _route_references(translate(_mesh(range(3)), _sidecar(15001), cache=cache).snapshot)
    translate(_mesh(range(4)), _sidecar(15001), cache=cache)

    assert cache.names(frozenset(set(first))) is first
