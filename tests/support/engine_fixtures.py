"""Engine fixtures: an in-memory source, a real SnapshotCache, a SQLite store in tmp_path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from memsource import EngineFactory, MemorySource

from reconciler.engine.guard import RemovalGuard
from reconciler.engine.reconcile import Engine
from reconciler.engine.state import SqliteStateStore
from reconciler.engine.status import EngineStatus
from reconciler.xds.cache import SnapshotCache

T = TypeVar("T")


class TickingClock:
    """A clock that moves one second per reading, so every timestamp differs."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def source() -> MemorySource:
    return MemorySource()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def make_engine(state_dir: Path) -> EngineFactory:
    """``make_engine(source, cache)``: an Engine like the daemon builds, files shown under ``mesh/``.

    ``repo``, ``branch`` and ``path`` name the source as the daemon's flags would; ``rollback_on_nack``
    is ``--no-rollback-on-nack`` negated; ``removal_guard`` as ``--max-removal-percent`` and
    ``--allow-empty`` set it; ``cluster_domain`` as ``--kubeconfig`` sets it (a watched cluster's DNS domain).
    """

    def make(
        source: MemorySource,
        cache: SnapshotCache,
        *,
        repo: str = "mem://mesh",
        branch: str = "main",
        path: str = "mesh",
        rollback_on_nack: bool = True,
        removal_guard: RemovalGuard | None = None,
        cluster_domain: str | None = None,
    ) -> Engine:
        return Engine(
            source=source,
            cache=cache,
            store=SqliteStateStore(state_dir),
            status=EngineStatus(repo=repo, branch=branch, path=path),
            clock=TickingClock(),
            file_prefix="mesh/",
            rollback_on_nack=rollback_on_nack,
            removal_guard=removal_guard,
            cluster_domain=cluster_domain,
        )

    return make


@pytest.fixture
def run() -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """``run(coro)`` on one event loop kept for the whole test (the engine's ACK watches live on it)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete

    async def cancel_leftovers() -> None:
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    loop.run_until_complete(cancel_leftovers())
    loop.close()
