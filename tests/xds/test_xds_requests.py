"""Requests that streams send as the same bytes are parsed, and their names interned, once for all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from envoy.service.discovery.v3 import discovery_pb2

from reconciler.translate.snapshot import ENDPOINT
from reconciler.xds.requests import MIN_BYTES, RecentRequests
from reconciler.xds.shared import Shared

T = TypeVar("T")

NAMES = [f"outbound|8080||service-{index:04d}.default.svc.cluster.local" for index in range(200)]


def ack(names: list[str] = NAMES, *, nonce: str = "token-7") -> bytes:
    """An EDS ACK as Envoy sends it: type, version, nonce and every subscribed name."""
    return discovery_pb2.DiscoveryRequest(
        type_url=ENDPOINT, version_info="v1", response_nonce=nonce, resource_names=names
    ).SerializeToString()


class CountingIntern:
    def __init__(self) -> None:
        self.calls = 0
        self._shared = Shared()

    def __call__(self, names: Iterable[str]) -> frozenset[str]:
        self.calls += 1
        return self._shared.names(names)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def test_equal_bytes_give_the_same_request_and_the_names_derived_once() -> None:
    intern = CountingIntern()
    requests = RecentRequests(intern=intern)

    async def scenario() -> None:
        first, second = requests.parse(ack()), requests.parse(ack())

        assert second is first
        assert requests.resource_names(first) is requests.resource_names(second)
        assert requests.resource_names(first) == set(NAMES)
        assert intern.calls == 1

    run(scenario)


def test_bytes_of_the_same_length_and_ending_that_differ_give_their_own_request() -> None:
    requests = RecentRequests(intern=Shared().names)
    other = ["X" + NAMES[0][1:], *NAMES[1:]]  # the first name differs, not the length nor the tail

    async def scenario() -> None:
        first, second = requests.parse(ack()), requests.parse(ack(other))

        assert len(ack()) == len(ack(other))
        assert second is not first
        assert requests.resource_names(second) == set(other)
        assert requests.resource_names(first) == set(NAMES)

    run(scenario)


def test_an_entry_is_dropped_once_unused_for_its_keep_time() -> None:
    requests = RecentRequests(intern=Shared().names, keep_seconds=0.05)

    async def scenario() -> None:
        first = requests.parse(ack())
        async with asyncio.timeout(10):
            while len(requests):
                await asyncio.sleep(0.01)

        assert requests.parse(ack()) is not first

    run(scenario)


def test_using_a_request_keeps_its_entry() -> None:
    requests = RecentRequests(intern=Shared().names, keep_seconds=0.2)

    async def scenario() -> None:
        first = requests.parse(ack())
        for _ in range(6):  # longer than the keep time, used all along
            await asyncio.sleep(0.05)
            requests.resource_names(requests.parse(ack()))

        assert requests.parse(ack()) is first

    run(scenario)


def test_entries_are_bounded_in_number_and_in_bytes() -> None:
    by_number = RecentRequests(intern=Shared().names, max_entries=2)
    by_bytes = RecentRequests(intern=Shared().names, max_bytes=len(ack()) * 2)

    async def scenario() -> None:
        for requests in (by_number, by_bytes):
            first = requests.parse(ack(nonce="token-1"))
            for serial in (2, 3):
                requests.parse(ack(nonce=f"token-{serial}"))

            assert len(requests) == 2
            assert requests.parse(ack(nonce="token-1")) is not first  # the least recently used went first

    run(scenario)


def test_small_requests_and_requests_without_a_loop_are_only_parsed() -> None:
    requests = RecentRequests(intern=Shared().names)
    small = ack([], nonce="token-1")
    assert len(small) < MIN_BYTES

    assert requests.parse(ack()) is not requests.parse(ack())  # no loop: nothing to expire entries with
    assert requests.resource_names(requests.parse(ack())) == set(NAMES)

    async def scenario() -> None:
        assert requests.parse(small) is not requests.parse(small)
        assert len(requests) == 0

    run(scenario)
