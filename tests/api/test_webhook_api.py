"""The webhook's aiohttp endpoints (push, manual sync), driven by a real TestServer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from webhooks import PUSH, SECRET, SHA, github_headers

from reconciler.api.webhook import webhook_routes
from reconciler.sources.webhook import Provider, PushEvent


class _Recorder:
    """Records every trigger call; with ``follows`` set, declines pushes to other branches."""

    def __init__(self, follows: str | None = None) -> None:
        self.events: list[PushEvent | None] = []
        self.follows = follows

    def __call__(self, event: PushEvent | None) -> bool:
        self.events.append(event)
        return self.follows is None or event is None or event.branch == self.follows


Scenario = Callable[[TestClient[web.Request, web.Application], _Recorder], Awaitable[None]]


def _run(
    scenario: Scenario, *, secret: bytes | None = SECRET, max_body_bytes: int = 1 << 20, follows: str | None = None
) -> _Recorder:
    """Serve the webhook routes on a loopback TestServer and run ``scenario`` against it."""
    recorder = _Recorder(follows)

    async def main() -> None:
        app = web.Application()
        app.add_routes(webhook_routes(secret=secret, trigger=recorder, max_body_bytes=max_body_bytes))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await scenario(client, recorder)

    asyncio.run(main())
    return recorder


async def _json(response: Any) -> dict[str, Any]:
    payload = await response.json()
    assert isinstance(payload, dict)
    return payload


def test_github_push_with_valid_signature_triggers_sync() -> None:
    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=PUSH, headers=github_headers(PUSH))
        assert response.status == 202
        assert await _json(response) == {"accepted": True, "provider": "github", "ref": "refs/heads/main", "after": SHA}

    recorder = _run(scenario)

    assert recorder.events == [PushEvent(ref="refs/heads/main", after_sha=SHA, provider=Provider.GITHUB)]


def test_bad_signature_gets_401_and_triggers_nothing() -> None:
    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        headers = github_headers(PUSH, secret=b"guessed")
        response = await client.post("/hooks/git", data=PUSH, headers=headers)
        assert response.status == 401
        body = await _json(response)
        assert body["accepted"] is False
        assert body["reason"] == "BadSignature"
        # The signature covers the body: a valid header on a tampered body fails too.
        tampered = PUSH.replace(b"main", b"evil")
        response = await client.post("/hooks/git", data=tampered, headers=github_headers(PUSH))
        assert response.status == 401

    assert _run(scenario).events == []


def test_missing_signature_gets_401() -> None:
    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=PUSH, headers={"X-GitHub-Event": "push"})
        assert response.status == 401
        response = await client.post("/hooks/git", data=PUSH, headers={"Content-Type": "application/json"})
        assert response.status == 401
        assert "X-Hub-Signature-256" in (await _json(response))["error"]

    assert _run(scenario).events == []


def test_gitlab_push_with_token_triggers_sync() -> None:
    body = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "after": SHA}).encode()

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        good = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode()}
        bad = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}
        assert (await client.post("/hooks/git", data=body, headers=bad)).status == 401
        response = await client.post("/hooks/git", data=body, headers=good)
        assert response.status == 202
        assert (await _json(response))["ref"] == "refs/heads/main"

    recorder = _run(scenario)

    assert recorder.events == [PushEvent(ref="refs/heads/main", after_sha=SHA, provider=Provider.GITLAB)]


def test_ping_gets_200_and_triggers_nothing() -> None:
    ping = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=ping, headers=github_headers(ping, event="ping"))
        assert response.status == 200
        assert (await _json(response))["accepted"] is False

    assert _run(scenario).events == []


def test_push_to_another_branch_is_passed_to_the_trigger() -> None:
    body = json.dumps({"ref": "refs/heads/feature", "after": SHA}).encode()

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=body, headers=github_headers(body))
        assert response.status == 202

    events = _run(scenario).events

    assert [event.branch for event in events if event is not None] == ["feature"]


def test_push_the_trigger_declines_is_answered_as_not_accepted() -> None:
    body = json.dumps({"ref": "refs/heads/feature", "after": SHA}).encode()

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=body, headers=github_headers(body))
        assert response.status == 200
        payload = await _json(response)
        assert payload == {"accepted": False, "ref": "refs/heads/feature", "reason": "BranchNotFollowed"}

    _run(scenario, follows="main")


def test_signed_but_malformed_push_gets_400() -> None:
    body = b'{"ref": 42}'

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=body, headers=github_headers(body))
        assert response.status == 400
        assert (await _json(response))["reason"] == "BadPayload"

    assert _run(scenario).events == []


def test_oversized_payload_rejected_with_413() -> None:
    big = b'{"ref": "refs/heads/main", "after": "' + b"a" * 2000 + b'"}'

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=big, headers=github_headers(big))
        assert response.status == 413
        assert (await _json(response))["reason"] == "PayloadTooLarge"

    assert _run(scenario, max_body_bytes=1024).events == []


def test_oversized_chunked_payload_without_content_length_rejected_with_413() -> None:
    chunk = b"x" * 256

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(16):  # 4 KiB in total, never announced in a Content-Length
            yield chunk

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}
        response = await client.post("/hooks/git", data=stream(), headers=headers)
        assert response.status == 413

    assert _run(scenario, max_body_bytes=1024).events == []


def test_payload_exactly_at_the_cap_is_accepted() -> None:
    prefix = b'{"ref": "refs/heads/main", "after": "' + SHA.encode() + b'", "pad": "'
    body = prefix + b"p" * (512 - len(prefix) - 2) + b'"}'
    assert len(body) == 512

    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=body, headers=github_headers(body))
        assert response.status == 202

    assert len(_run(scenario, max_body_bytes=512).events) == 1


def test_hook_without_configured_secret_answers_401_with_instructions() -> None:
    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/hooks/git", data=PUSH, headers=github_headers(PUSH, secret=b""))
        assert response.status == 401
        message = (await _json(response))["error"]
        assert "--webhook-secret-file" in message
        assert "RECONCILER_WEBHOOK_SECRET" in message

    assert _run(scenario, secret=None).events == []


def test_manual_sync_endpoint_triggers() -> None:
    async def scenario(client: TestClient[web.Request, web.Application], recorder: _Recorder) -> None:
        response = await client.post("/api/v1/sync")
        assert response.status == 202
        assert await _json(response) == {"accepted": True}
        assert (await client.get("/api/v1/sync")).status == 405

    assert _run(scenario).events == [None]


def test_trigger_failure_is_a_json_500() -> None:
    def broken(event: PushEvent | None) -> None:
        raise RuntimeError("queue closed")

    async def main() -> None:
        app = web.Application()
        app.add_routes(webhook_routes(secret=SECRET, trigger=broken))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.post("/api/v1/sync")
            assert response.status == 500
            assert (await _json(response))["reason"] == "TriggerFailed"

    asyncio.run(main())
