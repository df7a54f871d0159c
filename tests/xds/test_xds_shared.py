"""Questions every stream asks of shared resource sets are answered once for all proxy shapes."""

from __future__ import annotations

import gc
import weakref

from envoy.config.route.v3 import route_components_pb2, route_pb2

from reconciler.translate.snapshot import ROUTE, Resource, ResourceSet
from reconciler.xds.shared import Shared


def routes(name: str, *clusters: str, domain: str = "svc") -> ResourceSet:
    """One route configuration ``name`` with a virtual host routing to each of ``clusters``."""
    hosts = [
        route_components_pb2.VirtualHost(
            name=f"{domain}-{cluster}",
            domains=[f"{domain}-{cluster}"],
            routes=[
                route_components_pb2.Route(
                    match=route_components_pb2.RouteMatch(prefix="/"),
                    route=route_components_pb2.RouteAction(cluster=cluster),
                )
            ],
        )
        for cluster in clusters
    ]
    return ResourceSet.build(ROUTE, [route_pb2.RouteConfiguration(name=name, virtual_hosts=hosts)])


def test_route_sets_of_different_shapes_naming_the_same_clusters_share_one_set_of_references() -> None:
    shared = Shared()
    first, second = routes("15001", "a", "b"), routes("15002", "a", "b", domain="other")

    used_first = shared.references(first.items, shared.names(["15001"]))
    used_second = shared.references(second.items, shared.names(["15002"]))

    assert used_first == {"a", "b"}
    assert used_second is used_first


def test_the_references_of_several_route_configurations_are_their_union() -> None:
    shared = Shared()
    both = ResourceSet.build(ROUTE, [*routes("r1", "a").resources.values(), *routes("r2", "b", "c").resources.values()])

    assert shared.references(both.items, shared.names(["r1", "r2"])) == {"a", "b", "c"}
    assert shared.references(both.items, shared.names(["r2"])) == {"b", "c"}
    assert shared.references(both.items, shared.names([])) == frozenset()


class _Table(dict[str, Resource]):
    """A served route table that a weak reference can watch (a plain dict cannot be weakly referenced)."""


def test_a_fact_not_asked_since_the_publish_before_last_no_longer_holds_its_route_table() -> None:
    generation = [0]
    shared = Shared(generation=lambda: generation[0])
    old, current = _Table(routes("15001", "a").items), routes("15001", "b").items
    names = shared.names(["15001"])
    held = weakref.ref(old)

    shared.references(old, names)
    del old
    generation[0] = 1  # a publish: a stream converging from the old revision may still ask
    shared.references(current, names)
    gc.collect()
    assert held() is not None

    generation[0] = 2  # the next publish: nobody asked about the old table since the one before
    shared.references(current, names)
    gc.collect()
    assert held() is None
    assert shared.references(current, names) == {"b"}
