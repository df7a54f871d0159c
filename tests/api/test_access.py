"""Who may call the HTTP API, how often, and how refusals are logged: the access middleware on a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs
from webhooks import PUSH, SECRET, github_headers

from reconciler.api.access import AccessPolicy, RateLimiter, RejectionLog, RequestClass, classify, secured_application
from reconciler.api.webhook import webhook_routes

TOKEN = b"api-token-7c1e"
Client = TestClient[web.Request, web.Application]
Scenario = Callable[[Client], Awaitable[None]]


class _Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _serve(
    scenario: Scenario,
    *,
    policy: AccessPolicy,
    limiter: RateLimiter | None = None,
    rejections: RejectionLog | None = None,
) -> None:
    """The webhook and sync routes, a status GET and /healthz behind the middleware, on a loopback TestServer."""
    rejections = rejections or RejectionLog()

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"served": "abc"})

    async def main() -> None:
        app = secured_application(
            policy=policy,
            limiter=limiter or RateLimiter(per_second=0, burst=1),
            rejections=rejections,
            max_body_bytes=1 << 20,
        )
        app.add_routes(webhook_routes(secret=SECRET, trigger=lambda _: True, rejections=rejections))
        app.add_routes([web.get("/api/v1/status", status), web.get("/healthz", status), web.get("/metrics", status)])
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await scenario(client)

    asyncio.run(main())


def _bearer(token: bytes) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.decode()}"}


def test_a_post_needs_the_bearer_token_missing_or_wrong_is_401_with_a_bearer_challenge() -> None:
    async def scenario(client: Client) -> None:
        missing = await client.post("/api/v1/sync")
        assert missing.status == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="reconciler"'
        assert "--token-file" in (await missing.json())["error"]
        wrong = await client.post("/api/v1/sync", headers=_bearer(b"not-" + TOKEN))
        assert wrong.status == 401
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        assert TOKEN.decode() not in await wrong.text()
        basic = await client.post("/api/v1/sync", headers={"Authorization": "Basic " + TOKEN.decode()})
        assert basic.status == 401
        right = await client.post("/api/v1/sync", headers=_bearer(TOKEN))
        assert right.status == 202

    _serve(scenario, policy=AccessPolicy(token=TOKEN, loopback=False))


def test_reads_need_the_token_unless_opened_and_probes_and_metrics_never_do() -> None:
    async def closed(client: Client) -> None:
        assert (await client.get("/api/v1/status")).status == 401
        assert (await client.get("/api/v1/status", headers=_bearer(TOKEN))).status == 200
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/metrics")).status == 200

    async def opened(client: Client) -> None:
        assert (await client.get("/api/v1/status")).status == 200
        assert (await client.post("/api/v1/sync")).status == 401  # writes stay closed

    _serve(closed, policy=AccessPolicy(token=TOKEN, loopback=False))
    _serve(opened, policy=AccessPolicy(token=TOKEN, open_reads=True, loopback=False))


def test_the_webhook_proves_itself_with_its_signature_not_the_api_token() -> None:
    async def scenario(client: Client) -> None:
        response = await client.post("/hooks/git", data=PUSH, headers=github_headers(PUSH))
        assert response.status == 202
        forged = await client.post("/hooks/git", data=PUSH, headers=github_headers(PUSH, secret=b"guess"))
        assert forged.status == 401

    _serve(scenario, policy=AccessPolicy(token=TOKEN, loopback=False))


def test_without_a_token_a_loopback_api_is_open_and_any_other_refuses_api_requests_with_a_hint() -> None:
    async def loopback(client: Client) -> None:
        assert (await client.post("/api/v1/sync")).status == 202
        assert (await client.get("/api/v1/status")).status == 200

    async def exposed(client: Client) -> None:
        write = await client.post("/api/v1/sync")
        assert write.status == 403
        body = await write.json()
        assert body["reason"] == "NoTokenConfigured"
        assert "--api-token-file" in body["error"]
        read = await client.get("/api/v1/status")
        assert read.status == 403
        assert "--api-open-reads" in (await read.json())["error"]
        assert (await client.get("/healthz")).status == 200

    async def exposed_open_reads(client: Client) -> None:
        assert (await client.get("/api/v1/status")).status == 200
        assert (await client.post("/api/v1/sync")).status == 403

    _serve(loopback, policy=AccessPolicy(token=None, loopback=True))
    _serve(exposed, policy=AccessPolicy(token=None, loopback=False))
    _serve(exposed_open_reads, policy=AccessPolicy(token=None, open_reads=True, loopback=False))


def test_posts_past_the_burst_get_429_with_retry_after_and_the_bucket_refills_with_time() -> None:
    clock = _Clock()

    async def scenario(client: Client) -> None:
        for _ in range(3):
            assert (await client.post("/api/v1/sync", headers=_bearer(TOKEN))).status == 202
        limited = await client.post("/api/v1/sync", headers=_bearer(TOKEN))
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "2"  # one token at 0.5/s
        hook = await client.post("/hooks/git", data=PUSH, headers=github_headers(PUSH))
        assert hook.status == 429  # the same client's bucket
        assert (await client.get("/api/v1/status", headers=_bearer(TOKEN))).status == 200  # reads are not limited
        clock.now += 2.0
        assert (await client.post("/api/v1/sync", headers=_bearer(TOKEN))).status == 202

    _serve(
        scenario,
        policy=AccessPolicy(token=TOKEN, loopback=False),
        limiter=RateLimiter(per_second=0.5, burst=3, clock=clock),
    )


def test_a_flood_of_refused_requests_makes_one_line_then_one_count_per_interval() -> None:
    clock = _Clock()
    rejections = RejectionLog(interval=10.0, clock=clock)

    async def scenario(client: Client) -> None:
        for _ in range(2500):
            assert (await client.post("/api/v1/sync", headers=_bearer(b"guess"))).status == 401
        clock.now += 10.0
        rejections.flush()

    with capture_logs() as logs:
        _serve(scenario, policy=AccessPolicy(token=TOKEN, loopback=False), rejections=rejections)
    refused = [entry for entry in logs if entry["event"] == "api.unauthorised"]
    assert len(refused) == 2
    assert refused[0]["reason"] == "BadToken"
    assert refused[1]["suppressed"] == 2499


def test_a_flood_of_bad_webhook_signatures_is_counted_not_logged_one_by_one() -> None:
    clock = _Clock()
    rejections = RejectionLog(interval=10.0, clock=clock)

    async def scenario(client: Client) -> None:
        for _ in range(300):
            forged = await client.post("/hooks/git", data=PUSH, headers=github_headers(PUSH, secret=b"guess"))
            assert forged.status == 401

    with capture_logs() as logs:
        _serve(scenario, policy=AccessPolicy(token=TOKEN), rejections=rejections)
    rejected = [entry for entry in logs if entry["event"] == "webhook.rejected"]
    # The first at once; the other 299 in the summary the application's shutdown flushes.
    assert [entry.get("suppressed") for entry in rejected] == [None, 299]


def test_a_signed_webhook_nested_100k_levels_deep_is_400_not_a_recursion_error() -> None:
    deep = b'{"ref": "refs/heads/main", "after": "x", "nested": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    async def scenario(client: Client) -> None:
        response = await client.post("/hooks/git", data=deep, headers=github_headers(deep))
        assert response.status == 400
        body = await response.json()
        assert body["reason"] == "BadPayload"
        assert "deeper than" in body["error"]

    with capture_logs() as logs:
        _serve(scenario, policy=AccessPolicy(token=None))
    assert not [entry for entry in logs if entry.get("log_level") in ("error", "critical") or "exc_info" in entry]


def test_a_client_s_bucket_is_forgotten_once_refilled_so_many_addresses_cannot_grow_the_table() -> None:
    clock = _Clock()
    limiter = RateLimiter(per_second=1.0, burst=2, clock=clock)
    for number in range(20_000):
        limiter.admit(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter._buckets) <= 10_000
    assert limiter.admit("10.0.0.0") == 0.0  # forgotten, so a full bucket again


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/api/v1/status", RequestClass.READ),
        ("HEAD", "/api/v1/rollouts", RequestClass.READ),
        ("POST", "/api/v1/sync", RequestClass.WRITE),
        ("DELETE", "/api/v1/anything", RequestClass.WRITE),
        ("POST", "/api/v1/rollouts/default/reviews/abort", RequestClass.WRITE),
        ("POST", "/hooks/git", RequestClass.HOOK),
        ("GET", "/metrics", RequestClass.OPEN),
        ("GET", "/readyz", RequestClass.OPEN),
    ],
)
def test_every_request_under_api_is_a_read_or_a_write_by_its_method(method: str, path: str, kind: RequestClass) -> None:
    assert classify(method, path) is kind
