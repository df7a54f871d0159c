"""Bounded HTTP/1.1 traffic through an Envoy listener, counted by who answered and how.

:func:`send_requests` sends a fixed number of requests as fast as a few keep-alive
connections allow; :func:`send_at_rate` paces them (requests per second for a duration).
Both stop at a hard deadline whatever happens, so a broken proxy cannot hang a test.

What a :class:`TrafficResult` records, per response:

* ``by_status``: the HTTP status.
* ``by_version``: the ``x-version`` header our :mod:`~reconciler.harness.upstream` servers
  set, i.e. which upstream answered, whatever the status. Responses without it are
  Envoy's own (local) replies and are not counted here.
* ``by_body``: the body text (first 200 characters), for anything else worth checking.
* ``local_replies``: Envoy's local replies keyed by response flag. The flag is read from an
  ``x-response-flags`` header when the route adds one (``%RESPONSE_FLAGS%``); otherwise it
  is recognised from Envoy's fixed local-reply bodies: 503 ``no healthy upstream`` → ``UH``,
  503 empty → ``NC`` (route to an unknown cluster), 404 empty → ``NR`` (no route),
  503 ``upstream connect error ... connection failure`` → ``UF``, 504
  ``upstream request timeout`` → ``UT``, ``fault filter abort`` → ``FI``; anything else
  from Envoy without a version header counts as ``local``.
* ``errors``: transport failures (refused, reset, timeout) by kind; nothing was received.
* ``latencies_ms``: client-side latency of every received response, from the moment the
  request was written until the body was read.
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.errors import UsageError
from reconciler.harness.upstream import VERSION_HEADER

__all__ = [
    "MAX_REQUESTS",
    "RESPONSE_FLAGS_HEADER",
    "TrafficResult",
    "send_at_rate",
    "send_requests",
]

#: Hard cap on one run, so a typo (rate=100000, duration=600) cannot flood a laptop.
MAX_REQUESTS = 200_000
#: Header a route may add with value ``%RESPONSE_FLAGS%``; when present it is trusted over body heuristics.
RESPONSE_FLAGS_HEADER = "x-response-flags"
_BODY_KEEP = 200
_MAX_WORKERS = 64


@dataclass(frozen=True, slots=True)
class TrafficResult:
    """What a traffic run saw. ``requested`` were planned, ``sent`` attempted before the deadline."""

    requested: int
    sent: int
    by_status: Counter[int]
    by_version: Counter[str]
    by_body: Counter[str]
    local_replies: Counter[str]
    errors: Counter[str]
    latencies_ms: tuple[float, ...]
    elapsed_s: float
    deadline_hit: bool = field(default=False)

    @property
    def responses(self) -> int:
        """Requests that got any HTTP response (upstream or Envoy's own)."""
        return sum(self.by_status.values())

    @property
    def nc(self) -> int:
        """Envoy replies for a route whose cluster does not exist (flag ``NC``)."""
        return self.local_replies["NC"]

    @property
    def uh(self) -> int:
        """Envoy replies because the cluster had no healthy host (flag ``UH``)."""
        return self.local_replies["UH"]

    def share(self, version: str) -> float:
        """Percentage (0..100) of all responses that ``version`` answered; 0 if none came back."""
        return 100.0 * self.by_version[version] / self.responses if self.responses else 0.0

    def status_share(self, status: int) -> float:
        """Percentage (0..100) of all responses with HTTP ``status``."""
        return 100.0 * self.by_status[status] / self.responses if self.responses else 0.0

    def percentile(self, pct: float) -> float:
        """Latency in ms at ``pct`` (0..100), nearest-rank; 0.0 when nothing was received."""
        if not 0.0 <= pct <= 100.0:
            raise UsageError(f"percentile must be within 0..100, got {pct}")
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float:
        """Median latency in ms."""
        return self.percentile(50)

    @property
    def p90(self) -> float:
        """90th percentile latency in ms."""
        return self.percentile(90)

    @property
    def p99(self) -> float:
        """99th percentile latency in ms."""
        return self.percentile(99)


def send_requests(
    *,
    port: int,
    count: int,
    host: str = "127.0.0.1",
    authority: str | None = None,
    path: str = "/",
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    workers: int = 4,
    request_timeout: float = 5.0,
    deadline: float = 60.0,
) -> TrafficResult:
    """Send ``count`` requests to ``host:port`` over ``workers`` keep-alive connections, as fast as possible.

    ``authority`` is sent as the Host header (what Envoy matches virtual hosts on);
    default ``host:port``. Stops early when ``deadline`` seconds have passed.
    """
    _check_common(port=port, workers=workers, request_timeout=request_timeout, deadline=deadline)
    if not 0 < count <= MAX_REQUESTS:
        raise UsageError(f"count must be within 1..{MAX_REQUESTS}, got {count}")
    plan = _Plan.of(host=host, port=port, authority=authority, path=path, method=method, headers=headers, body=body)
    return _run(plan, total=count, interval=0.0, workers=workers, request_timeout=request_timeout, deadline=deadline)


def send_at_rate(
    *,
    port: int,
    rate: float,
    duration: float,
    host: str = "127.0.0.1",
    authority: str | None = None,
    path: str = "/",
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    workers: int = 4,
    request_timeout: float = 5.0,
) -> TrafficResult:
    """Send ``rate`` requests per second for ``duration`` seconds (``rate * duration`` in all).

    Requests are scheduled at even intervals; a worker that falls behind (slow upstream,
    too few ``workers``) sends at once rather than skipping, so the count is exact but
    the rate may sag. The run ends by ``duration + request_timeout + 1`` seconds at the latest.
    """
    if rate <= 0 or duration <= 0:
        raise UsageError(f"rate and duration must be positive, got rate={rate} duration={duration}")
    total = round(rate * duration)
    if not 0 < total <= MAX_REQUESTS:
        raise UsageError(f"rate x duration must give 1..{MAX_REQUESTS} requests, got {total}")
    deadline = duration + request_timeout + 1.0
    _check_common(port=port, workers=workers, request_timeout=request_timeout, deadline=deadline)
    plan = _Plan.of(host=host, port=port, authority=authority, path=path, method=method, headers=headers, body=body)
    return _run(
        plan, total=total, interval=1.0 / rate, workers=workers, request_timeout=request_timeout, deadline=deadline
    )


def _check_common(*, port: int, workers: int, request_timeout: float, deadline: float) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"port must be within 1..65535, got {port}")
    if not 0 < workers <= _MAX_WORKERS:
        raise UsageError(f"workers must be within 1..{_MAX_WORKERS}, got {workers}")
    if request_timeout <= 0 or deadline <= 0:
        raise UsageError("request_timeout and deadline must be positive")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every request of a run sends, and where."""

    host: str
    port: int
    authority: str
    path: str
    method: str
    headers: dict[str, str]
    body: bytes | None

    @classmethod
    def of(
        cls,
        *,
        host: str,
        port: int,
        authority: str | None,
        path: str,
        method: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
    ) -> _Plan:
        """The plan for the public functions' arguments: the Host header defaults to ``host:port``."""
        return cls(
            host=host,
            port=port,
            authority=authority or f"{host}:{port}",
            path=path,
            method=method,
            headers=dict(headers or {}),
            body=body,
        )


