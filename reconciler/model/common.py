"""Value types shared by several kinds: durations, percentages, string matches, ports.

``NewType`` aliases (``Port``, ``Weight``...) tell the schema decoder which value rules
apply; at run time they are plain ints and strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NewType

__all__ = [
    "Duration",
    "HeaderName",
    "NonNegative",
    "Percent",
    "Port",
    "PortSelector",
    "Regex",
    "StringMatch",
    "Weight",
]

Port = NewType("Port", int)
"""A TCP port, 1..65535."""
Weight = NewType("Weight", int)
"""A relative route weight, >= 0."""
NonNegative = NewType("NonNegative", int)
"""A count or limit, >= 0."""
HeaderName = NewType("HeaderName", str)
"""An HTTP header name (RFC 7230 token, matched case-insensitively)."""
Regex = NewType("Regex", str)
"""An RE2 regular expression."""


@dataclass(frozen=True, slots=True)
class Duration:
    """A duration as written (``1.5s``, ``100ms``, ``1m30s``) and its value in nanoseconds."""

    text: str
    nanos: int

    @property
    def seconds(self) -> float:
        return self.nanos / 1e9


@dataclass(frozen=True, slots=True)
class Percent:
    """Istio's ``Percent`` message: ``{value: 0.0..100.0}``."""

    value: float


@dataclass(frozen=True, slots=True)
class StringMatch:
    """Match a string exactly, by prefix, or by RE2 regex: exactly one is set."""

    ONE_OF_REQUIRED: ClassVar[tuple[tuple[str, ...], ...]] = (("exact", "prefix", "regex"),)

    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None


@dataclass(frozen=True, slots=True)
class PortSelector:
    """A destination port: ``{number: 9080}``."""

    number: Port | None = None
