"""Read-only HTTP endpoints: ``/api/v1/status``, ``/api/v1/rollouts[/{ns}/{name}]``, ``/healthz``, ``/readyz``,
``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from reconciler.api.document import DriftDocument, EngineDocument, RolloutDocument, StatusDocument
from reconciler.model.text import excerpt
from reconciler.xds.cache import ProxyStatus

__all__ = ["status_routes"]

#: Characters of the message a /readyz body carries.
READYZ_CHARS = 200


def status_routes(
    *,
    status: Callable[[], EngineDocument],
    proxies: Callable[[], tuple[ProxyStatus, ...]],
    registry: CollectorRegistry,
    rollouts: Callable[[], Sequence[RolloutDocument]] = tuple,
    drift: Callable[[], Sequence[DriftDocument]] = tuple,
) -> list[web.RouteDef]:
    """Routes over the engine's part of the status document (its ``ready`` decides /readyz), the proxy table,
    the rollouts (one per RolloutPolicy, ``namespace/name``) and each proxy's latest drift check."""

    async def get_status(_: web.Request) -> web.Response:
        return web.json_response(StatusDocument.of(status(), proxies(), rollouts(), drift()).to_json())

    async def get_rollouts(_: web.Request) -> web.Response:
        return web.json_response({"rollouts": [rollout.to_json() for rollout in rollouts()]})

    async def get_rollout(request: web.Request) -> web.Response:
        policy = f"{request.match_info['namespace']}/{request.match_info['name']}"
        found = next((rollout for rollout in rollouts() if rollout.policy == policy), None)
        if found is None:
            return web.json_response({"error": f"no rollout under RolloutPolicy {policy}"}, status=404)
        return web.json_response(found.to_json())

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        engine = status()
        # A probe's body stays small whatever the message says; /api/v1/status has the whole story.
        summary = {"ready": engine.ready, "reason": engine.reason, "message": excerpt(engine.message, READYZ_CHARS)}
        return web.json_response(summary, status=200 if engine.ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    return [
        web.get("/api/v1/status", get_status),
        web.get("/api/v1/rollouts", get_rollouts),
        web.get("/api/v1/rollouts/{namespace}/{name}", get_rollout),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]
