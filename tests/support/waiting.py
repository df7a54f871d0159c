"""Wait until something holds: the one polling helper of the tests (no timed assertions, generous deadlines).

``wait_for`` polls from a plain thread; ``wait_for_async`` from a test's event loop (with ``off_loop`` for a
blocking check, such as Envoy's admin API, so the loop keeps serving meanwhile). Both return the first truthy
value the check gave, and fail with an AssertionError that names what was awaited, what was last seen and the
last error the check raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEADLINE", "NOT_READY", "wait_for", "wait_for_async"]

DEADLINE = 30.0
"""Seconds: generous on a loaded two-core machine; a deadline bounds a failure, it measures nothing."""

NOT_READY: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, TypeError)
"""What a check raises while its subject is still starting: refused connections, half-written documents."""

T = TypeVar("T")


class _Poll:
    """The bookkeeping both loops share: the deadline, the last error, the failure message."""

    def __init__(self, what: str, *, timeout: float, seen: Callable[[], object] | None) -> None:
        self.what = what
        self.timeout = timeout
        self.seen = seen
        self.deadline = time.monotonic() + timeout
        self.last_error: Exception | None = None

    def attempt(self, check: Callable[[], T | None]) -> T | None:
        try:
            return check()
        except NOT_READY as error:
            self.last_error = error
            return None

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def failure(self) -> AssertionError:
        saw = f"; saw {self.seen()}" if self.seen is not None else ""
        error = f" (last error: {self.last_error!r})" if self.last_error is not None else ""
        return AssertionError(f"timed out after {self.timeout:g}s waiting for {self.what}{saw}{error}")


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float = DEADLINE,
    interval: float = 0.05,
    seen: Callable[[], object] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy and return that; a ``NOT_READY`` error counts as not yet.

    ``seen`` says what the subject looked like when the deadline passed (for the failure message).
    """
    poll = _Poll(what, timeout=timeout, seen=seen)
    while True:
        value = poll.attempt(check)
        if value:
            return value
        if poll.expired():
            raise poll.failure()
        time.sleep(interval)


async def wait_for_async(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float = DEADLINE,
    interval: float = 0.05,
    seen: Callable[[], object] | None = None,
    off_loop: bool = False,
) -> T:
    """:func:`wait_for` inside an event loop; ``off_loop`` runs a blocking ``check`` on a worker thread."""
    poll = _Poll(what, timeout=timeout, seen=seen)

    def attempt() -> T | None:
        return poll.attempt(check)

    while True:
        value = await asyncio.to_thread(attempt) if off_loop else attempt()
        if value:
            return value
        if poll.expired():
            raise poll.failure()
        await asyncio.sleep(interval)
