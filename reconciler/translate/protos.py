"""Small protobuf values more than one translation module builds. Pure."""

from __future__ import annotations

from google.protobuf import duration_pb2

__all__ = ["duration"]

_NANOS_PER_SECOND = 10**9


def duration(nanos: int) -> duration_pb2.Duration:
    """A protobuf Duration of ``nanos`` nanoseconds (non-negative)."""
    return duration_pb2.Duration(seconds=nanos // _NANOS_PER_SECOND, nanos=nanos % _NANOS_PER_SECOND)
