"""The daemon loop: transient failures retry soon, a refused commit waits for news, a stop cuts a pass short."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from memsource import EngineFactory, MemorySource, mesh_files

from reconciler.engine.daemon import _loop
from reconciler.engine.heap import StartupHeap
from reconciler.engine.reconcile import Engine, PassResult
from reconciler.engine.status import EngineStatus, Reason
from reconciler.engine.telemetry import DaemonMetrics
from reconciler.errors import PathNotFoundError, SourceAborted
from reconciler.sources.revision import Revision
from reconciler.xds.cache import SnapshotCache


@dataclass
class _FailingEngine:
    """Fails every pass with one reason, a retry asked for or not (the engine decides, by failure), and counts them."""

    reason: Reason
    retry: bool
    passes: int = 0
    status: EngineStatus = field(default_factory=lambda: EngineStatus(repo="r", branch="main", path=""))

    async def reconcile(self, *, trigger: str) -> PassResult:
        self.passes += 1
        self.status.reason = self.reason
        return PassResult(ok=False, reason=self.reason, retry=self.retry)


def _passes_within(reason: Reason, *, retry: bool, seconds: float, poll_interval: float) -> int:
    engine = _FailingEngine(reason, retry)
    _run_loop(engine, seconds=seconds, poll_interval=poll_interval)
    return engine.passes


def _run_loop(engine: _FailingEngine | Engine, *, seconds: float, poll_interval: float) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(
            _loop(
                engine=engine,
                metrics=DaemonMetrics(cache=SnapshotCache()),
                wake=asyncio.Event(),
                stop=stop,
                poll_interval=poll_interval,
                abort=lambda: None,
                heap=StartupHeap(),
            )
        )
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait_for(loop, timeout=5)

    asyncio.run(scenario())


@pytest.mark.parametrize("reason", [Reason.FETCH_FAILED, Reason.STATE_FAILED])
def test_a_transient_failure_is_retried_before_the_poll_interval(reason: Reason) -> None:
    assert _passes_within(reason, retry=True, seconds=2.0, poll_interval=30.0) >= 2


@pytest.mark.parametrize(
    "reason", [Reason.VALIDATION_FAILED, Reason.TRANSLATION_FAILED, Reason.PATH_NOT_FOUND, Reason.REJECTED]
)
def test_a_refused_commit_is_not_retried_before_the_poll_interval(reason: Reason) -> None:
    assert _passes_within(reason, retry=False, seconds=2.0, poll_interval=30.0) == 1


class _HungSource(MemorySource):
    """A poll that hangs like a fetch from a silent remote, ended only by ``abort()`` (or ``release()``).

    As the protocol allows, ``abort()`` before the poll has started does nothing; ``start_delay``
    widens that window. With ``honours_abort=False`` the poll ignores abort altogether.
    """

    def __init__(self, *, start_delay: float = 0.0, honours_abort: bool = True) -> None:
        super().__init__()
        self._start_delay = start_delay
        self._honours_abort = honours_abort
        self._running = threading.Event()
        self._released = threading.Event()
        self.returned = threading.Event()

    def abort(self) -> None:
        super().abort()
        if self._honours_abort and self._running.is_set():
            self._released.set()

    def release(self) -> None:
        self._released.set()

    def wait_running(self) -> bool:
        return self._running.wait(timeout=5)

    def poll(self) -> Revision | None:
        time.sleep(self._start_delay)
        self._running.set()
        try:
            self._released.wait(timeout=30)  # bounded: a broken test must not hang the run
            raise SourceAborted("git fetch was terminated")
        finally:
            self.returned.set()


def _stop_during_a_pass(
    source: _HungSource, make_engine: EngineFactory, *, stop_after: float, abort_grace: float
) -> tuple[float, bool]:
    """Run the loop on ``source``, set stop ``stop_after`` seconds in.

    Returns how long the loop took to end after that, and whether the poll had returned by then.
    """
    source.commit(mesh_files(), "mesh")
    engine = make_engine(source, SnapshotCache())

    async def scenario() -> tuple[float, bool]:
        stop = asyncio.Event()
        loop = asyncio.create_task(
            _loop(
                engine=engine,
                metrics=DaemonMetrics(cache=SnapshotCache()),
                wake=asyncio.Event(),
                stop=stop,
                poll_interval=60.0,
                abort=source.abort,
                heap=StartupHeap(),
                abort_grace=abort_grace,
            )
        )
        await asyncio.sleep(stop_after)
        stopped_at = time.monotonic()
        stop.set()
        try:
            await asyncio.wait_for(loop, timeout=abort_grace + 5)
            return time.monotonic() - stopped_at, source.returned.is_set()
        finally:
            source.release()  # asyncio.run waits for the worker thread; never leave it hanging

    return asyncio.run(scenario())


def test_a_stop_during_a_hung_poll_aborts_the_source_and_ends_the_loop_at_once(make_engine: EngineFactory) -> None:
    source = _HungSource()

    took, poll_returned = _stop_during_a_pass(source, make_engine, stop_after=0.3, abort_grace=30.0)

    assert source.wait_running()
    assert source.aborts >= 1
    assert poll_returned  # the worker thread was freed by abort, not by the test's release
    assert took < 3.0


def test_a_stop_just_before_the_poll_starts_still_aborts_it(make_engine: EngineFactory) -> None:
    # The first abort() lands while no poll is running and is a no-op: the loop must keep aborting.
    source = _HungSource(start_delay=0.5)

    took, poll_returned = _stop_during_a_pass(source, make_engine, stop_after=0.05, abort_grace=30.0)

    assert source.aborts >= 2
    assert poll_returned
    assert took < 3.0


def test_a_poll_that_ignores_abort_is_abandoned_after_the_grace_period(make_engine: EngineFactory) -> None:
    source = _HungSource(honours_abort=False)

    took, poll_returned = _stop_during_a_pass(source, make_engine, stop_after=0.3, abort_grace=1.0)

    assert source.aborts >= 2  # repeated through the grace period
    assert not poll_returned
    assert 1.0 <= took < 3.0


def test_a_head_without_the_config_directory_is_not_fetched_again_before_the_poll_interval(
    make_engine: EngineFactory,
) -> None:
    source = MemorySource()
    source.commit(mesh_files(), "good")
    source.fail_with("config path 'mesh' is not a directory at commit 0123456789ab", failure=PathNotFoundError)
    engine = make_engine(source, SnapshotCache())

    _run_loop(engine, seconds=2.0, poll_interval=30.0)

    assert engine.status.reason is Reason.PATH_NOT_FOUND
    assert source.polls == 1


@pytest.fixture
def unfrozen_heap() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen_heap")
def test_what_is_alive_after_the_first_pass_is_left_out_of_later_full_collections() -> None:
    assert gc.get_freeze_count() == 0

    _passes_within(Reason.FETCH_FAILED, retry=False, seconds=0.5, poll_interval=30.0)

    assert gc.get_freeze_count() > 0
