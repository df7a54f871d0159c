"""Retry delays for a failing source: exponential growth, a cap, and full jitter.

Full jitter (delay drawn uniformly from ``[0, min(cap, base * factor**n)]``) keeps
many daemons that lost the same git server at the same moment from retrying in
lock-step when it comes back. Pure: the random source is injected, nothing sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from reconciler.errors import UsageError

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff with full jitter.

    ``rng`` returns a float in ``[0, 1)`` (``random.random`` by default; tests pass a
    seeded ``random.Random(seed).random`` or a constant). Call :meth:`next_delay`
    after each failure and :meth:`reset` after a success.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 300.0,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0:
            raise UsageError(f"backoff base must be > 0, got {base}")
        if cap < base:
            raise UsageError(f"backoff cap ({cap}) must be >= base ({base})")
        if factor < 1:
            raise UsageError(f"backoff factor must be >= 1, got {factor}")
        self._base = base
        self._cap = cap
        self._factor = factor
        self._rng = rng
        self._attempts = 0
        self._ceiling = base

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last :meth:`reset`."""
        return self._attempts

    @property
    def ceiling(self) -> float:
        """The upper bound of the next delay: ``min(cap, base * factor**attempts)``."""
        return self._ceiling

    @property
    def cap(self) -> float:
        """No delay is ever longer than this."""
        return self._cap

    def next_delay(self) -> float:
        """The seconds to wait before the next attempt; grows the bound for the one after."""
        ceiling = self._ceiling
        # Clamp: an injected rng that strays outside [0, 1) must not break the contract.
        fraction = min(max(self._rng(), 0.0), 1.0)
        self._attempts += 1
        # The bound grows multiplicatively and stops at the cap, so it never overflows
        # however long the outage lasts (base * factor**n would, after ~1000 failures).
        self._ceiling = min(self._cap, ceiling * self._factor)
        return fraction * ceiling

    def reset(self) -> None:
        """Start over from ``base`` (call after a success)."""
        self._attempts = 0
        self._ceiling = self._base
