"""The daemon hands freed heap back to the OS once a burst of xDS work is over, and collects its start once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from reconciler.engine.heap import HeapTrimmer, StartupHeap, libc_trim
from reconciler.xds.cache import EventKind, XdsEvent

_PUSH = XdsEvent(kind=EventKind.PUSH, node_id="sidecar-1")
#: Generous: the machine may be busy.
_DEADLINE = 30.0


async def _until(check: object) -> None:
    async def poll() -> None:
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout=_DEADLINE)


@contextlib.asynccontextmanager
async def _running(trimmer: HeapTrimmer) -> AsyncIterator[None]:
    task = asyncio.ensure_future(trimmer.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_heap_is_trimmed_once_after_each_burst_of_xds_events() -> None:
    calls: list[None] = []
    trimmer = HeapTrimmer(quiet=0.02, trim=lambda: calls.append(None))

    async def scenario() -> None:
        async with _running(trimmer):
            for _ in range(3):
                trimmer.note(_PUSH)
            await _until(lambda: trimmer.trims == 1)
            trimmer.note(_PUSH)  # the next burst
            await _until(lambda: trimmer.trims == 2)

    asyncio.run(scenario())
    assert len(calls) == 2


def test_a_burst_that_goes_on_is_not_trimmed_until_it_is_quiet() -> None:
    calls: list[None] = []
    now = [0.0]
    trimmer = HeapTrimmer(quiet=5.0, trim=lambda: calls.append(None), clock=lambda: now[0])

    async def scenario() -> None:
        trimmer.note(_PUSH)
        now[0] = 4.0
        trimmer.note(_PUSH)  # 4 s in: the burst goes on, quiet counts from here
        now[0] = 8.0
        async with _running(trimmer):
            await asyncio.sleep(0.05)
            assert calls == []
            now[0] = 9.0
            await _until(lambda: calls)

    asyncio.run(scenario())
    assert len(calls) == 1


def test_without_a_trim_function_the_trimmer_returns_at_once() -> None:
    trimmer = HeapTrimmer(quiet=0.01, trim=None)
    trimmer.note(_PUSH)

    asyncio.run(asyncio.wait_for(trimmer.run(), timeout=_DEADLINE))

    assert trimmer.trims == 0


def test_this_platforms_c_library_trims_its_heap() -> None:
    trim = libc_trim()

    assert trim is not None  # glibc, as in the container image and CI
    trim()


@pytest.fixture
def collector() -> Iterator[None]:
    """Automatic collection on and nothing frozen before and after each test."""
    gc.unfreeze()
    gc.enable()
    yield
    gc.unfreeze()
    gc.enable()


@pytest.mark.usefixtures("collector")
def test_collection_is_paused_from_the_start_until_the_first_pass_is_collected_and_frozen() -> None:
    with StartupHeap() as heap:
        assert gc.isenabled()  # nothing paused before the restore (a follower waits for the Lease)
        heap.pause()
        assert not gc.isenabled()
        heap.freeze()
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_a_start_that_stops_before_its_first_pass_ends_collects_automatically_again() -> None:
    def crashed_start() -> None:
        with StartupHeap() as heap:
            heap.pause()
            raise RuntimeError("the first pass crashed")

    with pytest.raises(RuntimeError):
        crashed_start()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_an_embedder_that_turned_collection_off_keeps_it_off() -> None:
    gc.disable()
    with StartupHeap() as heap:
        heap.pause()
        heap.freeze()
    assert not gc.isenabled()
