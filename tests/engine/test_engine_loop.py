"""The daemon loop: transient failures retry soon, a refused commit waits for news."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from reconciler.engine.daemon import _loop, _Metrics
from reconciler.engine.status import EngineStatus, Reason
from reconciler.xds.cache import SnapshotCache


@dataclass
class _FailingEngine:
    """Fails every pass with one reason and counts the passes."""

    reason: Reason
    passes: int = 0
    status: EngineStatus = field(default_factory=lambda: EngineStatus(repo="r", branch="main", path=""))

    async def reconcile(self, *, trigger: str) -> bool:
        self.passes += 1
        self.status.reason = self.reason
        return False


def _passes_within(reason: Reason, *, seconds: float, poll_interval: float) -> int:
    engine = _FailingEngine(reason)

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(
            _loop(
                engine=engine,
                metrics=_Metrics(cache=SnapshotCache()),
                wake=asyncio.Event(),
                stop=stop,
                poll_interval=poll_interval,
            )
        )
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait_for(loop, timeout=5)

    asyncio.run(scenario())
    return engine.passes


@pytest.mark.parametrize("reason", [Reason.FETCH_FAILED, Reason.STATE_FAILED])
def test_a_transient_failure_is_retried_before_the_poll_interval(reason: Reason) -> None:
    assert _passes_within(reason, seconds=2.0, poll_interval=30.0) >= 2


@pytest.mark.parametrize("reason", [Reason.VALIDATION_FAILED, Reason.TRANSLATION_FAILED])
def test_a_refused_commit_is_not_retried_before_the_poll_interval(reason: Reason) -> None:
    assert _passes_within(reason, seconds=2.0, poll_interval=30.0) == 1
