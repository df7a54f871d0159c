"""Who may call the HTTP API, how often, and how refusals are logged: one aiohttp middleware.

Every request falls in one class, by path and method (:func:`classify`):

- open: ``/healthz``, ``/readyz``, ``/metrics`` (probes and Prometheus), and unknown paths (404);
- read: ``GET``/``HEAD`` under ``/api/`` (status, rollouts);
- write: any other method under ``/api/`` (``POST /api/v1/sync``, rollout commands);
- hook: ``/hooks/`` — the push webhook, which proves its sender with its own HMAC signature.

Writes need ``Authorization: Bearer TOKEN`` (compared in constant time), and so do reads unless
``open_reads``. Missing or wrong: ``401`` with ``WWW-Authenticate: Bearer``. With no token
configured, an API listening on a loopback address only is open as before (a local setup, the
demo); on any other address reads and writes are refused with ``403`` and a hint, since anyone
who can reach the port could steer the mesh. Writes and hooks are also rate limited per client
address (a token bucket; ``429`` with ``Retry-After``).

A refused request is logged through :class:`RejectionLog`: the first per reason at once, the rest
counted and reported once per interval, so a flood of bad requests makes a few lines, not one each.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from aiohttp import web

__all__ = [
    "TOKEN_ENV",
    "AccessPolicy",
    "RateLimiter",
    "Refusal",
    "RejectionLog",
    "RequestClass",
    "access_middleware",
    "classify",
    "secured_application",
]

log = structlog.get_logger("reconciler.api")

#: Where the daemon and the CLI read the API token when no file is given.
TOKEN_ENV = "RECONCILER_API_TOKEN"
_REALM = 'Bearer realm="reconciler"'
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Client addresses whose buckets are kept; past it, full (idle) buckets are forgotten first.
_MAX_CLIENTS = 10_000


class RequestClass(StrEnum):
    OPEN = "open"
    READ = "read"
    WRITE = "write"
    HOOK = "hook"


def classify(method: str, path: str) -> RequestClass:
    """Which rules a request follows, by its method and path alone."""
    if path.startswith("/hooks/"):
        return RequestClass.HOOK
    if path.startswith("/api/"):
        return RequestClass.READ if method.upper() in _READ_METHODS else RequestClass.WRITE
    return RequestClass.OPEN


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessPolicy:
    """The token (``None``: none configured), whether reads are open, and whether the API is loopback-only."""

    token: bytes | None
    open_reads: bool = False
    loopback: bool = True

    def log_start(self, *, tls: bool) -> None:
        """Say once, at start, what the API lets through when that is more than a platform team expects."""
        if self.token is None and self.loopback:
            log.warning(
                "api.open_on_loopback",
                hint=f"no API token: any local user may sync and steer rollouts; set --api-token-file or {TOKEN_ENV}",
            )
        elif self.token is None:
            log.warning("api.no_token", hint="reads and writes under /api/ are refused (403) until a token is set")
        elif not tls and not self.loopback:
            log.warning("api.plaintext", hint="the bearer token crosses the network in clear: add --api-tls-cert/-key")

    def refusal(self, kind: RequestClass, authorization: str | None) -> Refusal | None:
        """The 401 or 403 ``kind`` of request gets with this ``Authorization`` header; ``None``: let it through."""
        if kind in (RequestClass.OPEN, RequestClass.HOOK) or (kind is RequestClass.READ and self.open_reads):
            return None
        if self.token is None:
            if self.loopback:
                return None
            return Refusal(
                status=403,
                message="the API has no token configured and listens beyond loopback, so it refuses this request: "
                f"start the daemon with --api-token-file FILE (or {TOKEN_ENV})"
                + ("" if kind is RequestClass.WRITE else ", or open reads with --api-open-reads"),
                reason="NoTokenConfigured",
            )
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return Refusal(
                status=401,
                message=f"this endpoint needs a bearer token: reconciler's --token-file FILE or {TOKEN_ENV}, "
                "or the header 'Authorization: Bearer TOKEN'",
                reason="MissingToken",
                challenge=_REALM,
            )
        # Hashed first, so the comparison's time does not reveal the token's length either.
        expected = hashlib.sha256(self.token).digest()
        received = hashlib.sha256(given.strip().encode("utf-8", errors="surrogateescape")).digest()
        if not hmac.compare_digest(expected, received):
            return Refusal(
                status=401,
                message="the bearer token is not this daemon's",
                reason="BadToken",
                challenge=_REALM + ', error="invalid_token"',
            )
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a request is turned away: its status, the message and reason it answers, and the 401's challenge."""

    status: int
    message: str
    reason: str
    challenge: str | None = None

    def response(self) -> web.Response:
        response = web.json_response({"error": self.message, "reason": self.reason}, status=self.status)
        if self.challenge is not None:
            response.headers["WWW-Authenticate"] = self.challenge
        return response


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, refilled at ``per_second``.

    ``per_second=0`` admits everything. The clock is injected (monotonic seconds) so tests step it.
    """

    def __init__(self, *, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_second
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, when)

    def admit(self, client: str) -> float:
        """0 when ``client`` may go on (a token is taken), else the seconds until it may."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        tokens, when = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - when) * self._rate)
        if len(self._buckets) >= _MAX_CLIENTS:
            self._forget(now)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def _forget(self, now: float) -> None:
        # A bucket that refilled is the same as none; if all are busy, the least recently seen go.
        for client, (tokens, when) in list(self._buckets.items()):
            if tokens + (now - when) * self._rate >= self._burst:
                del self._buckets[client]
        # Down to 90% at once, so a flood of new addresses costs one sweep per thousand, not one each.
        for client in list(self._buckets)[: max(0, len(self._buckets) - _MAX_CLIENTS * 9 // 10)]:
            del self._buckets[client]


@dataclass(slots=True)
class _Window:
    started: float
    fields: dict[str, Any]
    suppressed: int = 0


class RejectionLog:
    """Logs refused requests: each reason's first at once, then one line per ``interval`` with the count.

    Keys are (event, reason) — reasons come from code, never from the request — so the table stays small.
    """

    def __init__(self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def record(self, event: str, *, reason: str, **fields: Any) -> None:
        now = self._clock()
        window = self._windows.get((event, reason))
        if window is None:
            self._windows[(event, reason)] = _Window(started=now, fields=fields)
            log.warning(event, reason=reason, **fields)
            return
        window.suppressed += 1
        window.fields = fields
        if now - window.started >= self.interval:
            self._report(event, reason, window, now)

    def flush(self, *, final: bool = False) -> None:
        """Report the counts of windows that ended (``final``: of all); forget reasons that went quiet."""
        now = self._clock()
        for (event, reason), window in list(self._windows.items()):
            if final or now - window.started >= self.interval:
                if window.suppressed:
                    self._report(event, reason, window, now)
                else:
                    del self._windows[(event, reason)]

    def _report(self, event: str, reason: str, window: _Window, now: float) -> None:
        log.warning(
            event,
            reason=reason,
            **window.fields,
            suppressed=window.suppressed,
            over_seconds=round(now - window.started, 1),
        )
        window.started = now
        window.suppressed = 0

    async def run(self) -> None:
        """Flush every interval until cancelled (a background task of the application)."""
        while True:
            await asyncio.sleep(self.interval)
            self.flush()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def access_middleware(*, policy: AccessPolicy, limiter: RateLimiter, rejections: RejectionLog) -> Any:
    """The middleware: rate limit writes and hooks, then check the token; log refusals through ``rejections``."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = classify(request.method, request.path)
        client = request.remote or "unknown"
        if kind in (RequestClass.WRITE, RequestClass.HOOK):
            wait = limiter.admit(client)
            if wait > 0:
                rejections.record("api.rate_limited", reason="RateLimited", remote=client, path=request.path)
                response = Refusal(
                    status=429, message=f"too many requests from {client}: retry later", reason="RateLimited"
                ).response()
                response.headers["Retry-After"] = str(math.ceil(wait))
                return response
        refused = policy.refusal(kind, request.headers.get("Authorization"))
        if refused is not None:
            rejections.record("api.unauthorised", reason=refused.reason, remote=client, path=request.path)
            return refused.response()
        return await handler(request)

    return guard


def secured_application(
    *, policy: AccessPolicy, limiter: RateLimiter, rejections: RejectionLog, max_body_bytes: int
) -> web.Application:
    """An application with the access middleware, a body limit for every handler, and the refusal log's flush."""
    app = web.Application(
        middlewares=[access_middleware(policy=policy, limiter=limiter, rejections=rejections)],
        client_max_size=max_body_bytes,
    )

    async def flushing(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.ensure_future(rejections.run())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        rejections.flush(final=True)

    app.cleanup_ctx.append(flushing)
    return app
