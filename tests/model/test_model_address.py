"""``HOST:PORT`` addresses: one parser for the xDS server, the daemon and every command."""

from __future__ import annotations

import pytest

from reconciler.errors import UsageError
from reconciler.model.address import format_address, is_loopback, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:18000", ("127.0.0.1", 18000)),
        ("reconciler.mesh.svc:18000", ("reconciler.mesh.svc", 18000)),
        ("[::1]:18000", ("::1", 18000)),
    ],
)
def test_an_address_reads_back_as_it_is_written(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, what="--xds-address") == expected
    assert format_address(*expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::1:18000", "in brackets"),
        ("127.0.0.1", "is not HOST:PORT"),
        (":18000", "is not HOST:PORT"),
        ("127.0.0.1:http", "is not HOST:PORT"),
        ("127.0.0.1:65536", "out of range"),
        ("127.0.0.1:0", "out of range"),
    ],
)
def test_a_malformed_address_is_a_usage_error_naming_the_flag(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        parse_address(text, what="--xds-address")

    assert str(raised.value).startswith("--xds-address")


def test_port_zero_asks_for_a_free_port_only_where_a_listener_allows_it() -> None:
    assert parse_address("127.0.0.1:0", what="--http-address", allow_port_zero=True) == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.7", False),
        ("reconciler.mesh-system", False),
    ],
)
def test_only_loopback_hosts_are_reachable_from_this_machine_alone(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
