"""Which VirtualServices each RolloutPolicy governs, and their route weights read from and written into a config.

A rollout serves git's config with other weights for the routes it walks: ``weights_of``
reads a ``WeightTable`` out of a ``MeshConfig``, ``with_weights`` writes one back, leaving
everything else (matches, timeouts, other services) as git has it. A weight left out in
git means 100 for a route's only destination and 0 otherwise, as the translator reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.model.common import Weight
from reconciler.model.config import MeshConfig, Resource
from reconciler.model.rolloutpolicy import RolloutPolicySpec, target_matches
from reconciler.model.virtualservice import Destination, HTTPRoute, HTTPRouteDestination, VirtualServiceSpec
from reconciler.rollout.plan import RouteRef, Split, WeightTable

__all__ = ["Governed", "governed", "weights_of", "with_weights"]


@dataclass(frozen=True, slots=True)
class Governed:
    """A RolloutPolicy (``namespace/name``) and the VirtualServices (``namespace/name``) it walks in lockstep."""

    policy: str
    spec: RolloutPolicySpec
    virtual_services: tuple[str, ...]


def governed(config: MeshConfig) -> tuple[Governed, ...]:
    """Every policy of ``config`` that names at least one of its VirtualServices."""
    found = []
    for policy in config.rollout_policies:
        targets = tuple(
            vs.ref
            for vs in config.virtual_services
            if vs.namespace == policy.namespace
            and any(
                target_matches(target, namespace=vs.namespace, name=vs.name, hosts=vs.spec.hosts)
                for target in policy.spec.targets
            )
        )
        if targets:
            found.append(Governed(policy=policy.ref, spec=policy.spec, virtual_services=targets))
    return tuple(found)


def weights_of(config: MeshConfig, virtual_services: Collection[str]) -> WeightTable:
    """The weights of every HTTP route with destinations in the named VirtualServices."""
    table: dict[RouteRef, Split] = {}
    for vs in config.virtual_services:
        if vs.ref not in virtual_services:
            continue
        for index, http in enumerate(vs.spec.http):
            if http.route:
                table[RouteRef(vs.ref, index)] = _split(http.route)
    return MappingProxyType(table)


def with_weights(config: MeshConfig, weights: WeightTable) -> MeshConfig:
    """``config`` with the routes of ``weights`` set to those weights; a route already so weighted is kept as is.

    A destination the table weighs above 0 that the route does not list (one git dropped while a
    rollout still sends it traffic) is added; one the route lists and the table does not weigh gets 0.
    """
    by_service: dict[str, dict[int, Split]] = {}
    for route, split in weights.items():
        by_service.setdefault(route.virtual_service, {})[route.route] = split
    services = tuple(
        _reweighted(vs, by_service[vs.ref]) if vs.ref in by_service else vs for vs in config.virtual_services
    )
    return dataclasses.replace(config, virtual_services=services)


def _split(destinations: tuple[HTTPRouteDestination, ...]) -> Split:
    split: dict[Destination, int] = {}
    for entry in destinations:
        implied = 100 if len(destinations) == 1 else 0
        weight = entry.weight if entry.weight is not None else implied
        split[entry.destination] = split.get(entry.destination, 0) + weight
    return MappingProxyType(split)


def _reweighted(vs: Resource[VirtualServiceSpec], splits: dict[int, Split]) -> Resource[VirtualServiceSpec]:
    http = tuple(
        _route_with(route, splits[index]) if index in splits and route.route else route
        for index, route in enumerate(vs.spec.http)
    )
    return dataclasses.replace(vs, spec=dataclasses.replace(vs.spec, http=http))


def _route_with(route: HTTPRoute, split: Split) -> HTTPRoute:
    if dict(_split(route.route)) == dict(split):
        return route
    kept = []
    weighed: set[Destination] = set()
    for entry in route.route:
        # A destination listed twice carries its weight once.
        weight = 0 if entry.destination in weighed else split.get(entry.destination, 0)
        weighed.add(entry.destination)
        kept.append(dataclasses.replace(entry, weight=Weight(weight)))
    added = [
        HTTPRouteDestination(destination=destination, weight=Weight(weight))
        for destination, weight in split.items()
        if weight and destination not in weighed
    ]
    return dataclasses.replace(route, route=(*kept, *added))
