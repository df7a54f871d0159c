"""``/api/v1/rollouts``: every rollout, and one by its RolloutPolicy's namespace and name."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from test_status_document import everything_set

from reconciler.api.status import status_routes


def get_all(*paths: str) -> list[tuple[int, Any]]:
    document = everything_set()

    async def main() -> list[tuple[int, Any]]:
        app = web.Application()
        app.add_routes(
            status_routes(
                status=lambda: document.engine,
                proxies=tuple,
                registry=CollectorRegistry(),
                rollouts=lambda: document.rollouts,
            )
        )
        async with TestClient(TestServer(app)) as client:
            answers = []
            for path in paths:
                response = await client.get(path)
                answers.append((response.status, await response.json()))
            return answers

    return asyncio.run(main())


def test_the_rollouts_are_listed_found_by_policy_and_shown_in_the_status_document() -> None:
    [rollout] = everything_set().rollouts

    listed, found, missing, status = get_all(
        "/api/v1/rollouts", "/api/v1/rollouts/default/reviews", "/api/v1/rollouts/default/ratings", "/api/v1/status"
    )

    assert listed == (200, {"rollouts": [rollout.to_json()]})
    assert found == (200, rollout.to_json())
    assert missing == (404, {"error": "no rollout under RolloutPolicy default/ratings"})
    assert status[1]["rollouts"] == [rollout.to_json()]
