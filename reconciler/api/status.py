"""Read-only HTTP endpoints: ``/api/v1/status``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from reconciler.model.text import excerpt
from reconciler.translate.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE
from reconciler.xds.cache import ProxyStatus

__all__ = ["TYPE_NAMES", "proxy_json", "status_routes"]

#: Characters of the message a /readyz body carries.
READYZ_CHARS = 200

#: The short names istioctl proxy-status uses for each xDS type.
TYPE_NAMES = {CLUSTER: "CDS", LISTENER: "LDS", ENDPOINT: "EDS", ROUTE: "RDS"}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def proxy_json(proxy: ProxyStatus) -> dict[str, Any]:
    """One proxy as the status API shows it (states upper-case, like istioctl)."""
    types: dict[str, Any] = {}
    for type_url, short in TYPE_NAMES.items():
        entry = proxy.types.get(type_url)
        if entry is None:
            types[short] = {"state": "NOT SENT", "sent": None, "acked": None, "nack": None}
            continue
        nack = {"version": entry.last_nack.version, "message": entry.last_nack.message} if entry.last_nack else None
        types[short] = {
            "state": entry.state.value.upper(),
            "sent": entry.version_sent,
            "acked": entry.version_acked,
            "nack": nack,
        }
    return {
        "nodeId": proxy.node_id,
        "labels": dict(proxy.labels),
        "connectedSince": _iso(proxy.connected_since),
        "snapshotVersion": proxy.snapshot_version,
        "ackedSnapshotVersion": proxy.acked_snapshot_version,
        "generation": proxy.generation,
        "ackedGeneration": proxy.acked_generation,
        "types": types,
    }


def status_routes(
    *,
    status: Callable[[], dict[str, Any]],
    proxies: Callable[[], tuple[ProxyStatus, ...]],
    registry: CollectorRegistry,
) -> list[web.RouteDef]:
    """Routes over the engine's status document (``ready`` key decides /readyz) and the proxy table."""

    async def get_status(_: web.Request) -> web.Response:
        body = status()
        body["proxies"] = [proxy_json(proxy) for proxy in proxies()]
        return web.json_response(body)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        body = status()
        # A probe's body stays small whatever the message says; /api/v1/status has the whole story.
        summary = {"ready": body["ready"], "reason": body["reason"], "message": excerpt(body["message"], READYZ_CHARS)}
        return web.json_response(summary, status=200 if body["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    return [
        web.get("/api/v1/status", get_status),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]
