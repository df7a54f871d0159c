"""A follower's answers (``standby_middleware``) over the real rollout, webhook and status routes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from reconciler.api.rollouts import rollout_routes
from reconciler.api.standby import HOLDER_CHARS, Standby, standby_middleware
from reconciler.api.status import status_routes
from reconciler.api.webhook import webhook_routes
from reconciler.engine.status import EngineStatus
from reconciler.errors import RolloutNotFoundError
from reconciler.rollout.decide import Command

LEADER = "reconciler-7d9f-abcde"


class _Replica:
    """The routes a daemon mounts, behind the middleware; ``leading`` flips this replica's side of the Lease."""

    def __init__(self) -> None:
        self.leading = False
        self.synced = 0

    def standby(self) -> Standby | None:
        return None if self.leading else Standby(lease="mesh-system/reconciler", leader=LEADER)

    def trigger(self, _: object) -> bool:
        self.synced += 1
        return True

    def app(self) -> web.Application:
        def command(policy: str, _: Command) -> Any:
            raise RolloutNotFoundError(f"no rollout under RolloutPolicy {policy}")

        app = web.Application()
        app.add_routes(rollout_routes(command=command))
        app.add_routes(webhook_routes(secret=b"s3cret", trigger=self.trigger))
        app.add_routes(
            status_routes(
                status=EngineStatus(repo="repo", branch="main", path="").document,
                proxies=tuple,
                registry=CollectorRegistry(),
            )
        )
        app.middlewares.append(standby_middleware(self.standby))
        return app


def _answers(replica: _Replica, requests: list[tuple[str, str]]) -> list[tuple[int, Any]]:
    async def main() -> list[tuple[int, Any]]:
        async with TestClient(TestServer(replica.app(), host="127.0.0.1")) as client:
            answers = []
            for method, path in requests:
                response = await client.request(method, path)
                answers.append((response.status, await response.json()))
            return answers

    return asyncio.run(main())


def test_a_follower_answers_rollout_commands_syncs_and_webhooks_with_503_naming_the_leader() -> None:
    replica = _Replica()
    answers = _answers(
        replica,
        [
            ("POST", "/api/v1/rollouts/default/reviews/promote"),
            ("POST", "/api/v1/sync"),
            ("POST", "/hooks/git"),
            ("GET", "/api/v1/rollouts"),
            ("GET", "/api/v1/rollouts/default/reviews"),
        ],
    )

    assert {status for status, _ in answers} == {503}
    for _, body in answers:
        assert (body["reason"], body["leader"], body["lease"]) == ("Follower", LEADER, "mesh-system/reconciler")
        assert body["error"].startswith(f"standby: the Lease mesh-system/reconciler is held by {LEADER}")
    assert replica.synced == 0


def test_a_follower_still_answers_its_own_status_and_probes() -> None:
    answers = _answers(_Replica(), [("GET", "/api/v1/status"), ("GET", "/healthz")])

    assert [status for status, _ in answers] == [200, 200]


def test_the_leader_answers_every_request_itself() -> None:
    replica = _Replica()
    replica.leading = True
    answers = _answers(
        replica,
        [("POST", "/api/v1/rollouts/default/reviews/promote"), ("POST", "/api/v1/sync"), ("GET", "/api/v1/rollouts")],
    )

    assert [status for status, _ in answers] == [404, 202, 200]
    assert replica.synced == 1


def test_a_leader_name_from_the_lease_is_shortened_in_the_answer() -> None:
    standby = Standby(lease="default/reconciler", leader="x" * 10_000)

    body = standby.to_json()

    assert str(body["leader"]).startswith("x" * HOLDER_CHARS)
    assert len(str(body["leader"])) < HOLDER_CHARS + 40
    assert len(str(body["error"])) < HOLDER_CHARS + 200
