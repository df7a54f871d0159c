"""Cooperative cancellation of long pure computations (loading, analysis, translation).

The pure core takes a :data:`Checkpoint` as a parameter and calls it between units of
work (files, resources, analyzers, proxies). The caller decides what it does: the daemon
raises :class:`~reconciler.errors.Cancelled` from it once it is stopping, so a pass over
a huge config ends within one unit of work instead of running to the end in a thread
that keeps the process alive. No state here: whatever the checkpoint consults is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Checkpoint", "no_checkpoint"]

#: Called between units of work; raises to stop the computation, returns to let it go on.
Checkpoint = Callable[[], None]


def no_checkpoint() -> None:
    """The checkpoint of a computation nobody stops (the CLI, tests)."""