@dataclass(slots=True)
class _Tally:
    """One worker's counts; merged after the run so workers never contend on a lock per response."""

    sent: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)
    by_body: Counter[str] = field(default_factory=Counter)
    local_replies: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)


class _Schedule:
    """Hands out request slots to workers: slot ``i`` may start at ``start + i * interval``."""

    def __init__(self, *, total: int, interval: float, start: float, stop_at: float) -> None:
        self._total = total
        self._interval = interval
        self._start = start
        self._stop_at = stop_at
        self._next = 0
        self._lock = threading.Lock()
        self.deadline_hit = False

    def take(self) -> float | None:
        """The start time of the next slot, or None when all are taken or time is up."""
        with self._lock:
            if self._next >= self._total:
                return None
            if time.monotonic() >= self._stop_at:
                self.deadline_hit = True
                return None
            when = self._start + self._next * self._interval
            self._next += 1
            return when

    def seconds_left(self) -> float:
        return self._stop_at - time.monotonic()


def _run(
    plan: _Plan, *, total: int, interval: float, workers: int, request_timeout: float, deadline: float
) -> TrafficResult:
    """Send ``total`` requests over ``min(workers, total)`` connections, slots ``interval`` seconds apart."""
    started = time.monotonic()
    schedule = _Schedule(total=total, interval=interval, start=started, stop_at=started + deadline)
    tallies = [_Tally() for _ in range(min(workers, total))]
    threads = [
        threading.Thread(
            target=_worker, args=(plan, schedule, tally, request_timeout), name=f"traffic-{i}", daemon=True
        )
        for i, tally in enumerate(tallies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A request in flight at the deadline may still take request_timeout to give up.
        thread.join(timeout=max(0.0, schedule.seconds_left()) + request_timeout + 1.0)
    elapsed = time.monotonic() - started

    merged = _Tally()
    for tally in tallies:
        merged.sent += tally.sent
        merged.by_status.update(tally.by_status)
        merged.by_version.update(tally.by_version)
        merged.by_body.update(tally.by_body)
        merged.local_replies.update(tally.local_replies)
        merged.errors.update(tally.errors)
        merged.latencies_ms.extend(tally.latencies_ms)
    return TrafficResult(
        requested=total,
        sent=merged.sent,
        by_status=merged.by_status,
        by_version=merged.by_version,
        by_body=merged.by_body,
        local_replies=merged.local_replies,
        errors=merged.errors,
        latencies_ms=tuple(merged.latencies_ms),
        elapsed_s=elapsed,
        deadline_hit=schedule.deadline_hit or any(thread.is_alive() for thread in threads),
    )


def _worker(plan: _Plan, schedule: _Schedule, tally: _Tally, request_timeout: float) -> None:
    headers = {"Host": plan.authority, **plan.headers}
    connection: http.client.HTTPConnection | None = None
    try:
        while (when := schedule.take()) is not None:
            wait = when - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if connection is None:
                connection = http.client.HTTPConnection(plan.host, plan.port, timeout=request_timeout)
            tally.sent += 1
            began = time.perf_counter()
            try:
                connection.request(plan.method, plan.path, body=plan.body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as error:
                tally.errors[_error_kind(error)] += 1
                # The connection state is unknown after a failure; start a fresh one.
                connection.close()
                connection = None
                continue
            tally.latencies_ms.append((time.perf_counter() - began) * 1000.0)
            _count(tally, response, payload)
            if response.will_close:
                connection.close()
                connection = None
    finally:
        if connection is not None:
            connection.close()


def _count(tally: _Tally, response: http.client.HTTPResponse, payload: bytes) -> None:
    text = payload.decode("utf-8", errors="replace").strip()
    tally.by_status[response.status] += 1
    tally.by_body[text[:_BODY_KEEP]] += 1
    version = response.getheader(VERSION_HEADER)
    if version is not None:
        tally.by_version[version] += 1
    flags = response.getheader(RESPONSE_FLAGS_HEADER)
    if flags and flags != "-":
        if version is None:
            tally.local_replies[flags] += 1
    elif version is None:
        tally.local_replies[_guess_flag(response.status, text)] += 1


def _guess_flag(status: int, body: str) -> str:
    """Envoy's response flag for a local reply, from the fixed bodies Envoy 1.x sends."""
    if body == "no healthy upstream":
        return "UH"
    if body == "fault filter abort":
        return "FI"
    if body == "upstream request timeout":
        return "UT"
    if body.startswith("upstream connect error or disconnect/reset before headers"):
        if "connection failure" in body:
            return "UF"
        if "overflow" in body:
            return "UO"
        return "UC"
    if not body and status == 503:
        return "NC"
    if not body and status == 404:
        return "NR"
    return "local"


def _error_kind(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | http.client.RemoteDisconnected | BrokenPipeError):
        return "reset"
    return type(error).__name__
