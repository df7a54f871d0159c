"""Read endpoints for ``reconciler diff --server``: what the daemon serves, and per proxy served ↔ ACKed ↔ live.

- ``GET /api/v1/config``: the served config's Istio resources in the diff's normalized form
  (``Kind namespace/name`` → value), with the origin that served it (a commit, a rollout step,
  a rollback). Bounded: the config came through the revision size limits.
- ``GET /api/v1/config/manifests``: the served config as Kubernetes manifests that load back into
  the same config (:mod:`reconciler.diff.manifests`; a rollout step's weights, not the commit's),
  and the connected proxies grouped by what translation reads of them (labels, role, namespace,
  port) with a count each, the largest groups first (at most ``_MAX_GROUPS``, the rest counted in
  ``unlistedProxies``): what ``reconciler diff PATH --server`` translates both sides for.
- ``GET /api/v1/proxies/{node}/config``: one connected proxy's versions per xDS type (served,
  ACKed, resources live) and what its ``/config_dump`` shows differing from what it is served
  (at most ``DriftSettings.max_listed`` resources, with the total); 404 for a node not connected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from reconciler.api.document import OriginDocument
from reconciler.diff.envoy import group_proxies
from reconciler.diff.manifests import config_manifests
from reconciler.diff.mesh import normalized_config
from reconciler.model.config import MeshConfig
from reconciler.model.text import excerpt
from reconciler.translate.proxy import ProxyIdentity

__all__ = ["config_routes"]

#: Characters of a node id echoed in a 404.
_NODE_CHARS = 120
#: Proxy groups listed: the diff translates both sides for each, and the daemon itself keeps
#: snapshots of as many shapes (``MAX_REMEMBERED_SHAPES``); pods of one workload share a group.
_MAX_GROUPS = 256


def config_routes(
    *,
    served: Callable[[], tuple[MeshConfig, OriginDocument | None] | None],
    connected: Callable[[], Sequence[ProxyIdentity]],
    inspect: Callable[[str], Awaitable[dict[str, Any] | None]],
) -> list[web.RouteDef]:
    """``served()`` is the config served now and its origin (None before any), ``connected()`` the proxies
    connected now, ``inspect(node)`` a proxy's JSON."""

    async def get_config(_: web.Request) -> web.Response:
        current = served()
        if current is None:
            return web.json_response({"error": "nothing is served yet"}, status=404)
        config, origin = current
        return web.json_response(
            {"origin": origin.to_json() if origin else None, "resources": normalized_config(config)}
        )

    async def get_manifests(_: web.Request) -> web.Response:
        current = served()
        if current is None:
            return web.json_response({"error": "nothing is served yet"}, status=404)
        config, origin = current
        groups = group_proxies(connected())
        listed = groups[:_MAX_GROUPS]
        return web.json_response(
            {
                "origin": origin.to_json() if origin else None,
                "manifests": config_manifests(config),
                "proxies": [group.to_json() for group in listed],
                "unlistedProxies": sum(group.count for group in groups[_MAX_GROUPS:]),
            }
        )

    async def get_proxy_config(request: web.Request) -> web.Response:
        node_id = request.match_info["node"]
        found = await inspect(node_id)
        if found is None:
            return web.json_response({"error": f"no connected proxy {excerpt(node_id, _NODE_CHARS)!r}"}, status=404)
        return web.json_response(found)

    return [
        web.get("/api/v1/config", get_config),
        web.get("/api/v1/config/manifests", get_manifests),
        web.get("/api/v1/proxies/{node}/config", get_proxy_config),
    ]
