"""Questions every stream asks of shared resource sets are answered once for all proxy shapes."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2, route_pb2

from reconciler.translate.snapshot import ROUTE, ResourceSet
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
