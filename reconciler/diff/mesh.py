"""Two configs in, every difference out: Istio resources, the route table, and per proxy shape the Envoy resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.diff.changes import ObjectChange, diff_objects
from reconciler.diff.envoy import ProxyDiff, ProxyGroup, Translated, affected_summary, connected_summary, diff_proxies
from reconciler.diff.normalize import normalize_resource
from reconciler.diff.routes import RouteRow, route_table
from reconciler.model.config import Kind, MeshConfig

__all__ = ["MeshDiff", "diff_configs", "normalized_config"]


@dataclass(frozen=True, slots=True)
class MeshDiff:
    """What changes from one config to another; ``equal`` when nothing that affects routing does."""

    resources: tuple[ObjectChange, ...]
    routes: tuple[RouteRow, ...]
    proxies: tuple[ProxyDiff, ...]

    @property
    def equal(self) -> bool:
        return not self.resources

    @property
    def affected(self) -> str:
        """Which proxy shapes change and how (``sidecars: 2 of 3 namespaces: RDS only``)."""
        return affected_summary(self.proxies)

    @property
    def connected(self) -> str:
        """Of the proxies connected to a daemon, which change and how (``1 of 1 gateway: RDS only``); ``""``: none."""
        return connected_summary(self.proxies)

    def to_json(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "resources": [change.to_json() for change in self.resources],
            "routes": [row.to_json() for row in self.routes],
            "proxies": [proxy.to_json() for proxy in self.proxies],
            "affected": self.affected,
            "connected": self.connected,
        }


def diff_configs(
    old: MeshConfig,
    new: MeshConfig,
    *,
    envoy: bool = True,
    connected: Sequence[ProxyGroup] = (),
    old_translated: Translated | None = None,
    new_translated: Translated | None = None,
) -> MeshDiff:
    """Compare two validated configs after normalizing both (:mod:`~reconciler.diff.normalize`).

    With ``envoy`` (and only when the Istio resources differ) both are translated for every
    proxy shape either implies and for each ``connected`` group's (proxies connected to a
    daemon), and the Envoy resources compared too; a side's translations already made
    (``LoadResult.translations``) are used, not made again.
    """
    before, after = _normalized(old, unless_in=new), _normalized(new, unless_in=old)
    resources = diff_objects(before, after, plain=lambda first, second: (first, second))
    routes = route_table(
        resources, old=_of_kind(before, Kind.VIRTUAL_SERVICE), new=_of_kind(after, Kind.VIRTUAL_SERVICE)
    )
    proxies = (
        diff_proxies(old, new, connected=connected, old_translated=old_translated, new_translated=new_translated)
        if envoy and resources
        else ()
    )
    return MeshDiff(resources=resources, routes=routes, proxies=proxies)


def normalized_config(config: MeshConfig) -> dict[str, Any]:
    """Every resource of ``config`` normalized, keyed ``Kind namespace/name``: a JSON-ready served state.

    What the daemon answers on ``/api/v1/config``.
    """
    return {f"{resource.kind.value} {resource.ref}": normalize_resource(resource) for resource in config.resources()}


def _normalized(config: MeshConfig, *, unless_in: MeshConfig) -> dict[tuple[str, str], Any]:
    """Each resource normalized, except one whose spec is equal in ``unless_in`` (most of them: no work, no change).

    The spec itself stands in for those, so the two sides still compare equal.
    """
    other = {(resource.kind.value, resource.ref): resource.spec for resource in unless_in.resources()}
    values: dict[tuple[str, str], Any] = {}
    for resource in config.resources():
        key = (resource.kind.value, resource.ref)
        values[key] = resource.spec if other.get(key) == resource.spec else normalize_resource(resource)
    return values


def _of_kind(values: Mapping[tuple[str, str], Any], kind: Kind) -> dict[str, Any]:
    return {name: value for (found, name), value in values.items() if found == kind.value}
