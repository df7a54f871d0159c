"""HTTP endpoints that make the daemon sync now instead of at the next poll.

``POST /hooks/git`` takes GitHub and GitLab push webhooks (the provider is detected
from the headers) and ``POST /api/v1/sync`` is the manual "sync now". Both only
call ``trigger``: the engine decides whether a push concerns the followed branch and
always reads the commit from git, so a webhook can never inject config.

Mount with ``app.add_routes(webhook_routes(secret=..., trigger=...))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from reconciler.api.access import RejectionLog
from reconciler.errors import SignatureError, SourceError
from reconciler.sources.webhook import (
    GITHUB_SIGNATURE_HEADER,
    GITLAB_TOKEN_HEADER,
    MAX_JSON_DEPTH,
    Provider,
    PushEvent,
    detect_provider,
    parse_push_event,
    verify_github_signature,
    verify_gitlab_token,
)

__all__ = ["HOOK_PATH", "SYNC_PATH", "webhook_routes"]

HOOK_PATH = "/hooks/git"
SYNC_PATH = "/api/v1/sync"

log = structlog.get_logger(__name__)

_NO_SECRET_MESSAGE = (
    "webhooks are disabled: no webhook secret is configured. Start the daemon with "
    "--webhook-secret-file PATH or set RECONCILER_WEBHOOK_SECRET, and use the same secret "
    "in the git host's webhook settings."
)

Trigger = Callable[[PushEvent | None], bool]


def _error(status: int, message: str, *, reason: str) -> web.Response:
    return web.json_response({"accepted": False, "error": message, "reason": reason}, status=status)


class _TooLarge(Exception):
    """Internal: the body exceeded the cap."""


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The request body, reading at most ``limit + 1`` bytes whatever Content-Length says.

    Content-Length is only used to refuse early; a chunked or lying request is cut
    off by counting what actually arrives.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    received = 0
    while received <= limit:
        chunk = await request.content.read(limit + 1 - received)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    if received > limit:
        raise _TooLarge
    return b"".join(chunks)


def _verify(provider: Provider, request: web.Request, body: bytes, secret: bytes) -> None:
    if provider is Provider.GITHUB:
        verify_github_signature(body, header=request.headers.get(GITHUB_SIGNATURE_HEADER), secret=secret)
    else:
        verify_gitlab_token(request.headers.get(GITLAB_TOKEN_HEADER), secret)


def webhook_routes(
    *,
    secret: bytes | None,
    trigger: Trigger,
    max_body_bytes: int = 1 << 20,
    max_json_depth: int = MAX_JSON_DEPTH,
    rejections: RejectionLog | None = None,
) -> list[web.RouteDef]:
    """The routes for ``POST /hooks/git`` and ``POST /api/v1/sync``.

    ``trigger`` is called on the event loop (it must not block): with the
    :class:`PushEvent` for a verified push, with ``None`` for a manual sync. It returns
    whether a sync was scheduled (False: e.g. a push to a branch that is not followed).
    ``secret=None`` keeps the hook endpoint closed (401 with set-up instructions). Refused pushes are
    logged through ``rejections`` (a few lines per interval, however many arrive).
    """
    refused = rejections if rejections is not None else RejectionLog()

    def _fire(event: PushEvent | None) -> web.Response | None:
        try:
            scheduled = trigger(event)
        except Exception:
            log.exception("webhook.trigger_failed", reason="TriggerFailed")
            return _error(500, "the sync could not be scheduled", reason="TriggerFailed")
        if not scheduled:
            ref = event.ref if event is not None else None
            return web.json_response({"accepted": False, "ref": ref, "reason": "BranchNotFollowed"})
        return None

    async def hook(request: web.Request) -> web.Response:
        if not secret:
            refused.record("webhook.rejected", reason="NoSecretConfigured", remote=request.remote)
            return _error(401, _NO_SECRET_MESSAGE, reason="NoSecretConfigured")
        try:
            body = await _read_capped(request, max_body_bytes)
        except _TooLarge:
            refused.record("webhook.rejected", reason="PayloadTooLarge", limit=max_body_bytes, remote=request.remote)
            return _error(413, f"payload larger than {max_body_bytes} bytes", reason="PayloadTooLarge")
        provider = detect_provider(request.headers)
        if provider is None:
            refused.record("webhook.rejected", reason="BadSignature", remote=request.remote, detail="unknown sender")
            return _error(
                401,
                f"missing signature: expected {GITHUB_SIGNATURE_HEADER} (GitHub) or {GITLAB_TOKEN_HEADER} (GitLab)",
                reason="BadSignature",
            )
        try:
            _verify(provider, request, body, secret)
        except SignatureError as error:
            refused.record("webhook.rejected", reason=error.reason, provider=str(provider), remote=request.remote)
            return _error(401, str(error), reason=error.reason)
        try:
            event = parse_push_event(provider=provider, headers=request.headers, body=body, max_depth=max_json_depth)
        except SourceError as error:
            refused.record("webhook.rejected", reason=error.reason, provider=str(provider), error=str(error))
            return _error(400, str(error), reason=error.reason)
        if event is None:
            # Ping (sent when the hook is created) and other event types: say hello, sync nothing.
            log.info("webhook.ignored", provider=str(provider), reason="NotAPush")
            return web.json_response({"accepted": False, "provider": str(provider), "reason": "NotAPush"})
        failed = _fire(event)
        if failed is not None:
            return failed
        log.info("webhook.accepted", provider=str(provider), ref=event.ref, after=event.after_sha[:12])
        payload: dict[str, Any] = {
            "accepted": True,
            "provider": str(provider),
            "ref": event.ref,
            "after": event.after_sha,
        }
        return web.json_response(payload, status=202)

    async def sync(request: web.Request) -> web.Response:
        failed = _fire(None)
        if failed is not None:
            return failed
        log.info("sync.requested", remote=request.remote)
        return web.json_response({"accepted": True}, status=202)

    return [web.post(HOOK_PATH, hook), web.post(SYNC_PATH, sync)]
