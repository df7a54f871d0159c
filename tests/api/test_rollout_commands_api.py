"""``POST /api/v1/rollouts/{ns}/{name}/{verb}`` over a real RolloutController walking a real Engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from memsource import EngineFactory, MemorySource
from rollout_walk import first_step_acked

from reconciler.api.rollouts import rollout_routes

Run = Callable[..., Any]
Post = Callable[..., tuple[int, Any]]
ROLLOUT = "/api/v1/rollouts/default/reviews"


@pytest.fixture
def post(source: MemorySource, make_engine: EngineFactory, run: Run) -> Post:
    """``post(path, **kwargs)`` → (status, JSON body), to the command routes over a rollout in its first step."""
    controller = first_step_acked(source, make_engine, run).controller

    def send(path: str, **kwargs: Any) -> tuple[int, Any]:
        async def call() -> tuple[int, Any]:
            app = web.Application()
            app.add_routes(rollout_routes(command=controller.command))
            async with TestClient(TestServer(app)) as client:
                response = await client.post(path, **kwargs)
                return response.status, await response.json()

        answer: tuple[int, Any] = run(call())
        return answer

    return send


def test_each_command_answers_with_the_rollout_after_it(post: Post) -> None:
    paused = post(f"{ROLLOUT}/pause")
    resumed = post(f"{ROLLOUT}/resume")
    promoted = post(f"{ROLLOUT}/promote")
    aborted = post(f"{ROLLOUT}/abort")

    assert [(status, body["phase"], body["step"]) for status, body in (paused, resumed, promoted, aborted)] == [
        (200, "Paused", 0),
        (200, "Progressing", 0),
        (200, "Progressing", 1),
        (200, "Aborted", 1),
    ]
    assert aborted[1]["served"]["default/reviews#1"] == {"reviews.example.com:v1": 100, "reviews.example.com:v2": 0}


@pytest.mark.parametrize(
    "request_kwargs", [{"params": {"full": "true"}}, {"json": {"full": True}}], ids=["query", "body"]
)
def test_a_full_promote_serves_git_s_weights_asked_in_the_query_or_the_body(
    post: Post, request_kwargs: dict[str, Any]
) -> None:
    status, body = post(f"{ROLLOUT}/promote", **request_kwargs)

    assert (status, body["step"], body["steps"]) == (200, 2, 2)
    assert body["served"] == body["goal"]


def test_an_unknown_rollout_is_404_a_command_that_does_not_apply_409_a_bad_promote_400(post: Post) -> None:
    assert post("/api/v1/rollouts/default/ratings/pause") == (
        404,
        {"error": "no rollout under RolloutPolicy default/ratings"},
    )
    assert post(f"{ROLLOUT}/restart") == (
        404,
        {"error": "no rollout command 'restart': one of pause, resume, promote, abort"},
    )
    assert post(f"{ROLLOUT}/resume") == (
        409,
        {"error": "cannot resume the rollout under RolloutPolicy default/reviews: it is not paused or stalled"},
    )
    assert post(f"{ROLLOUT}/promote", params={"full": "yes"})[0] == 400
    assert post(f"{ROLLOUT}/promote", data=b"{not json")[0] == 400
    assert post(f"{ROLLOUT}/promote", json={"full": "true"})[0] == 400
    status, body = post(f"{ROLLOUT}/pause")
    assert (status, body["phase"]) == (200, "Paused"), "refused requests changed nothing"


def test_a_promote_body_nested_a_thousand_levels_deep_is_400_not_a_recursion_error(post: Post) -> None:
    # 1,000 bytes: under the body limit, and deep enough to overflow Python's JSON parser.
    status, body = post(f"{ROLLOUT}/promote", data=b"[" * 500 + b"]" * 500)

    assert status == 400
    assert "deeper than" in body["error"]


def test_a_promote_body_over_a_kilobyte_is_400_and_only_a_kilobyte_of_it_is_read(post: Post) -> None:
    status, body = post(f"{ROLLOUT}/promote", data=b'{"full": true' + b" " * (1 << 20) + b"}")

    assert status == 400
    assert body == {"error": "a promote's body is at most 1024 bytes"}
    status, body = post(f"{ROLLOUT}/pause")
    assert (status, body["phase"]) == (200, "Paused"), "the oversized promote changed nothing"
